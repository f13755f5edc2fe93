"""Memory and time of :mod:`brainot.data.extract` on a subject of NSD's real size (no NSD download needed).

Writes, in the NSD bucket layout, a random design of NSD's dimensions (30000 trials, 10000 images per
subject, 1000 shared, 3 repeats; a random permutation, not NSD's real ordering), the stimulus table, and one
subject's nsdgeneral volume, validity masks and single-trial betas at real size (subj01: 81 x 104 x 83 voxels,
15724 in nsdgeneral, 750 trials per session, 37 sessions). Then runs ``python -m brainot.data.extract`` in a child
process and reports its wall time and peak resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

The betas files are gzip-compressed HDF5 (NSD's are uncompressed) so that 37 sessions take ~1 GB of disk
instead of ~39 GB: reading time here is decompression, not NSD's 1 GB-per-session disk read.

    python -m benchmarks.extract --dir /tmp/bench-nsd --sessions 37
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
import nibabel as nib
import numpy as np
import pandas as pd
from scipy.io import savemat
from tqdm import tqdm

from benchmarks.harness import reuse_or_write
from brainot.data import layout

N_NSD = 73000


def random_design(seed: int = 0, n_images: int = 10000, n_shared: int = 1000, repeats: int = 3,
                  n_subjects: int = 8, n_nsd: int = N_NSD) -> dict[str, np.ndarray]:
    """An experiment design with NSD's dimensions and conventions (1-based, MATLAB shapes).

    masterordering (1, n_images * repeats): every 10k-index ``repeats`` times, randomly permuted;
    subjectim (n_subjects, n_images): the first ``n_shared`` columns identical for every subject, the rest
    disjoint across subjects; sharedix (1, n_shared): the shared images' nsdIds.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.repeat(np.arange(1, n_images + 1), repeats))
    if n_shared + n_subjects * (n_images - n_shared) > n_nsd:
        raise ValueError(f"{n_subjects} subjects x {n_images} images do not fit in {n_nsd} nsdIds")
    ids = rng.permutation(n_nsd)[: n_shared + n_subjects * (n_images - n_shared)] + 1
    shared, own = ids[:n_shared], ids[n_shared:].reshape(n_subjects, n_images - n_shared)
    subjectim = np.concatenate([np.tile(shared, (n_subjects, 1)), own], axis=1)
    return {"masterordering": order[None, :], "subjectim": subjectim, "sharedix": np.sort(shared)[None, :]}


def stim_info(design: dict[str, np.ndarray], n_nsd: int = N_NSD) -> pd.DataFrame:
    """NSD's stimulus-table columns the pipeline reads, derived from a design: one row per nsdId."""
    order = design["masterordering"].ravel()
    subjectim = design["subjectim"]
    table = pd.DataFrame({"cocoId": np.arange(n_nsd), "nsdId": np.arange(n_nsd),
                          "shared1000": np.isin(np.arange(n_nsd), design["sharedix"].ravel() - 1)})
    for s in range(subjectim.shape[0]):
        nsd_of_trial = subjectim[s, order - 1] - 1
        reps = np.zeros((n_nsd, 3), dtype=np.int64)
        seen = np.zeros(n_nsd, dtype=np.int64)
        for trial, image in enumerate(nsd_of_trial):
            reps[image, seen[image]] = trial + 1
            seen[image] += 1
        table[f"subject{s + 1}"] = (seen > 0).astype(int)
        for k in range(3):
            table[f"subject{s + 1}_rep{k}"] = reps[:, k]
    return table


def write_design(root: Path, design: dict[str, np.ndarray], n_nsd: int = N_NSD) -> None:
    """``nsd_expdesign.mat`` and ``nsd_stim_info_merged.csv`` under ``root`` in the bucket layout."""
    (root / layout.EXPDESIGN).parent.mkdir(parents=True, exist_ok=True)
    savemat(root / layout.EXPDESIGN, {k: v.astype(np.float64) for k, v in design.items()})
    stim_info(design, n_nsd).to_csv(root / layout.STIM_INFO)


