"""Brain captioning: caption the test images from predicted (or, for the upper bound, true) image tokens.

Inputs are one of
- ``--tokens predictions.h5``: ``tokens`` (N_test, T, D) predicted by a brain encoder, ``nsd_id`` in test order;
- ``--image-embeddings EMB.h5 --voxels VOXELS.h5``: the true tokens of the subject's test images (the paper's
  Shikra-w/img row), taken from the embeddings cache in the voxels file's ``test/nsd_id`` order.

Outputs BrainHub's format ``{"0": "caption", ...}`` keyed by test position, and a Parquet table with
``position``, ``nsd_id``, ``coco_id``, ``caption``. Captions come from :mod:`brainot.caption.shikra` (greedy, batched by
``caption.batch_size``). Finished batches are appended to ``<out-json>.partial.jsonl`` so a killed run resumes;
the file is only reused when it was made from the same inputs and settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from brainot import atomic
from brainot import fingerprint as fp
from brainot import io as data
from brainot.caption import shikra


# ---------------------------------------------------------------------------------------------- inputs
def read_image_fed(embeddings: str | Path | list[str | Path], voxels: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The true tokens (float32) of the test images of ``voxels`` (``test/nsd_id`` order) from the embeddings cache."""
    test_ids = data.test_nsd_ids(voxels)
    return data.read_tokens(embeddings, test_ids).astype(np.float32), test_ids


def coco_ids(stim_info: str | Path, nsd_ids: np.ndarray) -> np.ndarray:
    """The COCO id of each image (``cocoId`` of the stimulus table, whose row i is nsdId i)."""
    table = pd.read_csv(stim_info, index_col=0)
    if "cocoId" not in table.columns:
        raise KeyError(f"{stim_info}: no column 'cocoId'; expected NSD's stimulus table")
    if nsd_ids.size and (nsd_ids.min() < 0 or nsd_ids.max() >= len(table)):
        raise KeyError(f"{stim_info}: nsd_id outside the table's {len(table)} rows")
    return table["cocoId"].to_numpy()[nsd_ids].astype(np.int64)


# ---------------------------------------------------------------------------------------------- resume
def fingerprint(cfg: dict, tokens: np.ndarray, nsd_ids: np.ndarray) -> dict:
    """What the captions depend on: the settings (model path, prompt, lengths), the exact input tokens and
    the files of the model directory (:mod:`brainot.fingerprint`): other weights at the same path do not
    resume another model's partial captions."""
    h = hashlib.sha256(nsd_ids.astype(np.int64).tobytes())
    h.update(np.ascontiguousarray(tokens).tobytes())
    return fp.make({"caption": cfg, "tokens_sha256": h.hexdigest()}, models={"captioner": cfg["model"]})


def read_partial(path: Path, key: dict) -> list[str]:
    """Captions already made by an interrupted run with the same fingerprint (else none, saying why)."""
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines()
        stored = json.loads(lines[0])["fingerprint"]
    except (UnicodeDecodeError, IndexError, json.JSONDecodeError, TypeError, KeyError) as exc:
        atomic.set_aside(path, f"not a partial captions file ({type(exc).__name__}: its first line must be the "
                        "fingerprint record)")
        return []
    if stored != key:
        print(f"{path}: not resumed, starting afresh: {fp.changes(stored, key) or 'no fingerprint'}",
              file=sys.stderr)
        return []
    captions = []
    for line in lines[1:]:
        try:
            captions.extend(json.loads(line))
        except json.JSONDecodeError:   # a batch cut off mid-write: redo it
            break
    return captions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m brainot.caption.generate",
        description="Caption test images with a Shikra-format LLM fed image tokens: predicted from the brain "
                    "(--tokens) or the true ones (--image-embeddings + --voxels, the upper bound).")
    parser.add_argument("--cfg", required=True, help="the caption config section as JSON (model, prompt, "
                                                     "max_new_tokens, batch_size)")
    parser.add_argument("--tokens", help="predictions .h5: tokens (N_test, T, D), nsd_id in test order")
    parser.add_argument("--image-embeddings", nargs="+",
                        help="embedding caches (tokens, sorted nsd_id) holding the test images: feed the true tokens")
    parser.add_argument("--voxels", help="voxels .h5 whose test/nsd_id gives the test images (with --image-embeddings)")
    parser.add_argument("--stim-info", required=True, help="nsd_stim_info_merged.csv (for the COCO ids)")
    parser.add_argument("--out-json", required=True, help='captions {"0": "...", ...} in test order')
    parser.add_argument("--out-parquet", required=True, help="captions with position, nsd_id, coco_id")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per generate() call (a throughput setting; default: the cfg's batch_size)")
    args = parser.parse_args(argv)
    if bool(args.tokens) == bool(args.image_embeddings) or bool(args.image_embeddings) != bool(args.voxels):
        parser.error("give either --tokens, or --image-embeddings together with --voxels")
    cfg = json.loads(args.cfg)
    cfg["batch_size"] = args.batch_size or cfg.get("batch_size")
    if cfg["batch_size"] is None:
        parser.error("--batch-size: required when --cfg holds no batch_size")

    t0 = time.perf_counter()
    if args.tokens:
        predictions = data.read_predictions(args.tokens)
        tokens, nsd_ids = predictions.tokens, predictions.nsd_id
        source = args.tokens
    else:
        tokens, nsd_ids = read_image_fed(args.image_embeddings, args.voxels)
        source = f"{' '.join(args.image_embeddings)} (true tokens of {args.voxels})"
    coco = coco_ids(args.stim_info, nsd_ids)
    captioner = shikra.load(cfg["model"], args.device)
    t1 = time.perf_counter()

    partial = Path(str(args.out_json) + ".partial.jsonl")
    key = fingerprint(cfg, tokens, nsd_ids)
    done = read_partial(partial, key)
    if done:
        print(f"resuming: {len(done)} of {len(nsd_ids)} captions from {partial}", file=sys.stderr)
    # rewrite it with the whole batches read back (dropping a line cut off mid-write), then append as batches finish
    atomic.write_text(partial, json.dumps({"fingerprint": key}) + "\n" + (json.dumps(done) + "\n" if done else ""))
    with partial.open("a") as fh:
        def save_batch(first, texts):
            fh.write(json.dumps(texts) + "\n")
            fh.flush()

        captions = done + shikra.caption(captioner, tokens, cfg["prompt"], cfg["max_new_tokens"],
                                         cfg["batch_size"], cfg["postprocess"], progress=not args.no_progress,
                                         on_batch=save_batch, start=len(done))
    t2 = time.perf_counter()
    data.write_captions(args.out_json, args.out_parquet, captions, nsd_ids, coco)
    partial.unlink()
    n_new = len(captions) - len(done)
    print(f"caption: {len(captions)} images from {source}, tokens {tokens.shape[1]}x{tokens.shape[2]}, "
          f"model {cfg['model']} on {captioner.device} ({str(captioner.dtype).replace('torch.', '')}), "
          f"batch {cfg['batch_size']}: load {t1 - t0:.1f} s, {n_new} captioned in {t2 - t1:.1f} s "
          f"({n_new / max(t2 - t1, 1e-9):.1f} img/s); {len(set(captions))} distinct captions; "
          f"wrote {args.out_json} and {args.out_parquet}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
