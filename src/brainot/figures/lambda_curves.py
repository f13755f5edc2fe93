"""Fig. 5: caption metrics against the mass ratio lambda, one line per region set.

The paper's Fig. 5 shows "three metrics in different regions" without naming them in the text (which
discusses CIDEr); the metrics are ``figures.lambda.metrics`` (default CIDEr, METEOR, ROUGE, one panel each).
Input: ``results/tables/lambda.csv`` of :mod:`brainot.tables.build` (columns ``region``, ``lambda`` and the ten
metrics x100; ``n/a`` where a metric is unavailable). Lines keep the table's region order; points are sorted
by lambda.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainot.figures.plotting import plt, region_label
from brainot.scoring.metrics import METRICS


class LambdaError(ValueError):
    """The lambda table lacks what the figure needs; the message names the file and the column."""


def read_table(path: str | Path, metrics: list[str]) -> pd.DataFrame:
    """The lambda table, ``n/a`` cells as NaN; checked to hold region, lambda and ``metrics``."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise LambdaError(f"figures.lambda.metrics: {unknown} are not metrics; expected some of {list(METRICS)}")
    table = pd.read_csv(path, na_values=["n/a"], keep_default_na=False, dtype={"region": str})
    missing = [c for c in ("region", "lambda", *metrics) if c not in table.columns]
    if missing:
        raise LambdaError(f"{path}: missing column(s) {missing}; expected the lambda table of python -m "
                          "brainot.tables.build lambda")
    if table.empty:
        raise LambdaError(f"{path}: no rows; expected one per (region, lambda)")
    for column in ("lambda", *metrics):
        if not pd.api.types.is_numeric_dtype(table[column]):
            bad = table[column][pd.to_numeric(table[column], errors="coerce").isna()].iloc[0]
            raise LambdaError(f"{path}: column {column!r} holds {bad!r}; expected numbers (or n/a for a metric)")
    return table


def plot(table: pd.DataFrame, metrics: list[str]):
    """One panel per metric: x = lambda, y = the metric x100, one line per region set (table order)."""
    regions = list(dict.fromkeys(table["region"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4), squeeze=False, layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        if table[metric].isna().all():
            ax.text(0.5, 0.5, f"{metric} is n/a in this run\n(see the notes column of the lambda table)",
                    ha="center", va="center", transform=ax.transAxes)
        for region in regions:
            rows = table[table["region"] == region].sort_values("lambda")
            ax.plot(rows["lambda"].to_numpy(), rows[metric].to_numpy(dtype=float), marker="o",
                    label=region_label(region))
        ax.set_xlabel("mass ratio λ")
        ax.set_ylabel(f"{metric} (x100)")
        ax.set_title(metric)
        lambdas = np.unique(table["lambda"].to_numpy(dtype=float))
        ax.set_xticks(lambdas if len(lambdas) <= 10 else np.linspace(lambdas[0], lambdas[-1], 6))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(title="region", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Fig. 5: caption metrics against the OT mass ratio λ, per region")
    return fig, axes[0]
