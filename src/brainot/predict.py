"""Predicting image tokens from a subject's repeat-averaged test voxels with a trained encoder.

    python -m brainot.predict --model results/models/subj01/all/ot0.5/seed0/model.pt \\
        --voxels results/voxels/subj01.h5 --region results/rois/subj01/all.h5 --subject subj01 \\
        --out results/predictions/subj01/all/ot0.5/seed0/subj01.h5

Output (HDF5, :func:`brainot.io.write_predictions`): ``tokens`` (N_test, T, D) float32 and ``nsd_id`` (N_test,)
int64, in the voxel file's test order (ascending nsd_id), with the ``subject`` and ``region`` attributes. The model is rebuilt from the ``config.json`` next to ``model.pt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from brainot.devices import pick_device
from brainot.io import (DataError, average_repeats, n_voxels, read_region, read_split, read_subject, region_of,
                        write_predictions)
from brainot.model.encoder import BrainX, build_encoder
from brainot.train import CONFIG, autocast


def load_model(model_path: str | Path, device: torch.device) -> tuple[BrainX, dict]:
    """The trained encoder (eval mode, on ``device``) and its run's ``config.json``."""
    config_path = Path(model_path).with_name(CONFIG)
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path}: missing; train writes it next to {Path(model_path).name}")
    cfg = json.loads(config_path.read_text())
    model = build_encoder(cfg["model"])
    model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    return model.to(device).eval(), cfg


@torch.no_grad()
def predict_tokens(model: BrainX, voxels: np.ndarray, subject: str, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """``voxels`` (N, C) float32 -> predicted tokens (N, T, D) float32."""
    x = torch.from_numpy(voxels).to(device)
    out = []
    for start in tqdm(range(0, x.shape[0], batch_size), desc="predict", unit="batch", file=sys.stderr):
        with autocast(device):
            out.append(model(x[start:start + batch_size], subject).float().cpu())
    if not out:
        return np.zeros((0, model.perceiver.latents.shape[0], model.proj.out_features), np.float32)
    return torch.cat(out).numpy()


def check_compatible(cfg: dict, subject: str, region_path: str | Path, n_columns: int, model_path) -> None:
    """The subject and region set must be ones the model was trained on, with the same voxel count."""
    if subject not in cfg["subjects"]:
        raise ValueError(f"{model_path}: the model was trained on {', '.join(cfg['subjects'])}, not {subject}; "
                         "a cross-subject model only predicts for the subjects it was trained on")
    region = region_of(region_path)
    if region != cfg["region"]:
        raise ValueError(f"{region_path}: region set {region!r}, but {model_path} was trained on {cfg['region']!r}")
    expected = cfg["model"]["n_voxels"][subject]
    if n_columns != expected:
        raise DataError(f"{region_path}: {n_columns} voxel columns, but {model_path} expects {expected} for {subject}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m brainot.predict",
        description="Predict image tokens from a subject's repeat-averaged test voxels with a trained encoder.")
    p.add_argument("--model", required=True, help="results/models/{run}/model.pt (config.json next to it)")
    p.add_argument("--voxels", required=True, help="results/voxels/{subject}.h5")
    p.add_argument("--region", required=True, help="results/rois/{subject}/{region}.h5, the model's region set")
    p.add_argument("--subject", required=True, help="subject name, e.g. subj01 (one the model was trained on)")
    p.add_argument("--out", required=True, help="output HDF5: tokens (N_test, T, D) float32, nsd_id (N_test,)")
    p.add_argument("--batch-size", type=int, default=64, help="test images per forward pass")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda', ...")
    args = p.parse_args(argv)

    if read_subject(args.voxels) != args.subject:
        p.error(f"--voxels {args.voxels} holds {read_subject(args.voxels)}, not --subject {args.subject}")
    t0 = time.perf_counter()
    device = pick_device(args.device)
    model, cfg = load_model(args.model, device)
    cols = read_region(args.region, n_voxels(args.voxels))
    check_compatible(cfg, args.subject, args.region, cols.size, args.model)
    voxels, nsd_id, n_reps = read_split(args.voxels, "test", cols)
    tokens = predict_tokens(model, average_repeats(voxels, n_reps), args.subject, args.batch_size, device)
    write_predictions(args.out, tokens, nsd_id, model=str(args.model), subject=args.subject, region=cfg["region"],
                      objective=cfg["objective"], embedding=cfg["embedding"]["name"])
    print(f"predicted {tokens.shape[0]} test images of {args.subject} ({cols.size} voxels, region "
          f"{cfg['region']!r}) -> tokens {tokens.shape} in {time.perf_counter() - t0:.1f} s on {device}; "
          f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
