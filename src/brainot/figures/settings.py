"""Cross-field checks of the ``figures:`` config section that its schema cannot express.

Imports no plotting library: the workflow calls :func:`check` when it loads the config.
"""

from __future__ import annotations

from brainot.config import ConfigError


def check(config: dict) -> None:
    """``figures.case_study.regions`` must name region sets of ``rois.regions``. Raises :class:`ConfigError`."""
    regions = config["rois"]["regions"]
    for i, region in enumerate(config["figures"]["case_study"]["regions"]):
        if region not in regions:
            raise ConfigError(f"figures.case_study.regions[{i}]: {region!r} is not a region set of rois.regions "
                              f"({', '.join(regions)})")
