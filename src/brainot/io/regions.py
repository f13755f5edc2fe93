"""Region sets ``results/rois/{subject}/{region}.h5`` (docs/contracts.md): dataset ``columns``, a 1-D int64
array of sorted column indices into the subject's voxel matrix, with attributes ``subject`` and ``region``.
Written by :mod:`brainot.data.rois` through :func:`write_region`, read through :func:`read_region`,
:func:`region_of` and :func:`region_subject`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from brainot import atomic
from brainot.io.h5 import DataError, check_ndim, dataset, open_h5, text_attr

COLUMNS = "columns"
EXPECTED = "a region set of brainot.data.rois (HDF5: 'columns' (C,) int64, attributes subject and region)"
WRITER = "rule roi_region (python -m brainot.data.rois region)"


def write_region(path: str | Path, columns: np.ndarray, subject: str, region: str) -> None:
    """Write the sorted voxel columns (C,) of one region set, atomically, as int64, with its subject and name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset(COLUMNS, data=np.asarray(columns).astype(np.int64, copy=False))
        fh.attrs["subject"] = subject
        fh.attrs["region"] = region


def read_region(path: str | Path, n_vox: int) -> np.ndarray:
    """A region set's voxel columns: (C,) int64, unique, each in ``0..n_vox-1``, at least one."""
    with open_h5(path, EXPECTED) as fh:
        ds = dataset(fh, path, COLUMNS, EXPECTED)
        check_ndim(ds, path, 1, "(C,) 1-D integer voxel columns")
        if not np.issubdtype(ds.dtype, np.integer):
            raise DataError(f"{path}: {COLUMNS} has dtype {ds.dtype}; expected 1-D integer voxel columns")
        cols = ds[()]
    if cols.size == 0:
        raise DataError(f"{path}: the region set has no voxels for this subject; an encoder cannot be trained on it")
    if cols.min() < 0 or cols.max() >= n_vox:
        raise DataError(f"{path}: voxel columns must be in 0..{n_vox - 1} (the voxel file has {n_vox} columns), "
                        f"got {cols.min()}..{cols.max()}")
    if np.unique(cols).size != cols.size:
        raise DataError(f"{path}: voxel columns repeat; expected unique indices")
    return cols.astype(np.int64)


def region_of(path: str | Path) -> str:
    """The region set a region file holds (its ``region`` attribute)."""
    with open_h5(path, EXPECTED) as fh:
        return text_attr(fh, path, "region", WRITER)


def region_subject(path: str | Path) -> str:
    """The subject a region file belongs to (its ``subject`` attribute)."""
    with open_h5(path, EXPECTED) as fh:
        return text_attr(fh, path, "subject", WRITER)
