"""Peak memory and time of the training-data reads at NSD's real sizes (no NSD download needed).

Writes, once, a voxels file, a region set and an image-token cache in the pipeline's formats (docs/contracts.md) with
subject 1's sizes: 15724 nsdgeneral voxels, 8859 training and 982 test images (9841 images, 37 sessions x 750
trials, 3 repeats), tokens 256 x 1024 float16 (ViT-L/14's penultimate layer). ``--fraction f`` scales the image
counts by f (the voxel count and token shape stay real). Then, each in a fresh child process so that its peak
resident memory is its own (``getrusage(RUSAGE_SELF).ru_maxrss`` of the child):

- ``baseline``: the imports alone (Python, numpy, h5py, torch);
- ``region``: :func:`brainot.io.read_region` of a 4657-column region set (the paper's V) and
  :func:`brainot.io.read_split` of the training split restricted to it (the ROI indices applied);
- ``tokens``: :func:`brainot.io.read_tokens` of the training images from the cache (the embedding-cache read);
- ``load``: :func:`brainot.io.load_subject` with all 15724 voxels, what ``brainot.train`` loads per subject.

Time and memory above the baseline grow linearly with the image count (every array is images x a fixed row),
so the table also gives them divided by f. Extraction at real size is measured by ``python -m
benchmarks.extract`` (docs/extract.md).

    python -m benchmarks.realsize --dir /tmp/bench-realsize --fraction 0.25
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from benchmarks.harness import markdown, reuse_or_write

N_VOXELS = 15724
N_TRAIN, N_TEST = 8859, 982
REPEATS = 3
TOKENS, DIM = 256, 1024
REGION_V = 4657
BLOCK = 256   # images per write block of the token cache
STEPS = ("baseline", "region", "tokens", "load")


def sizes(fraction: float) -> dict:
    """Image counts scaled by ``fraction`` (at least 1 each); the voxel count and token shape are real."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    return {"train": max(1, round(N_TRAIN * fraction)), "test": max(1, round(N_TEST * fraction)),
            "voxels": N_VOXELS, "tokens": TOKENS, "dim": DIM}


def write_inputs(root: Path, spec: dict, seed: int = 0) -> dict[str, Path]:
    """The voxels file, a region set (brainot.io region file) and the token cache, in the pipeline's formats."""
    from brainot import io as data

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"voxels": root / "subj01.h5", "region": root / "V.h5", "embeddings": root / "tokens.h5"}
    n_img = spec["train"] + spec["test"]
    ids = np.sort(rng.choice(73000, n_img, replace=False)).astype(np.int64)
    split = rng.permutation(n_img)
    train_ids, test_ids = np.sort(ids[split[:spec["train"]]]), np.sort(ids[split[spec["train"]:]])
    with h5py.File(paths["voxels"], "w") as fh:
        fh.attrs["subject"] = "subj01"   # the voxels contract: extract stores the subject (brainot.io.read_subject)
        for name, nsd_id in (("train", train_ids), ("test", test_ids)):
            ds = fh.create_dataset(f"{name}/voxels", shape=(len(nsd_id), REPEATS, spec["voxels"]), dtype=np.float32)
            for start in range(0, len(nsd_id), BLOCK):
                n = min(BLOCK, len(nsd_id) - start)
                ds[start:start + n] = rng.standard_normal((n, REPEATS, spec["voxels"]), dtype=np.float32)
            fh[f"{name}/nsd_id"] = nsd_id
            fh[f"{name}/n_reps"] = np.full(len(nsd_id), REPEATS, dtype=np.int64)
    data.write_region(paths["region"], np.sort(rng.choice(spec["voxels"], REGION_V, replace=False)), "subj01", "V")
    with h5py.File(paths["embeddings"], "w") as fh:
        fh["nsd_id"] = ids
        ds = fh.create_dataset("tokens", shape=(n_img, spec["tokens"], spec["dim"]), dtype=np.float16)
        for start in range(0, n_img, BLOCK):
            n = min(BLOCK, n_img - start)
            ds[start:start + n] = rng.standard_normal((n, spec["tokens"], spec["dim"]), dtype=np.float32)
    return paths


def measure_step(step: str, root: Path) -> dict:
    """Run one step in this process; returns its seconds and this process's peak RSS in MiB."""
    import torch  # noqa: F401  (the trainer's imports belong to the baseline)

    from brainot import io as data

    voxels, region, embeddings = root / "subj01.h5", root / "V.h5", root / "tokens.h5"
    start = time.perf_counter()
    if step == "region":
        cols = data.read_region(region, data.n_voxels(voxels))
        arrays = data.read_split(voxels, "train", cols)
    elif step == "tokens":
        with h5py.File(voxels, "r") as fh:
            ids = fh["train/nsd_id"][()]
        arrays = (data.read_tokens(embeddings, ids),)
    elif step == "load":
        all_columns = root / "all.h5"
        data.write_region(all_columns, np.arange(data.n_voxels(voxels)), "subj01", "all")
        subject = data.load_subject(voxels, all_columns, embeddings)
        arrays = (subject.train_voxels, subject.train_tokens, subject.test_voxels, subject.test_tokens)
    elif step == "baseline":
        arrays = ()
    else:
        raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")
    seconds = time.perf_counter() - start
    return {"step": step, "seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "array_mib": sum(a.nbytes for a in arrays) / 2**20}


def run_child(step: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.realsize", "--measure", step, "--dir", str(root)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], fraction: float) -> str:
    """Markdown: measured time, peak RSS, arrays held; and time and RSS above the baseline divided by f."""
    base = next(r for r in rows if r["step"] == "baseline")["peak_mib"]
    cells = []
    for r in rows:
        above = r["peak_mib"] - base
        cells.append({"step": r["step"], "time": f"{r['seconds']:.2f} s", "peak RSS": f"{r['peak_mib']:.0f} MiB",
                      "arrays": f"{r['array_mib']:.0f} MiB", "above baseline": f"{above:.0f} MiB",
                      "full size (/ f): time, above baseline":
                          f"{r['seconds'] / fraction:.1f} s, {above / fraction / 1024:.2f} GiB"})
    return markdown(cells)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.realsize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Numbers: a Markdown table on stdout. The inputs are kept in --dir and reused by a run with the\n"
               "same sizes. docs/performance.md ('Training data at NSD's real size') records measured runs.")
    p.add_argument("--dir", required=True, help="directory for the generated inputs (reused when the sizes match)")
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of subject 1's image count, in (0, 1]")
    p.add_argument("--measure", choices=STEPS, help=argparse.SUPPRESS)   # the child's side
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    root = Path(args.dir)
    if args.measure:
        print(json.dumps(measure_step(args.measure, root)))
        return []
    spec = sizes(args.fraction)
    seconds = reuse_or_write(root / "bench-inputs.json", spec, lambda: write_inputs(root, spec))
    if seconds is not None:
        print(f"wrote inputs ({spec}) in {seconds:.1f} s", file=sys.stderr)
    rows = [run_child(step, root) for step in STEPS]
    print(f"{spec['train']} training + {spec['test']} test images (fraction {args.fraction}), {spec['voxels']} voxels, "
          f"tokens {spec['tokens']} x {spec['dim']} float16")
    print(table(rows, args.fraction))
    return rows


if __name__ == "__main__":
    main()
