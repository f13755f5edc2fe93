"""Training the fMRI encoder on one training set, region set, objective and seed.

    python -m brainot.train --encoder '{...}' --train '{...}' --loss '{...}' --objective ot0.5 --seed 0 \\
        --voxels results/voxels/subj01.h5 --regions results/rois/subj01/all.h5 \\
        --embeddings results/embeddings/clip-vit-l14/shared.h5 results/embeddings/clip-vit-l14/subj01.h5 \\
        --out-dir results/models/subj01/all/ot0.5/seed0

The authors' recipe (``train_ot.py`` / ``train_brainx_ot.py`` of OT-Alignment4brain-to-image, UMBRAE's
``train.py``): AdamW (no weight decay on biases and LayerNorm parameters) with a one-cycle learning rate
(warm-up over the first two epochs, ``final_div_factor`` 1000), one trial per image per step (the repeat index
cycles with the step, over the image's real repeats), evaluation on the repeat-averaged test trials. A training
set of several subjects trains BrainX and draws two subjects per step (the paper, section 5.1), whose losses add.

Everything needed to rebuild the model goes to ``config.json``; ``checkpoint.pt`` (model, optimizer,
scheduler, RNG states, epoch) is written atomically after every epoch and a rerun resumes from it, giving the
same weights as an uninterrupted run. ``log.jsonl`` holds one record per epoch. Deterministic on CPU.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from brainot import atomic
from brainot import config as bcfg
from brainot import fingerprint as fp
from brainot.atomic import set_aside
from brainot.devices import pick_device
import brainot
from brainot.io import (SubjectData, embedding_name, embedding_shape, load_subject, read_subject, region_of,
                        region_subject)
from brainot.analysis.retrieval import top1
from brainot.model.encoder import BrainX, build_encoder, count_parameters, model_spec

WARMUP_EPOCHS = 2           # the authors' pct_start = 2 / epochs
MAX_WARMUP_FRACTION = 0.5   # keeps pct_start valid for runs of fewer than 4 epochs
FINAL_DIV_FACTOR = 1000     # the authors' OneCycleLR final_div_factor
SUBJECTS_PER_STEP = 2       # the paper, section 5.1
NO_DECAY = (torch.nn.LayerNorm,)

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
CONFIG = "config.json"
LOG = "log.jsonl"


class NonFiniteLoss(FloatingPointError):
    """A training or evaluation loss was NaN or infinite."""


# ---------------------------------------------------------------------------------------------- set-up


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices and learned embeddings, none on biases and LayerNorm parameters."""
    no_decay = {id(p) for m in model.modules() if isinstance(m, NO_DECAY) for p in m.parameters(recurse=False)}
    no_decay |= {id(p) for n, p in model.named_parameters() if n.endswith(".bias")}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]


def make_scheduler(optimizer: torch.optim.Optimizer, lr: float, epochs: int, steps_per_epoch: int):
    if epochs * steps_per_epoch < 3:
        raise ValueError(f"train.epochs ({epochs}) x steps per epoch ({steps_per_epoch}) = "
                         f"{epochs * steps_per_epoch} steps; the one-cycle schedule needs at least 3")
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, final_div_factor=FINAL_DIV_FACTOR,
        pct_start=min(WARMUP_EPOCHS / epochs, MAX_WARMUP_FRACTION))


@dataclass
class Schedule:
    """Batch geometry of a run: the same for every epoch."""

    batch: int              # images per subject per step
    steps: int              # optimiser steps per epoch
    per_step: int           # subjects drawn per step


