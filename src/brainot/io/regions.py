"""Region sets ``results/rois/{subject}/{region}.npy`` (docs/contracts.md): a 1-D int64 array of sorted column
indices into the subject's voxel matrix. Written by :mod:`brainot.data.rois` through :func:`write_region`,
read through :func:`read_region`.

An ``.npy`` file has no room for metadata (numpy rejects any header key beyond ``descr``, ``fortran_order``
and ``shape``), so the region set's name is the file's stem and its subject the folder's name
(:func:`region_of`, :func:`region_subject`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainot import atomic
from brainot.io.h5 import DataError


def write_region(path: str | Path, columns: np.ndarray) -> None:
    """Write the sorted voxel columns (C,) of one region set, atomically, as int64."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.asarray(columns).astype(np.int64, copy=False))


def read_region(path: str | Path, n_vox: int) -> np.ndarray:
    """A region set's voxel columns: (C,) int64, unique, each in ``0..n_vox-1``, at least one."""
    try:
        cols = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; expected a region set of brainot.data.rois (1-D int64 .npy)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc}); expected a region set of brainot.data.rois "
                        "(1-D int64). Delete it so that rule rois writes it again") from None
    if cols.ndim != 1 or not np.issubdtype(cols.dtype, np.integer):
        raise DataError(f"{path}: expected a 1-D integer array of voxel columns, got shape {cols.shape} "
                        f"dtype {cols.dtype}")
    if cols.size == 0:
        raise DataError(f"{path}: the region set has no voxels for this subject; an encoder cannot be trained on it")
    if cols.min() < 0 or cols.max() >= n_vox:
        raise DataError(f"{path}: voxel columns must be in 0..{n_vox - 1} (the voxel file has {n_vox} columns), "
                        f"got {cols.min()}..{cols.max()}")
    if np.unique(cols).size != cols.size:
        raise DataError(f"{path}: voxel columns repeat; expected unique indices")
    return cols.astype(np.int64)


def region_of(path: str | Path) -> str:
    """The region set of a region file: ``results/rois/subj01/V+P.npy -> 'V+P'``."""
    return Path(path).stem


def region_subject(path: str | Path) -> str:
    """The subject of a region file: ``results/rois/subj01/V+P.npy -> 'subj01'``."""
    return Path(path).parent.name
