"""Writing a table: the CSV a person reads and its ``.parquet`` sibling with the same cells typed, both
atomically (a reader never sees half a table, a killed run leaves no partial one)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from brainot import atomic


def write_table(typed: pd.DataFrame, csv_path: str | Path, text: pd.DataFrame | None = None,
                float_format: str | None = None) -> Path:
    """Write ``typed`` as ``csv_path``'s ``.parquet`` sibling, and ``text`` (the cells as printed; ``typed``
    with floats as ``float_format`` when not given) as ``csv_path``; returns the parquet path."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    parquet = csv_path.with_suffix(".parquet")
    with atomic.atomic_path(parquet) as tmp:
        typed.to_parquet(tmp, index=False)
    with atomic.atomic_path(csv_path) as tmp:
        if text is None:
            typed.to_csv(tmp, index=False, float_format=float_format)
        else:
            text.to_csv(tmp, index=False)
    return parquet