def schedule(n_train: list[int], batch_size: int) -> Schedule:
    """An epoch = ``min(N) // batch`` steps (the authors zip the subjects' loaders, dropping the last batch)."""
    smallest = min(n_train)
    batch = min(batch_size, smallest)
    return Schedule(batch=batch, steps=smallest // batch, per_step=min(SUBJECTS_PER_STEP, len(n_train)))


def epoch_plan(seed: int, epoch: int, n_train: list[int], sched: Schedule) -> tuple[np.ndarray, np.ndarray]:
    """Which subjects and rows every step of an epoch uses; a function of ``(seed, epoch)`` only.

    Returns ``subjects`` (steps, per_step) subject positions and ``rows`` (steps, per_step, batch) row indices.
    Each subject walks through its own fresh permutation: its k-th draw in the epoch takes the k-th batch.
    """
    rng = np.random.default_rng([seed, epoch])
    perms = [rng.permutation(n) for n in n_train]
    subjects = np.stack([rng.choice(len(n_train), sched.per_step, replace=False) for _ in range(sched.steps)])
    rows = np.empty((sched.steps, sched.per_step, sched.batch), dtype=np.int64)
    drawn = np.zeros(len(n_train), dtype=np.int64)
    for step in range(sched.steps):
        for slot, s in enumerate(subjects[step]):
            k = drawn[s]  # < steps <= n_train[s] // batch: no batch is reused within an epoch
            rows[step, slot] = perms[s][k * sched.batch:(k + 1) * sched.batch]
            drawn[s] += 1
    return subjects, rows


# ---------------------------------------------------------------------------------------------- data on device


@dataclass
class DeviceData:
    """One subject's arrays as tensors on the training device (tokens stay float16 to halve memory)."""

    subject: str
    train_voxels: torch.Tensor      # (N, R, C) float32
    train_reps: torch.Tensor        # (N,) int64
    train_tokens: torch.Tensor      # (N, T, D) float16
    test_voxels: torch.Tensor       # (M, C) float32
    test_tokens: torch.Tensor       # (M, T, D) float16

    @classmethod
    def from_subject(cls, data: SubjectData, device: torch.device) -> "DeviceData":
        return cls(data.subject, *(torch.from_numpy(a).to(device) for a in (
            data.train_voxels, data.train_reps, data.train_tokens, data.test_voxels, data.test_tokens)))

    def trials(self, rows: torch.Tensor, step: int) -> torch.Tensor:
        """One trial per row: repeat ``step mod n_reps`` (the authors cycle ``step mod 3``). (B, C)."""
        return self.train_voxels[rows, step % self.train_reps[rows]]


# ---------------------------------------------------------------------------------------------- checkpoints


def rng_states() -> dict:
    """Every RNG state as tensors and plain types (``torch.load(weights_only=True)`` reads nothing else)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                        "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def run_fingerprint(args, cfg: dict) -> dict:
    """What a checkpoint depends on: the run's config and the identity of every input file."""
    inputs = {f"embeddings {i}": path for i, path in enumerate(args.embeddings)}
    for v, r in zip(args.voxels, args.regions):
        subject = read_subject(v)
        inputs[f"voxels {subject}"], inputs[f"regions {subject}"] = v, r
    return fp.make(cfg, inputs)


CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "rng", "epoch", "fingerprint"}


