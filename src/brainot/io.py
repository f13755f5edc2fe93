"""Reading the training inputs: voxel matrices, region column indices and image-token embeddings.

Contracts (``docs/contracts.md``):

- ``results/voxels/{subject}.h5``: ``{split}/voxels`` (N, 3, V) float32 (one row per repeat; rows past
  ``n_reps`` are fill), ``{split}/nsd_id`` (N,) int64, ``{split}/n_reps`` (N,), for split ``train`` and ``test``;
- ``results/rois/{subject}/{region}.npy``: int64 column indices into the voxel matrix;
- ``results/embeddings/{name}/{images}.h5`` (``images``: ``shared`` or a subject, docs/embeddings.md): ``tokens``
  (N, T, D) float16, ``nsd_id`` (N,) int64 sorted ascending.

Every reader checks shapes and dtypes and raises :class:`DataError` naming the file, the key and what was
expected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from brainot.data import layout

SPLITS = ("train", "test")
# Rows read from the embeddings file at a time: large enough for fast sequential reads, small enough to stay
# well under memory (256 x 256 x 1024 float16 = 128 MiB at the real sizes).
EMBEDDING_BLOCK = 256


VOXELS = "a voxels file from brainot.data.extract (train|test/voxels (N, 3, V) float32, nsd_id, n_reps)"
EMBEDDINGS = "an embeddings file from brainot.embed (tokens (N, T, D) float16, nsd_id (N,) int64)"
PREDICTIONS = "a predictions file from brainot.predict (tokens (N, T, D) float32, nsd_id (N,) int64)"


class DataError(ValueError):
    """An input file does not match its contract; the message names the file, the key and the expectation."""


@contextlib.contextmanager
def open_h5(path: str | Path, expected: str) -> Iterator[h5py.File]:
    """Open an HDF5 input for reading: every input file goes through here.

    A missing, truncated or otherwise unreadable file (HDF5 raises a bare ``OSError`` that names neither the
    file nor the contract), on opening or on any read inside the block, becomes a :class:`DataError` naming
    the file and ``expected`` (what the file should be), and saying how to have it made again.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected {expected}")
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(_unreadable(path, expected, exc)) from None
    with fh:
        try:
            yield fh
        except OSError as exc:
            raise DataError(_unreadable(path, expected, exc)) from None


def _unreadable(path: Path, expected: str, exc: OSError) -> str:
    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (f"{path}: not a readable HDF5 file ({why}; {path.stat().st_size} bytes): truncated or damaged; "
            f"expected {expected}. Delete it so that the step that writes it runs again")


def subject_of(path: str | Path) -> str:
    """``results/voxels/subj01.h5 -> 'subj01'`` (the contract names voxel files by subject)."""
    name = Path(path).stem
    try:
        layout.subject_number(name)
    except ValueError:
        raise DataError(f"{path}: voxel files are named by subject (e.g. results/voxels/subj01.h5), "
                        f"got {name!r}") from None
    return name


def _dataset(fh: h5py.File, path: str | Path, key: str) -> h5py.Dataset:
    if key not in fh or not isinstance(fh[key], h5py.Dataset):
        raise DataError(f"{path}: missing dataset {key!r}")
    return fh[key]


def _check_ndim(ds: h5py.Dataset, path: str | Path, ndim: int, shape_doc: str) -> None:
    if ds.ndim != ndim:
        raise DataError(f"{path}: {ds.name} has shape {ds.shape}; expected {shape_doc}")


def n_voxels(path: str | Path) -> int:
    """``V``, the number of columns of a voxel file's matrices."""
    with open_h5(path, VOXELS) as fh:
        ds = _dataset(fh, path, "train/voxels")
        _check_ndim(ds, path, 3, "(N, 3, V)")
        return int(ds.shape[2])


