"""What every figure shares: the Agg backend, the paper's names for the ROI families and saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # figures are files; no display on cluster nodes or in CI

import matplotlib.pyplot as plt  # noqa: E402

from brainot import config as bcfg  # noqa: E402

DPI = 150
# The paper's names of the five NSD ROI families (section 1, Table 2, Fig. 7's "Body Region", ...).
FAMILY_NAMES = {"V": "Vision", "P": "Place", "F": "Face", "W": "Word", "B": "Body"}


def region_label(region: str) -> str:
    """A region set's name as the paper prints it: ``'B' -> 'B (Body)'``; combinations stay as they are."""
    name = FAMILY_NAMES.get(region)
    return f"{region} ({name})" if name else region


def objective_label(objective: str) -> str:
    """``'mse' -> 'MSE'``, ``'ot0.5' -> 'OT (λ = 0.5)'``."""
    loss, mass = bcfg.parse_objective(objective)
    return "MSE" if loss == "mse" else f"OT (λ = {mass:g})"


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` (parents created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
