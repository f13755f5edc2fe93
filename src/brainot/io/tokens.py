"""Image-token caches ``results/embeddings/{name}/{images}.h5`` (``images``: ``shared`` or a subject,
docs/embeddings.md): ``tokens`` (N, T, D) float16, ``nsd_id`` (N,) int64 sorted ascending, the provenance
attributes. Written by :mod:`brainot.embed` through :func:`create_part` (rows then filled in place and the
file published when every row is done), read through :func:`read_tokens`, :func:`cached_ids` and
:func:`embedding_shape`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from brainot.io.h5 import DataError, check_ndim, dataset, open_h5

EMBEDDINGS = "an embeddings file from brainot.embed (tokens (N, T, D) float16, nsd_id (N,) int64)"
# Rows read from the embeddings file at a time: large enough for fast sequential reads, small enough to stay
# well under memory (256 x 256 x 1024 float16 = 128 MiB at the real sizes).
EMBEDDING_BLOCK = 256
# The resume mask of an unfinished cache: ``done`` (N,) bool, True where the row of ``tokens`` is written.
DONE = "done"


# ---------------------------------------------------------------------------------------------- writing
def create_part(path: str | Path, attrs: dict, ids: np.ndarray, shape: tuple[int, int, int]) -> None:
    """A new unfinished cache: ``attrs``, ``nsd_id`` = ``ids``, ``done`` all False and an unwritten ``tokens``
    of ``shape`` (N, T, D) float16 whose rows the writer fills (setting ``done``); the writer deletes
    ``done`` when every row is written."""
    with h5py.File(path, "w") as fh:
        fh.attrs.update(attrs)
        fh.create_dataset("nsd_id", data=ids)
        fh.create_dataset(DONE, data=np.zeros(len(ids), dtype=bool))
        # Space allocated up front and never written as fill: batch writes then change no HDF5 metadata,
        # so a run killed at any moment leaves a readable file whose ``done`` rows are complete.
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple(shape)
        h5py.h5d.create(fh.id, b"tokens", h5py.h5t.py_create(np.dtype(np.float16)), space, dcpl=dcpl)


# ---------------------------------------------------------------------------------------------- reading
def _paths(paths: str | Path | list[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def embedding_shape(paths: str | Path | list[str | Path]) -> tuple[int, int]:
    """``(T, D)`` of an embeddings cache (the first of several: :func:`read_tokens` checks they agree)."""
    path = _paths(paths)[0]
    with open_h5(path, EMBEDDINGS) as fh:
        tokens = dataset(fh, path, "tokens", EMBEDDINGS)
        check_ndim(tokens, path, 3, "(N, T, D)")
        return int(tokens.shape[1]), int(tokens.shape[2])


def _cache_ids(fh: h5py.File, path: str | Path) -> np.ndarray:
    """The checked ``nsd_id`` (N,) of an open embeddings cache: one per row of ``tokens``, strictly increasing."""
    tokens = dataset(fh, path, "tokens", EMBEDDINGS)
    check_ndim(tokens, path, 3, "(N, T, D)")
    ids = dataset(fh, path, "nsd_id", EMBEDDINGS)[()]
    if ids.shape != (tokens.shape[0],):
        raise DataError(f"{path}: nsd_id has shape {ids.shape}; expected ({tokens.shape[0]},), one per row of tokens")
    if ids.size > 1 and np.any(np.diff(ids) <= 0):
        raise DataError(f"{path}: nsd_id must be strictly increasing (the contract: sorted, unique)")
    if ids.size == 0:
        raise DataError(f"{path}: the embeddings file holds no images")
    return ids.astype(np.int64)


def embedding_name(paths: str | Path | list[str | Path]) -> str:
    """The embedding's name: ``{name}`` of ``results/embeddings/{name}/{shared,subjNN}.h5``, or the stem of a
    single cache file named otherwise."""
    path = Path(_paths(paths)[0])
    images = path.stem
    if images == "shared" or (images.startswith("subj") and images[4:].isdigit()):
        return path.parent.name
    return images


def cached_ids(paths: str | Path | list[str | Path]) -> np.ndarray:
    """Sorted unique ``nsd_id`` held by one or several embeddings caches."""
    ids = []
    for path in _paths(paths):
        with open_h5(path, EMBEDDINGS) as fh:
            ids.append(_cache_ids(fh, path))
    return np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)


def _read_rows(path: str | Path, tokens: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (ascending, unique) of ``tokens`` by contiguous block reads: h5py's per-element fancy
    indexing is far slower."""
    out = np.empty((rows.size,) + tokens.shape[1:], dtype=np.float16)
    for start in range(0, rows.size, EMBEDDING_BLOCK):
        chunk = rows[start:start + EMBEDDING_BLOCK]
        block = tokens[int(chunk[0]):int(chunk[-1]) + 1]
        out[start:start + chunk.size] = block[chunk - chunk[0]]
    if not np.isfinite(out).all():
        raise DataError(f"{path}: tokens holds NaN or infinite values (float16 overflow?); expected finite values")
    return out


def read_tokens(paths: str | Path | list[str | Path], nsd_ids: np.ndarray) -> np.ndarray:
    """Image tokens of ``nsd_ids`` (any order, repeats allowed): (len(nsd_ids), T, D) float16.

    ``paths``: one embeddings cache or several (e.g. the shared test images' and a subject's training images',
    ``results/embeddings/{name}/{shared,subjNN}.h5``); each id is read from the first cache that holds it.
    Rows are found by binary search in each cache's sorted ``nsd_id``; an id in none of them is an error that
    names it, and caches of different (T, D) are an error.
    """
    paths = _paths(paths)
    nsd_ids = np.asarray(nsd_ids, dtype=np.int64)
    wanted = np.unique(nsd_ids)
    out = None
    todo = np.ones(wanted.size, dtype=bool)
    for path in paths:
        with open_h5(path, EMBEDDINGS) as fh:
            ids = _cache_ids(fh, path)
            tokens = fh["tokens"]
            if out is None:
                out = np.empty((wanted.size,) + tokens.shape[1:], dtype=np.float16)
                first = path
            elif tokens.shape[1:] != out.shape[1:]:
                raise DataError(f"{path}: tokens are (T, D) = {tokens.shape[1:]} but {first} holds {out.shape[1:]}; "
                                "expected caches of one model and settings")
            rows = np.minimum(np.searchsorted(ids, wanted), ids.size - 1)
            here = todo & (ids[rows] == wanted)
            if here.any():
                out[here] = _read_rows(path, tokens, rows[here])
                todo &= ~here
    if out is None:
        raise DataError("no embeddings cache given")
    if todo.any():
        missing = np.isin(nsd_ids, wanted[todo])
        names = ", ".join(map(str, paths))
        raise DataError(f"{names}: nsd_id {int(nsd_ids[missing][0])} is not in the embeddings "
                        f"({int(missing.sum())} of {nsd_ids.size} requested ids missing)")
    return out[np.searchsorted(wanted, nsd_ids)]