def read_split(path: str | Path, split: str, columns: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One split of a voxel file: ``voxels`` (N, R, C) float32, ``nsd_id`` (N,) int64, ``n_reps`` (N,) int64.

    ``columns`` (C,) selects voxel columns (a region set); ``None`` keeps all V.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    with open_h5(path, VOXELS) as fh:
        vox = _dataset(fh, path, f"{split}/voxels")
        _check_ndim(vox, path, 3, "(N, 3, V)")
        nsd_id = _dataset(fh, path, f"{split}/nsd_id")[()]
        n_reps = _dataset(fh, path, f"{split}/n_reps")[()]
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


def read_region(path: str | Path, n_vox: int) -> np.ndarray:
    """A region set's voxel columns: (C,) int64, unique, each in ``0..n_vox-1``, at least one."""
    cols = np.load(path, allow_pickle=False)
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
    """``results/rois/subj01/V+P.npy -> 'V+P'``."""
    return Path(path).stem


def embedding_shape(paths: str | Path | list[str | Path]) -> tuple[int, int]:
    """``(T, D)`` of an embeddings cache (the first of several: :func:`read_tokens` checks they agree)."""
    path = _paths(paths)[0]
    with open_h5(path, EMBEDDINGS) as fh:
        tokens = _dataset(fh, path, "tokens")
        _check_ndim(tokens, path, 3, "(N, T, D)")
        return int(tokens.shape[1]), int(tokens.shape[2])


def _cache_ids(fh: h5py.File, path: str | Path) -> np.ndarray:
    """The checked ``nsd_id`` (N,) of an open embeddings cache: one per row of ``tokens``, strictly increasing."""
    tokens = _dataset(fh, path, "tokens")
    _check_ndim(tokens, path, 3, "(N, T, D)")
    ids = _dataset(fh, path, "nsd_id")[()]
    if ids.shape != (tokens.shape[0],):
        raise DataError(f"{path}: nsd_id has shape {ids.shape}; expected ({tokens.shape[0]},), one per row of tokens")
    if ids.size > 1 and np.any(np.diff(ids) <= 0):
        raise DataError(f"{path}: nsd_id must be strictly increasing (the contract: sorted, unique)")
    if ids.size == 0:
        raise DataError(f"{path}: the embeddings file holds no images")
    return ids.astype(np.int64)


def _paths(paths: str | Path | list[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


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


def average_repeats(voxels: np.ndarray, n_reps: np.ndarray) -> np.ndarray:
    """Mean over the real repeats of each row: ``voxels`` (N, R, C), ``n_reps`` (N,) -> (N, C) float32.

    ``mean_{r < n_reps[i]} voxels[i, r, :]``: fill rows (``r >= n_reps[i]``) are left out.
    """
    real = np.arange(voxels.shape[1])[None, :] < n_reps[:, None]                   # (N, R)
    # where, not a 0/1 weight: fill rows may hold anything, NaN included, and 0 * NaN is NaN
    summed = np.where(real[:, :, None], voxels, 0).sum(axis=1)
    return (summed / n_reps[:, None]).astype(np.float32)


@dataclass
class SubjectData:
    """One subject's training and test arrays for one region set (numpy, host memory)."""

    subject: str
    train_voxels: np.ndarray    # (N, R, C) float32
    train_reps: np.ndarray      # (N,) int64
    train_tokens: np.ndarray    # (N, T, D) float16
    test_voxels: np.ndarray     # (M, C) float32, repeat-averaged
    test_tokens: np.ndarray     # (M, T, D) float16
    test_nsd_id: np.ndarray     # (M,) int64

    @property
    def n_voxels(self) -> int:
        return int(self.train_voxels.shape[2])


def load_subject(voxels_path: str | Path, region_path: str | Path,
                 embeddings_path: str | Path | list[str | Path]) -> SubjectData:
    """A subject's region columns of both splits, with the image tokens of every row (from the caches
    ``embeddings_path``, see :func:`read_tokens`)."""
    cols = read_region(region_path, n_voxels(voxels_path))
    train_vox, train_ids, train_reps = read_split(voxels_path, "train", cols)
    test_vox, test_ids, test_reps = read_split(voxels_path, "test", cols)
    if train_vox.shape[0] == 0:
        raise DataError(f"{voxels_path}: train/voxels has no rows")
    return SubjectData(
        subject=subject_of(voxels_path),
        train_voxels=train_vox, train_reps=train_reps, train_tokens=read_tokens(embeddings_path, train_ids),
        test_voxels=average_repeats(test_vox, test_reps), test_tokens=read_tokens(embeddings_path, test_ids),
        test_nsd_id=test_ids,
    )
