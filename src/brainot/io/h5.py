"""The error of every file contract and the HDF5 helpers every reader goes through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import h5py


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


def dataset(fh: h5py.File, path: str | Path, key: str, expected: str = "") -> h5py.Dataset:
    """Dataset ``key`` of an open file, or a :class:`DataError` naming the file, the key and ``expected``."""
    if key not in fh or not isinstance(fh[key], h5py.Dataset):
        raise DataError(f"{path}: missing dataset {key!r}" + (f"; expected {expected}" if expected else ""))
    return fh[key]


def check_ndim(ds: h5py.Dataset, path: str | Path, ndim: int, shape_doc: str) -> None:
    if ds.ndim != ndim:
        raise DataError(f"{path}: {ds.name} has shape {ds.shape}; expected {shape_doc}")


def text_attr(fh: h5py.File, path: str | Path, key: str, writer: str) -> str:
    """A string attribute the writer stores (``subject``, ``region``); a file without it predates the
    attribute: the error names the file and says to rebuild it with ``writer``."""
    if key not in fh.attrs:
        raise DataError(f"{path}: missing attribute {key!r}; expected a file written by {writer}, which stores "
                        f"it. The file predates that attribute: delete it and rebuild it with {writer}")
    value = fh.attrs[key]
    return value.decode() if isinstance(value, bytes) else str(value)
