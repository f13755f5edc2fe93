"""Fig. 3: each ROI family's areas drawn over the subject's volume (nilearn), one panel per family.

The paper draws Body, Face, Place and Word on inflated cortical surfaces; the workflow holds the func1pt8mm
volumes only, so each family is drawn on axial slices of the subject's volume (``figures.roi_maps.slices``
slices, chosen by nilearn where the family is). Voxels and their areas are read from
``results/rois/{subject}.parquet`` (rule rois: one row per column of the voxel matrix, i.e. per nsdgeneral
voxel the model sees, with its NIfTI (x, y, z) and the area of each family), so the counts in the panel titles
are the voxels a region set of that family trains on (``results/rois/{subject}.families.csv``).

NSD has no anatomical image in the key set the workflow fetches, so the background is made from the subject's
nsdgeneral label volume, which shares the grid and affine of the ROI volumes (docs/nsd.md): cortex (label >= 0) in
dark grey and the nsdgeneral region (label 1) in light grey.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainot.data.extract import read_label_volume
from brainot.figures.plotting import FAMILY_NAMES, plt

AREA_COLOURS = "tab10"
MAX_AREAS = 10          # colours of AREA_COLOURS


class RoiMapError(ValueError):
    """An input disagrees with the config or with the volume grid; the message names the file and the key."""


@dataclass
class FamilyMap:
    """One family's label volume (area k of the config's labels -> value k + 1, 0 elsewhere) and its counts."""

    family: str
    labels: list[str]
    volume: np.ndarray              # (X, Y, Z) int16
    area_counts: dict[str, int]     # voxels per area, config order

    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.volume))

    @property
    def title(self) -> str:
        name = FAMILY_NAMES.get(self.family)
        return f"{self.family} ({name}): {self.n_voxels} voxels" if name else f"{self.family}: {self.n_voxels} voxels"


def background(nsdgeneral: str | Path) -> nib.Nifti1Image:
    """The nsdgeneral label volume as a background: 0 outside cortex, 1 cortex, 2 nsdgeneral."""
    img = nib.load(str(nsdgeneral))
    labels = read_label_volume(nsdgeneral)
    if not (labels == 1).any():
        raise RoiMapError(f"{nsdgeneral}: no voxel has label 1; expected NSD's nsdgeneral volume")
    shade = (labels >= 0).astype(np.float32) + (labels == 1)
    return nib.Nifti1Image(shade, img.affine)


def read_labels(path: str | Path, families: dict[str, dict]) -> pd.DataFrame:
    """``results/rois/{subject}.parquet``, checked to hold x, y, z and a column per configured family."""
    table = pd.read_parquet(path)
    missing = [c for c in ("x", "y", "z", *families) if c not in table.columns]
    if missing:
        raise RoiMapError(f"{path}: missing column(s) {missing}; expected x, y, z and one column per family of "
                          f"rois.families ({', '.join(families)}), as rule rois writes")
    return table


def family_map(table: pd.DataFrame, family: str, labels: list[str], shape: tuple[int, int, int],
               path: str | Path) -> FamilyMap:
    """The label volume of one family from the per-voxel table (``path`` names the table in errors)."""
    rows = table[table[family].notna()]
    unknown = sorted(set(rows[family]) - set(labels))
    if unknown:
        raise RoiMapError(f"{path}: column {family!r} holds area(s) {unknown} that rois.families.{family}.labels "
                          f"({labels}) does not list")
    xyz = rows[["x", "y", "z"]].to_numpy(dtype=np.int64)
    if len(xyz) and ((xyz < 0).any() or (xyz >= np.array(shape)).any()):
        raise RoiMapError(f"{path}: voxel coordinates of family {family!r} reach {xyz.max(axis=0).tolist()}, "
                          f"outside the volume grid {list(shape)} of the subject's nsdgeneral volume")
    volume = np.zeros(shape, dtype=np.int16)
    value = {area: k + 1 for k, area in enumerate(labels)}
    volume[tuple(xyz.T)] = rows[family].map(value).to_numpy(dtype=np.int16)
    counts = rows[family].value_counts()
    return FamilyMap(family, list(labels), volume, {a: int(counts.get(a, 0)) for a in labels})


def family_maps(labels_path: str | Path, families: dict[str, dict], shape: tuple[int, int, int]) -> list[FamilyMap]:
    """One :class:`FamilyMap` per configured family (``rois.families``), in config order."""
    table = read_labels(labels_path, families)
    for family, spec in families.items():
        if len(spec["labels"]) > MAX_AREAS:
            raise RoiMapError(f"rois.families.{family}.labels: {len(spec['labels'])} areas; the map has colours "
                              f"for {MAX_AREAS}")
    return [family_map(table, f, spec["labels"], shape, labels_path) for f, spec in families.items()]


def plot(maps: list[FamilyMap], bg: nib.Nifti1Image, slices: int, subject: str):
    """One row per family: ``slices`` axial slices (nilearn ``plot_roi``) and a legend of its areas."""
    import gc

    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from nilearn import plotting

    # nilearn runs a full gc.collect() each time it reads an image's data (7 reads per panel); over the objects
    # of the imported libraries that is most of this figure's time (~6 s of ~12). Freezing them for the plot
    # leaves only what plotting creates to be collected; unfreezing after leaves the caller's process as it was.
    gc.freeze()
    try:
        height = 2.6 * len(maps) + 0.8
        fig = plt.figure(figsize=(2.1 * slices + 3, height))
        grid = fig.add_gridspec(len(maps), 2, width_ratios=[2.1 * slices, 3], hspace=0.25, wspace=0.02,
                                top=1 - 0.8 / height, bottom=0.02)
        colours = plt.get_cmap(AREA_COLOURS).colors
        displays = []
        for row, fmap in enumerate(maps):
            ax = fig.add_subplot(grid[row, 0])
            cmap = ListedColormap(colours[:len(fmap.labels)])
            img = nib.Nifti1Image(fmap.volume, bg.affine)
            if fmap.n_voxels:
                display = plotting.plot_roi(img, bg_img=bg, display_mode="z", cut_coords=slices, axes=ax, cmap=cmap,
                                            vmin=0.5, vmax=len(fmap.labels) + 0.5, title=fmap.title, black_bg=True,
                                            colorbar=False, dim=0.8, draw_cross=False, alpha=0.9)
            else:   # NSD has empty labels for some subjects: say so rather than draw nothing
                display = None
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{fmap.title}: no voxel of this family", ha="center", va="center",
                        transform=ax.transAxes)
            displays.append(display)
            legend_ax = fig.add_subplot(grid[row, 1])
            legend_ax.set_axis_off()
            legend_ax.legend(handles=[Patch(color=colours[k], label=f"{area} ({fmap.area_counts[area]})")
                                      for k, area in enumerate(fmap.labels)],
                             loc="center left", title=f"{fmap.family} areas (voxels)", fontsize=8, title_fontsize=9)
        fig.suptitle(f"Fig. 3: ROI families of {subject}\naxial slices (z in mm); background: nsdgeneral in light "
                     "grey, the rest of cortex in dark grey", y=1 - 0.1 / height, va="top")
    finally:
        gc.unfreeze()
    return fig, displays
