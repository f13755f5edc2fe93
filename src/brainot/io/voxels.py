"""The voxel matrix ``results/voxels/{subject}.h5`` (docs/contracts.md): written by :mod:`brainot.data.extract`
through :func:`create` and :func:`finish`, read through :func:`read_split`, :func:`n_voxels`,
:func:`test_nsd_ids` and :func:`read_subject`.

Keys: ``{split}/voxels`` (N, 3, V) float32 (one row per repeat; rows past ``n_reps`` are fill), ``{split}/nsd_id``
(N,) int64, ``{split}/n_reps`` (N,) int64 for split ``train`` and ``test``; ``voxel_xyz`` (V, 3) int32,
``valid_fraction`` (V,) float32; attribute ``subject`` (``subj01``, ...) and the extraction settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from brainot.io.h5 import DataError, check_ndim, dataset, open_h5, text_attr

SPLITS = ("train", "test")
VOXELS = "a voxels file from brainot.data.extract (train|test/voxels (N, 3, V) float32, nsd_id, n_reps)"
WRITER = "brainot.data.extract (rule extract)"
# Attributes only an unfinished file carries: the resume state of brainot.data.extract.
RESUME_ATTRS = ("fingerprint", "sessions_done")


# ---------------------------------------------------------------------------------------------- writing
def create(path: str | Path, fingerprint: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], n_voxels: int,
           repeats: int) -> h5py.File:
    """A new, unfinished voxels file, open for writing: for each split ``name -> (nsd_id (N,), n_reps (N,))``
    its ids and repeat counts, and an unwritten ``{name}/voxels`` (N, repeats, n_voxels) float32 filled by
    :func:`split_voxels`; ``fingerprint`` and an empty ``sessions_done`` record are the resume state."""
    f = h5py.File(path, "w")
    f.attrs["fingerprint"] = fingerprint
    f.attrs["sessions_done"] = json.dumps({})
    for name, (nsd_id, n_reps) in splits.items():
        group = f.create_group(name)
        group.create_dataset("voxels", shape=(len(nsd_id), repeats, n_voxels), dtype=np.float32)
        group.create_dataset("nsd_id", data=np.asarray(nsd_id).astype(np.int64))
        group.create_dataset("n_reps", data=np.asarray(n_reps).astype(np.int64))
    return f


def split_voxels(f: h5py.File, split: str) -> h5py.Dataset:
    """``{split}/voxels`` (N, 3, V) of a file open for writing."""
    return f[split]["voxels"]


def finish(f: h5py.File, subject: str, voxel_xyz: np.ndarray, valid_fraction: np.ndarray, attrs: dict) -> None:
    """Complete a file made by :func:`create`: ``voxel_xyz`` (V, 3) int32, ``valid_fraction`` (V,) float32, the
    ``subject`` attribute and the settings ``attrs``; the resume state is removed."""
    for key, data in (("voxel_xyz", np.asarray(voxel_xyz).astype(np.int32)),
                      ("valid_fraction", np.asarray(valid_fraction).astype(np.float32))):
        if key in f:  # a resumed run that stopped after the last session
            del f[key]
        f.create_dataset(key, data=data)
    f.attrs["subject"] = subject
    for key, value in attrs.items():
        f.attrs[key] = value
    for key in RESUME_ATTRS:
        if key in f.attrs:
            del f.attrs[key]


# ---------------------------------------------------------------------------------------------- reading
def read_subject(path: str | Path) -> str:
    """The subject (``subj01``, ...) of a voxels file: its ``subject`` attribute."""
    with open_h5(path, VOXELS) as fh:
        return text_attr(fh, path, "subject", WRITER)


def n_voxels(path: str | Path) -> int:
    """``V``, the number of columns of a voxel file's matrices."""
    with open_h5(path, VOXELS) as fh:
        ds = dataset(fh, path, "train/voxels", VOXELS)
        check_ndim(ds, path, 3, "(N, 3, V)")
        return int(ds.shape[2])