def load_checkpoint(path: Path, fingerprint: dict):
    """The checkpoint if it belongs to this run (same config and input files), else None (with a message).

    Read with ``weights_only=True``: a crafted pickle is refused, never executed. A file that cannot be read
    (truncated, empty, crafted, not ours) is set aside as ``<name>.damaged`` and the run starts afresh.
    """
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or not CHECKPOINT_KEYS <= ckpt.keys():
            raise ValueError(f"expected a dict with keys {sorted(CHECKPOINT_KEYS)}")
    except pickle.UnpicklingError as exc:
        why = ("it holds objects other than tensors and plain types, refused unexecuted by weights_only=True"
               if "weights only" in str(exc).lower() else f"UnpicklingError: {first_line(exc)}")
        set_aside(path, f"not a readable checkpoint ({why})")
        return None
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the remedy is the same
        set_aside(path, f"not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})")
        return None
    if ckpt.get("fingerprint") != fingerprint:
        print(f"{path}: not resumed, starting afresh: {fp.changes(ckpt.get('fingerprint'), fingerprint)}",
              file=sys.stderr)
        return None
    return ckpt


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without terminal escape codes, at most 200 characters."""
    return (re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines() or [""])[0][:200]


def truncate_log(path: Path, epochs_done: int) -> None:
    """Keep the log records of the epochs a resumed run does not redo."""
    if not path.exists():
        return
    kept_lines = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if record.get("epoch", epochs_done) < epochs_done:
            kept_lines.append(line)
    atomic.write_text(path, "".join(line + "\n" for line in kept_lines))


# ---------------------------------------------------------------------------------------------- training


@torch.no_grad()
def evaluate(model: BrainX, data: list[DeviceData], batch: int, device: torch.device) -> dict:
    """Per subject, on the repeat-averaged test trials: MSE to the image tokens and top-1 retrieval.

    The same two numbers whatever the training objective, so runs of different objectives compare (and an OT
    solve per test batch per epoch would cost the demo a third more time).
    """
    model.eval()
    out = {}
    for d in data:
        preds = []
        for start in range(0, d.test_voxels.shape[0], batch):
            with autocast(device):
                preds.append(model(d.test_voxels[start:start + batch], d.subject).float())
        if preds:
            pred, target = torch.cat(preds), d.test_tokens.float()
            out[d.subject] = {"mse": float(torch.mean((pred - target) ** 2)), "top1": top1(pred, target)}
    model.train()
    return out


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full float32 elsewhere (CPU bf16 is slow and would break CPU determinism tests)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_epoch(model: BrainX, optimizer, scheduler, data: list[DeviceData], loss_fn, seed: int, epoch: int,
                sched: Schedule, device: torch.device) -> torch.Tensor:
    """One epoch of optimiser steps; returns the step losses (steps,), left on the device (no host sync)."""
    subj_plan, row_plan = epoch_plan(seed, epoch, [d.train_voxels.shape[0] for d in data], sched)
    row_plan = torch.from_numpy(row_plan).to(device)
    step_losses = torch.empty(sched.steps, device=device)
    for step in range(sched.steps):
        global_step = epoch * sched.steps + step
        loss = 0.0
        for slot, s in enumerate(subj_plan[step]):
            d, rows = data[s], row_plan[step, slot]
            with autocast(device):
                pred = model(d.trials(rows, global_step), d.subject)
            loss = loss + loss_fn(pred.float(), d.train_tokens[rows].float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step_losses[step] = loss.detach()
    return step_losses


def run_config(args, subjects: list[SubjectData], spec: dict, sched: Schedule) -> dict:
    """``config.json``: what predict needs to rebuild the model, and what the run was."""
    tokens, dim = spec["latents"], spec["out_dim"]
    return {
        "model": spec,
        "subjects": [s.subject for s in subjects],
        "region": region_of(args.regions[0]),
        "objective": args.objective,
        "seed": args.seed,
        "embedding": {"name": embedding_name(args.embeddings), "tokens": tokens, "dim": dim},
        "n_train": {s.subject: int(s.train_voxels.shape[0]) for s in subjects},
        "n_test": {s.subject: int(s.test_voxels.shape[0]) for s in subjects},
        "batch_size": sched.batch,
        "steps_per_epoch": sched.steps,
        "subjects_per_step": sched.per_step,
        "encoder": args.encoder,
        "train": args.train,
        "loss": args.loss,
        "versions": {"brainot": brainot.__version__, "torch": torch.__version__},
    }


def train(args) -> dict:
    """Train (or resume) one run; returns a summary. Raises :class:`NonFiniteLoss` on a NaN/inf loss."""
    from brainot.model.losses import make_loss  # the OT engineer's module: imported late so --help works without it

    t0 = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_cfg = args.train
    bcfg.parse_objective(args.objective)
    loss_fn = make_loss(args.loss, args.objective)

    subjects = [load_subject(v, r, args.embeddings) for v, r in zip(args.voxels, args.regions)]
    n_tokens, dim = embedding_shape(args.embeddings)
    spec = model_spec(args.encoder, {s.subject: s.n_voxels for s in subjects}, n_tokens, dim)
    sched = schedule([s.train_voxels.shape[0] for s in subjects], train_cfg["batch_size"])
    cfg = run_config(args, subjects, spec, sched)
    atomic.write_json(out_dir / CONFIG, cfg)
    t_load = time.perf_counter() - t0

    epochs = train_cfg["epochs"]

    def fresh():
        seed_everything(args.seed)
        model = build_encoder(spec).to(device)
        optimizer = torch.optim.AdamW(param_groups(model, train_cfg["weight_decay"]), lr=train_cfg["lr"])
        return model, optimizer, make_scheduler(optimizer, train_cfg["lr"], epochs, sched.steps)

    model, optimizer, scheduler = fresh()
    params = count_parameters(model)
    print(f"{spec['kind']} for {', '.join(cfg['subjects'])} on region {cfg['region']!r} "
          f"(voxels {spec['n_voxels']}), objective {args.objective}, seed {args.seed}: "
          f"{params['total']:,} parameters ({params['input']:,} subject-specific), "
          f"{sched.steps} steps/epoch of {sched.per_step} x {sched.batch}, device {device}", file=sys.stderr)

    fingerprint = run_fingerprint(args, cfg)
    start = 0
    ckpt = load_checkpoint(out_dir / CHECKPOINT, fingerprint)
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_states(ckpt["rng"])
            start = int(ckpt["epoch"])
        except Exception as exc:  # noqa: BLE001 - readable but not a state of this model: same remedy
            set_aside(out_dir / CHECKPOINT, f"does not fit this model ({type(exc).__name__}: {first_line(exc)})")
            model, optimizer, scheduler = fresh()
            start = 0
        else:
            print(f"resuming after epoch {start} of {epochs} from {out_dir / CHECKPOINT}", file=sys.stderr)
    truncate_log(out_dir / LOG, start)

    data = [DeviceData.from_subject(s, device) for s in subjects]
    del subjects
    model.train()
    t_train = time.perf_counter()
    done = start  # epochs in the checkpoint on disk
    bar = tqdm(range(start, epochs), initial=start, total=epochs, desc="train", unit="epoch", file=sys.stderr)
    val = {}
    for epoch in bar:
        t_epoch = time.perf_counter()
        step_losses = train_epoch(model, optimizer, scheduler, data, loss_fn, args.seed, epoch, sched, device)
        # One host sync per epoch: a bad step is found here, before this epoch's weights are checkpointed.
        step_losses = step_losses.cpu()
        bad = (~torch.isfinite(step_losses)).nonzero()
        if len(bad):
            raise NonFiniteLoss(f"non-finite training loss ({float(step_losses[bad[0, 0]])}) at epoch {epoch} "
                                f"step {int(bad[0, 0])}; stopped, {kept(out_dir, done)}")
        val = evaluate(model, data, sched.batch, device)
        for subject, v in val.items():
            if not np.isfinite(v["mse"]):
                raise NonFiniteLoss(f"non-finite evaluation MSE for {subject} at epoch {epoch}; stopped, "
                                    f"{kept(out_dir, done)}")
        record = {"epoch": epoch, "step_loss": step_losses.tolist(), "train_loss": float(step_losses.mean()),
                  "lr": scheduler.get_last_lr()[0], "val": val, "time_s": time.perf_counter() - t_epoch}
        # Log first: a kill between the two leaves a record of an epoch that the resumed run drops and redoes.
        with open(out_dir / LOG, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        atomic.torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": rng_states(), "epoch": epoch + 1,
                     "fingerprint": fingerprint}, out_dir / CHECKPOINT)
        done = epoch + 1
        bar.set_postfix(loss=f"{record['train_loss']:.4g}",
                        top1=" ".join(f"{v['top1']:.3f}" for v in val.values()))
    bar.close()

    atomic.torch_save(model.state_dict(), out_dir / MODEL)
    (out_dir / CHECKPOINT).unlink(missing_ok=True)  # 3x the model's size; the run is complete
    return {"epochs": epochs, "resumed_after": start, "steps": (epochs - start) * sched.steps,
            "load_s": t_load, "train_s": time.perf_counter() - t_train, "parameters": params["total"],
            "val": val, "out": str(out_dir / MODEL)}


def kept(out_dir: Path, done: int) -> str:
    """What is left on disk after a failure, for the error message."""
    if not done:
        return "no epoch completed, so no checkpoint"
    return f"the last good checkpoint {out_dir / CHECKPOINT} (after {done} epochs) is kept"


# ---------------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m brainot.train",
        description="Train the fMRI encoder (BrainXS for one subject, BrainX for several) to predict image tokens "
                    "from the voxels of a region set. Resumes from OUT_DIR/checkpoint.pt when it exists.")
    p.add_argument("--encoder", type=json.loads, required=True,
                   help="the config's encoder: section as JSON (hidden, latents, depth, heads, head_dim)")
    p.add_argument("--train", type=json.loads, required=True,
                   help="the config's train: section as JSON (epochs, batch_size, lr, weight_decay, ...)")
    p.add_argument("--loss", type=json.loads, required=True, help="the config's loss: section as JSON")
    p.add_argument("--objective", required=True, help="'mse' or 'ot<mass>', e.g. 'ot0.5'")
    p.add_argument("--seed", type=int, required=True, help="random seed (initialisation and data order)")
    p.add_argument("--voxels", nargs="+", required=True,
                   help="results/voxels/{subject}.h5 of every subject of the training set")
    p.add_argument("--regions", nargs="+", required=True,
                   help="results/rois/{subject}/{region}.h5, one per --voxels file, in the same order")
    p.add_argument("--embeddings", required=True, nargs="+",
                   help="image-token caches holding every train and test image of the --voxels files: "
                        "results/embeddings/{name}/shared.h5 and .../{subject}.h5 of each subject")
    p.add_argument("--out-dir", required=True, help="writes model.pt, config.json, log.jsonl, checkpoint.pt here")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ...")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small models run fastest one thread per job, with jobs run in "
                        "parallel; 0 keeps torch's default)")
    args = p.parse_args(argv)
    if len(args.voxels) != len(args.regions):
        p.error(f"--voxels has {len(args.voxels)} files but --regions {len(args.regions)}; one region file per subject")
    subjects = [read_subject(v) for v in args.voxels]
    for v, r, subject in zip(args.voxels, args.regions, subjects):
        if region_subject(r) != subject:
            p.error(f"--regions {r} holds a region set of {region_subject(r)}, but {v} holds {subject} "
                    f"(expected results/rois/{subject}/<region>.h5)")
    if len(set(subjects)) != len(subjects):
        p.error(f"--voxels names a subject twice: {subjects}")
    if len({region_of(r) for r in args.regions}) != 1:
        p.error(f"--regions must all be the same region set, got {sorted({region_of(r) for r in args.regions})}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = train(args)
    except NonFiniteLoss as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    val = ", ".join(f"{s}: MSE {v['mse']:.4g}, top-1 {v['top1']:.3f}" for s, v in summary["val"].items())
    print(f"trained {summary['epochs']} epochs ({summary['steps']} steps this run"
          + (f", resumed after epoch {summary['resumed_after']}" if summary["resumed_after"] else "")
          + f") in {summary['train_s']:.1f} s (+{summary['load_s']:.1f} s loading), "
          f"{summary['parameters']:,} parameters; test {val}; wrote {summary['out']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
