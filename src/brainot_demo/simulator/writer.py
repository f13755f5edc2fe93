"""File writers that never leave a plausible-looking partial file: write a hidden temporary, then rename.

Byte-level determinism where the format allows it (gzip without a timestamp, HDF5 without object times),
so the same seed gives the same files.
"""

from __future__ import annotations

import gzip
import io
import json
from contextlib import contextmanager
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.io

from brainot.atomic import atomic_path


# The package's one atomic writer (temporary in the same directory, fsync, rename).
atomic = atomic_path


def write_text(path: str | Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj))


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic(path) as tmp:
        frame.to_csv(tmp)


MAT_HEADER_TEXT = 116   # bytes of descriptive text at the start of a MATLAB v5 file


def write_mat(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """MATLAB v5 file (what ``scipy.io.loadmat`` reads, as NSD's ``nsd_expdesign.mat``).

    The header's free text (scipy puts the creation time there) is fixed so the bytes depend on the data only.
    """
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, arrays, format="5", oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:MAT_HEADER_TEXT] = b"MATLAB 5.0 MAT-file, written by brainot_demo.simulate".ljust(MAT_HEADER_TEXT)
    with atomic(path) as tmp:
        tmp.write_bytes(bytes(data))


def write_nifti(path: str | Path, volume: np.ndarray, affine: np.ndarray) -> None:
    """A gzipped NIfTI-1 volume, (X, Y, Z) as nibabel returns it."""
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic(path) as tmp:
        tmp.write_bytes(gzip.compress(image.to_bytes(), mtime=0))


@contextmanager
def h5_file(path: str | Path):
    """An HDF5 file opened for writing under a temporary name; renamed into place when the block succeeds."""
    with atomic(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as fh:
            yield fh


def write_h5(path: str | Path, name: str, array: np.ndarray) -> None:
    """One uncompressed, contiguous dataset (NSD's betas files)."""
    with h5_file(path) as fh:
        fh.create_dataset(name, data=array, track_times=False)