def test_nsd_ids(path: str | Path) -> np.ndarray:
    """The test order: ``test/nsd_id`` (N,) int64, checked to be non-empty and strictly ascending."""
    with open_h5(path, VOXELS) as fh:
        ids = dataset(fh, path, "test/nsd_id", VOXELS)[()]
    if ids.ndim != 1 or len(ids) == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{path}: test/nsd_id has shape {ids.shape} dtype {ids.dtype}; expected a non-empty "
                        "(N,) integer array")
    if not (np.diff(ids) > 0).all():
        raise DataError(f"{path}: test/nsd_id is not strictly ascending; expected the test order of "
                        "docs/contracts.md (ascending nsd_id)")
    return ids.astype(np.int64)


def read_split(path: str | Path, split: str, columns: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One split of a voxel file: ``voxels`` (N, R, C) float32, ``nsd_id`` (N,) int64, ``n_reps`` (N,) int64.

    ``columns`` (C,) selects voxel columns (a region set); ``None`` keeps all V.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    with open_h5(path, VOXELS) as fh:
        vox = dataset(fh, path, f"{split}/voxels", VOXELS)
        check_ndim(vox, path, 3, "(N, 3, V)")
        nsd_id = dataset(fh, path, f"{split}/nsd_id", VOXELS)[()]
        n_reps = dataset(fh, path, f"{split}/n_reps", VOXELS)[()]
        n, repeats, v = vox.shape
        for key, arr in ((f"{split}/nsd_id", nsd_id), (f"{split}/n_reps", n_reps)):
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise DataError(f"{path}: {key} has shape {arr.shape} dtype {arr.dtype}; expected ({n},) integers "
                                f"(one per row of {split}/voxels)")
        if n and (n_reps.min() < 1 or n_reps.max() > repeats):
            raise DataError(f"{path}: {split}/n_reps must be in 1..{repeats}, got {n_reps.min()}..{n_reps.max()}")
        if columns is not None and len(columns) and columns.max() >= v:
            raise DataError(f"{path}: region column {columns.max()} is out of range for {v} voxels")
        data = vox[()]
    if data.dtype != np.float32:
        raise DataError(f"{path}: {split}/voxels has dtype {data.dtype}; expected float32")
    if columns is not None:
        data = np.ascontiguousarray(data[:, :, columns])
    real = np.arange(repeats)[None, :] < n_reps[:, None]
    if not np.isfinite(data[real]).all():
        raise DataError(f"{path}: {split}/voxels holds NaN or infinite values in real repeats; expected finite betas")
    return data, nsd_id.astype(np.int64), n_reps.astype(np.int64)


def average_repeats(voxels: np.ndarray, n_reps: np.ndarray) -> np.ndarray:
    """Mean over the real repeats of each row: ``voxels`` (N, R, C), ``n_reps`` (N,) -> (N, C) float32.

    ``mean_{r < n_reps[i]} voxels[i, r, :]``: fill rows (``r >= n_reps[i]``) are left out.
    """
    real = np.arange(voxels.shape[1])[None, :] < n_reps[:, None]                   # (N, R)
    # where, not a 0/1 weight: fill rows may hold anything, NaN included, and 0 * NaN is NaN
    summed = np.where(real[:, :, None], voxels, 0).sum(axis=1)
    return (summed / n_reps[:, None]).astype(np.float32)


def read_voxel_xyz(path: str | Path) -> np.ndarray:
    """``voxel_xyz`` (V, 3) of a voxel file, as int64: the NIfTI (x, y, z) of each column."""
    with open_h5(path, VOXELS) as fh:
        xyz = dataset(fh, path, "voxel_xyz", VOXELS)[()]
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DataError(f"{path}: voxel_xyz has shape {xyz.shape}; expected (V, 3)")
    return xyz.astype(np.int64)