def blob_mask(shape_xyz: tuple[int, int, int], n_voxels: int) -> np.ndarray:
    """(X, Y, Z) int16 nsdgeneral-like volume: label 1 on the ``n_voxels`` voxels nearest a posterior point."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape_xyz], indexing="ij"), axis=-1)
    centre = np.array(shape_xyz) * np.array([0.5, 0.25, 0.45])
    dist = np.linalg.norm((grid - centre) / np.array(shape_xyz), axis=-1).ravel()
    labels = np.full(dist.size, -1, dtype=np.int16)
    labels[np.argsort(dist, kind="stable")[: 4 * n_voxels]] = 0
    labels[np.argsort(dist, kind="stable")[:n_voxels]] = 1
    return labels.reshape(shape_xyz)


def save_nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.8, 1.8, 1.8, 1.0])), str(path))


def write_subject(root: Path, subject: int, sessions: list[int], labels: np.ndarray, trials_per_session: int,
                  seed: int = 0, invalid_fraction: float = 0.02, compress: bool = True) -> None:
    """One subject's nsdgeneral volume, validity masks and random int16 betas (x300) in the bucket layout.

    In each session a random ``invalid_fraction`` of the nsdgeneral voxels is invalid and, as in NSD, has
    betas of exactly 0. Betas are 0 outside nsdgeneral.
    """
    rng = np.random.default_rng(seed)
    save_nifti(root / layout.roi(subject, "nsdgeneral"), labels)
    inside = labels == 1
    xyz = np.argwhere(inside)
    shape_zyx = tuple(reversed(labels.shape))
    for session in tqdm(sessions, desc=f"write {layout.subj(subject)}", unit="session", file=sys.stderr):
        valid = np.ones(len(xyz), dtype=bool)
        valid[rng.random(len(xyz)) < invalid_fraction] = False
        valid_vol = np.zeros(labels.shape, dtype=np.int16)
        valid_vol[tuple(xyz.T)] = valid
        save_nifti(root / layout.valid_session(subject, session), valid_vol)
        path = root / layout.betas(subject, session)
        path.parent.mkdir(parents=True, exist_ok=True)
        offset = rng.normal(0, 200, len(xyz))
        with h5py.File(path, "w") as f:
            opts = {"chunks": (1, *shape_zyx), "compression": "gzip", "compression_opts": 1} if compress else {}
            ds = f.create_dataset("betas", shape=(trials_per_session, *shape_zyx), dtype=np.int16, **opts)
            for start in range(0, trials_per_session, 50):
                n = min(50, trials_per_session - start)
                values = np.clip(rng.normal(offset, 300, (n, len(xyz))), -32000, 32000) * valid
                block = np.zeros((n, *labels.shape), dtype=np.int16)
                block[:, inside] = values.astype(np.int16)
                ds[start:start + n] = block.transpose(0, 3, 2, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extract", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Numbers: one line on stdout (wall time, CPU time, peak RSS, output size). The inputs are kept\n"
               "in --dir and reused by a run with the same sizes. docs/extract.md ('Memory and time at NSD's\n"
               "size') records measured runs.")
    parser.add_argument("--dir", required=True, help="directory for the simulated bucket and the output")
    parser.add_argument("--sessions", type=int, default=37, help="sessions 1..N to write and extract")
    parser.add_argument("--trials", type=int, default=750, help="trials per session")
    parser.add_argument("--shape", type=int, nargs=3, default=[81, 104, 83], help="volume (X, Y, Z)")
    parser.add_argument("--voxels", type=int, default=15724, help="nsdgeneral voxels")
    parser.add_argument("--policy", default="zero", choices=["keep", "zero", "drop"], help="nsd.valid_policy")
    parser.add_argument("--no-compress", action="store_true", help="write uncompressed betas, as NSD's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path(args.dir) / "nsd"
    n_images = args.trials * 40 // 3
    marker = root / "bench-inputs.json"
    spec = {"sessions": args.sessions, "trials": args.trials, "shape": args.shape, "voxels": args.voxels,
            "compress": not args.no_compress}

    def write_inputs():
        write_design(root, random_design(n_images=n_images, n_shared=n_images // 10))
        write_subject(root, 1, list(range(1, args.sessions + 1)), blob_mask(tuple(args.shape), args.voxels),
                      args.trials, compress=not args.no_compress)

    seconds = reuse_or_write(marker, spec, write_inputs)
    if seconds is not None:
        print(f"wrote inputs in {seconds:.1f} s")
    nsd = {"dir": str(root), "sessions": {"first": 1, "last": args.sessions}, "space": "func1pt8mm",
           "beta_version": "betas_fithrf_GLMdenoise_RR", "valid_policy": args.policy}
    out = Path(args.dir) / "voxels" / "subj01.h5"
    cmd = [sys.executable, "-m", "brainot.data.extract", "--nsd", json.dumps(nsd), "--subject", "subj01",
           "--out", str(out), "--validity", str(out.with_suffix(".validity.tsv")), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"extract: {args.sessions} sessions x {args.trials} trials x {args.voxels} voxels, policy {args.policy}: "
          f"wall {wall:.1f} s, CPU user {usage.ru_utime:.1f} s + system {usage.ru_stime:.1f} s, "
          f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB, output {out.stat().st_size / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
