"""Predictions ``results/predictions/{run}/{subject}.h5`` (docs/contracts.md): ``tokens`` (N_test, T, D) float32,
``nsd_id`` (N_test,) int64 in the voxel file's test order; attributes ``subject``, ``region``, ``objective``,
``model``, ``embedding``. Written by :mod:`brainot.predict` through :func:`write_predictions`, read through
:func:`read_predictions` (whole) or :func:`prediction_ids`, :func:`prediction_shape` and :func:`prediction_rows`
(in blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from brainot import atomic
from brainot.io.h5 import DataError, dataset, open_h5, text_attr

PREDICTIONS = "a predictions file from brainot.predict (tokens (N, T, D) float32, nsd_id (N,) int64)"
WRITER = "brainot.predict (rule predict)"


@dataclass
class Predictions:
    """One predictions file: the tokens and ids in test order, and whose they are."""

    tokens: np.ndarray      # (N, T, D) float32
    nsd_id: np.ndarray      # (N,) int64
    subject: str
    region: str


def write_predictions(path: str | Path, tokens: np.ndarray, nsd_id: np.ndarray, *, subject: str, region: str,
                      objective: str, model: str, embedding: str) -> None:
    """Write ``tokens`` (N, T, D) as float32 and ``nsd_id`` (N,) as int64 with the run's attributes, atomically."""
    with atomic.atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("tokens", data=tokens.astype(np.float32))
        fh.create_dataset("nsd_id", data=nsd_id.astype(np.int64))
        fh.attrs.update({"model": model, "subject": subject, "region": region, "objective": objective,
                         "embedding": embedding})


def _checked(fh: h5py.File, path: str | Path) -> tuple[h5py.Dataset, np.ndarray]:
    """``tokens`` (the dataset) and ``nsd_id`` (N,) int64 of an open predictions file, their shapes checked."""
    tokens = dataset(fh, path, "tokens", PREDICTIONS)
    ids = dataset(fh, path, "nsd_id", PREDICTIONS)[()]
    if tokens.ndim != 3 or ids.shape != (tokens.shape[0],) or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{path}: tokens {tokens.shape} and nsd_id {ids.shape} {ids.dtype}; expected "
                        "tokens (N, T, D) and nsd_id (N,) integers")
    if not np.issubdtype(tokens.dtype, np.floating):
        raise DataError(f"{path}: tokens has dtype {tokens.dtype}; expected float32")
    return tokens, ids.astype(np.int64)


def read_predictions(path: str | Path) -> Predictions:
    """The whole predictions file: tokens as float32, ids, and the ``subject`` and ``region`` attributes."""
    with open_h5(path, PREDICTIONS) as fh:
        tokens, ids = _checked(fh, path)
        subject = text_attr(fh, path, "subject", WRITER)
        region = text_attr(fh, path, "region", WRITER)
        return Predictions(tokens=tokens[()].astype(np.float32), nsd_id=ids, subject=subject, region=region)


def prediction_shape(path: str | Path) -> tuple[int, int, int]:
    """``(N, T, D)`` of a predictions file's ``tokens``."""
    with open_h5(path, PREDICTIONS) as fh:
        return tuple(int(n) for n in _checked(fh, path)[0].shape)


def prediction_ids(path: str | Path) -> np.ndarray:
    """``nsd_id`` (N,) int64 of a predictions file, checked against its ``tokens`` (N, T, D)."""
    with open_h5(path, PREDICTIONS) as fh:
        return _checked(fh, path)[1]


def prediction_rows(path: str | Path, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a predictions file's ``tokens``: (stop - start, T, D) float32."""
    with open_h5(path, PREDICTIONS) as fh:
        return _checked(fh, path)[0][start:stop].astype(np.float32)
