"""Fingerprints of what determines a stage's output, so that a partial output is only resumed by the same run.

A resumable stage (train, caption, embed) stores the fingerprint with its partial output and resumes only when
the fingerprint of the new run is equal; otherwise it starts afresh and says on stderr what changed. A
fingerprint is a JSON-able dict:

- ``settings``: the settings that affect the numbers (a config section, the objective, a seed, ...), as given;
- ``inputs``: for each named input file, its path as given, size, ``mtime_ns`` and, for a file of at most
  :data:`HASHED_BYTES`, the SHA-256 of its content;
- ``models``: for each named model (a directory as ``from_pretrained`` reads it, or one weights file), the
  same identity for every regular file in it, by path relative to the model directory. A reference that is
  not a local path (a model-hub id) is recorded as such: its files are not known here.

Why size + mtime for large files and not a hash: weights and voxel files are gigabytes, and hashing them on
every start would cost minutes. A hash of the small files (``config.json``, tokenizer files, a projector,
test-sized weights) is cheap and catches a different model whose big files happen to match in size.

Limits: a large file replaced by one of the same size whose mtime was set back to the old one (``cp -p``,
``rsync -a`` of a file with the same mtime, ``touch -d``) is not noticed; nor is a change of a hub model
behind the same id. A file that is only touched (same bytes, new mtime) counts as changed: the run starts
afresh, which costs time but never mixes outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

HASHED_BYTES = 32 << 20   # files up to 32 MiB are hashed (0.1 s); larger ones go by size and mtime
_READ = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ):
            digest.update(chunk)
    return digest.hexdigest()


def file_identity(path: str | os.PathLike, name: str | None = None) -> dict:
    """``{"path", "size", "mtime_ns"[, "sha256"]}`` of one file; ``name`` replaces the path (a relative one)."""
    path = Path(path)
    st = path.stat()
    ident = {"path": name if name is not None else str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if st.st_size <= HASHED_BYTES:
        ident["sha256"] = sha256_file(path)
    return ident


def model_identity(ref: str | os.PathLike) -> dict:
    """Every file of a model directory (or the one weights file ``ref``), by path relative to it."""
    path = Path(ref)
    if path.is_file():
        return {"ref": str(ref), "files": [file_identity(path, path.name)]}
    if not path.is_dir():
        return {"ref": str(ref), "files": None}   # a hub id: nothing local to identify
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {"ref": str(ref), "files": [file_identity(p, p.relative_to(path).as_posix()) for p in files]}


def make(settings: dict, inputs: dict[str, str | os.PathLike] | None = None,
         models: dict[str, str | os.PathLike] | None = None) -> dict:
    """The fingerprint of a run: ``settings`` plus the identity of its ``inputs`` files and ``models``."""
    return {"settings": json.loads(json.dumps(settings, sort_keys=True, default=str)),
            "inputs": {name: file_identity(p) for name, p in sorted((inputs or {}).items())},
            "models": {name: model_identity(ref) for name, ref in sorted((models or {}).items())}}


def digest(fingerprint: dict) -> str:
    """A short stable hash of a fingerprint (for a file attribute or a log line)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def changes(old, new: dict, limit: int = 4) -> str:
    """What differs between a stored fingerprint and the new run's, in a few words (empty when equal)."""
    if old == new:
        return ""
    if not isinstance(old, dict) or set(old) != set(new):
        return "the partial output holds no fingerprint of this format"
    found: list[str] = []
    _diff(old, new, "", found)
    shown = "; ".join(found[:limit])
    return shown + (f"; and {len(found) - limit} more" if len(found) > limit else "")


def _diff(old, new, where: str, found: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in old:
                found.append(f"{sub} added")
            elif key not in new:
                found.append(f"{sub} removed")
            else:
                _diff(old[key], new[key], sub, found)
    elif _is_file_list(old) and _is_file_list(new):
        before, after = {f["path"]: f for f in old}, {f["path"]: f for f in new}
        for name in sorted(set(before) | set(after)):
            if name not in before:
                found.append(f"{where}: file {name} added")
            elif name not in after:
                found.append(f"{where}: file {name} removed")
            elif before[name] != after[name]:
                what = [k for k in ("size", "sha256", "mtime_ns") if before[name].get(k) != after[name].get(k)]
                found.append(f"{where}: file {name} changed ({', '.join(what)})")
    elif old != new:
        if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
            found.append(f"{where} changed")
        else:
            found.append(f"{where}: {_short(old)} -> {_short(new)}")


def _is_file_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(f, dict) and "path" in f for f in value)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
