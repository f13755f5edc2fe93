"""Metrics ``results/metrics/{run}/{subject}.json`` (docs/contracts.md): a JSON object with the ten metrics
(x100, 2 decimals, ``null`` when not computed), ``n``, ``unavailable`` (metric -> reason) and ``warnings``.
Written by :mod:`brainot.scoring.score` through :func:`write_metrics`, read by :mod:`brainot.tables.build`
through :func:`read_metrics`.
"""

from __future__ import annotations

from pathlib import Path

from brainot import atomic
from brainot.io.captions import read_json
from brainot.io.h5 import DataError

WRITER = "python -m brainot.scoring.score"


def write_metrics(path: str | Path, result: dict) -> None:
    """The scores of one run, as indented JSON, atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, result, indent=2)


def read_metrics(path: str | Path) -> dict:
    """A metrics JSON, checked: an object holding each of the ten metrics as a number or null."""
    from brainot.scoring.metrics import METRICS

    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of metrics (the output of {WRITER})")
    for name in METRICS:
        if name not in data:
            raise DataError(f"{path}: missing metric {name!r}; expected the output of {WRITER}")
        value = data[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DataError(f"{path}: metric {name!r} is {value!r}; expected a number or null")
    return data
