"""Captions and references in BrainHub's JSON format, keyed by test position (docs/contracts.md).

- ``results/captions/{run}/{subject}.json``: ``{"0": "caption", ...}`` and its ``.parquet`` sibling
  (``position``, ``nsd_id``, ``coco_id``, ``caption``); written by :mod:`brainot.caption.generate` through
  :func:`write_captions`, read by :mod:`brainot.scoring.score` and the figures through :func:`read_captions`.
- ``results/references/{subject}.json``: ``{"0": ["reference", ...], ...}``; written by
  :mod:`brainot.scoring.references` through :func:`write_references`, read through :func:`read_references`.

The JSON is BrainHub's own format, which other methods' published captions share and which has no room for
metadata: the files stay exactly that shape (the subject and run are in their paths).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainot import atomic
from brainot.io.h5 import DataError


def unique_keys(where, error: type[Exception] = DataError):
    """A ``json`` ``object_pairs_hook`` that refuses a key repeated within an object (a JSON reader would
    silently keep only the last): ``error`` names ``where`` (a file, or a command-line option) and the key."""
    def pairs(items):
        out = {}
        for key, value in items:
            if key in out:
                raise error(f"{where}: key {key!r} appears more than once; expected each key once "
                            "(a JSON reader would silently keep only the last)")
            out[key] = value
        return out
    return pairs


def read_json(path: str | Path):
    """A UTF-8 JSON file; :class:`DataError` naming the file when it is missing, not UTF-8, not JSON, or
    repeats a key within an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, object_pairs_hook=unique_keys(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); expected a JSON file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); expected UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def write_captions(out_json: str | Path, out_parquet: str | Path, captions: list[str], nsd_ids: np.ndarray,
                   coco_ids: np.ndarray) -> None:
    """One caption per test position: ``out_json`` ``{"0": caption, ...}`` and ``out_parquet`` (``position``,
    ``nsd_id``, ``coco_id``, ``caption``), both atomically."""
    atomic.write_text(out_json, json.dumps({str(i): c for i, c in enumerate(captions)}, indent=1))
    with atomic.atomic_path(out_parquet) as tmp:
        pd.DataFrame({"position": np.arange(len(captions)), "nsd_id": nsd_ids, "coco_id": coco_ids,
                      "caption": captions}).to_parquet(tmp, index=False)


def read_captions(path: str | Path) -> dict[str, str]:
    """BrainHub candidates ``{"0": "caption", ...}``: a non-empty object of strings."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty object {{\"0\": \"caption\", ...}}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise DataError(f"{path}: key {key!r} holds {type(value).__name__}; expected a caption string")
    return data


def write_references(path: str | Path, references: dict[str, list[str]]) -> None:
    """BrainHub references ``{"0": ["ref", ...], ...}``, atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(references, indent=1) + "\n")


def read_references(path: str | Path) -> dict[str, list[str]]:
    """BrainHub references ``{"0": ["ref", ...], ...}``: a non-empty object of non-empty string lists."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty object {{\"0\": [\"reference\", ...], ...}}")
    for key, value in data.items():
        if not (isinstance(value, list) and value and all(isinstance(r, str) for r in value)):
            raise DataError(f"{path}: key {key!r} must hold a non-empty list of caption strings")
    return data
