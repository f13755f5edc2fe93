"""Atomic file writes and setting damaged files aside: the one place that knows how to replace a file safely.

A file is written under a temporary name in its own directory (same filesystem, so the rename is atomic),
flushed and fsynced, then renamed over the target with :func:`os.replace`. A reader, or a rerun after a kill
or a power cut, finds either the old complete file or the new complete file, never a mix or a prefix. On
error the temporary is removed and the old file is left as it was.

:func:`set_aside` is the other half: a file of our own that cannot be read (a checkpoint or partial output
torn by something outside our control, or crafted) is renamed to ``<name>.damaged`` with a warning naming it,
so that the run can start afresh without anyone deleting it by hand, and the evidence is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

DAMAGED_SUFFIX = ".damaged"


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds its file is fsynced and renamed to
    ``path``, when it raises the temporary is removed.

    The temporary is hidden and carries the process id, so two writers of the same target do not share it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """``open`` for writing under a temporary name; renamed to ``path`` when the block succeeds."""
    if not any(c in mode for c in "wx"):
        raise ValueError(f"atomic_open: mode {mode!r} does not create a file")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically. Save tensors and plain types only: readers use ``weights_only=True``."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def hard_link(target: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make ``path`` a hard link to ``target``, replacing ``path`` at once: the link is made under a temporary
    name, then renamed over it. Raises ``OSError`` (leaving nothing behind) where hard links are unsupported."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    os.link(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def set_aside(path: str | os.PathLike, why: str) -> Path:
    """Rename a damaged file to ``<name>.damaged`` (replacing an older one) and say so on stderr.

    Returns the new path. The caller then re-makes the file from scratch.
    """
    path = Path(path)
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, aside)
    print(f"warning: {path}: {why}; moved aside to {aside} and starting afresh", file=sys.stderr)
    return aside


def publish(done: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished file (a resumable partial output complete at last) over ``path``, durably."""
    done, path = Path(done), Path(path)
    _fsync_file(done)
    os.replace(done, path)
    _fsync_dir(path.parent)
