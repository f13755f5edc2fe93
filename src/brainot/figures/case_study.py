"""Fig. 7: case study. Test images with their ground-truth caption and the captions of per-region models.

For each chosen test position (``figures.case_study``: ``indices``, or when that is empty ``n_images``
positions spread evenly over the test set), the stimulus (``imgBrick`` row ``nsd_id`` of the NSD stimuli file;
the test nsd_ids are ``test/nsd_id`` of ``results/voxels/{subject}.h5``), the first reference caption of
``results/references/{subject}.json`` (the paper shows one ground truth) and the caption of each region's model
(``results/captions/{run}/{subject}.json``; the paper: Body, Face, Place, Word). Captions files are BrainHub's
format, keyed by test position.

Outputs the figure (image + wrapped text per row) and a long table: ``test_index, nsd_id, source, caption``
with ``source`` = ``ground truth`` or the region set's name, in figure order.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from brainot.embed import STIMULI_KEY, open_stimuli
from brainot.figures.plotting import plt, region_label
from brainot.io import read_captions, read_references, test_nsd_ids

GROUND_TRUTH = "ground truth"
WRAP = 80           # characters per caption line in the figure


class CaseStudyError(ValueError):
    """An input lacks a caption or an image the figure needs; the message names the file and the key."""


def test_positions(n_test: int, n_images: int, indices: list[int]) -> list[int]:
    """``indices`` if given (checked against the test set), else ``n_images`` positions spread evenly."""
    if indices:
        bad = [i for i in indices if not 0 <= i < n_test]
        if bad:
            raise CaseStudyError(f"figures.case_study.indices: {bad} outside the test set's positions 0..{n_test - 1}")
        return list(indices)
    return np.unique(np.linspace(0, n_test - 1, min(n_images, n_test)).round().astype(int)).tolist()


def caption_at(captions: dict, key: str, path: str | Path) -> str:
    if key not in captions:
        raise CaseStudyError(f"{path}: no caption for test position {key!r}; expected BrainHub's format keyed by "
                             "test position")
    return captions[key]


def case_table(voxels: str | Path, references: str | Path, captions: list[str | Path], regions: list[str],
               n_images: int, indices: list[int]) -> pd.DataFrame:
    """Rows ``test_index, nsd_id, source, caption``: per position (:func:`test_positions`), the ground truth then
    each region in order."""
    if len(captions) != len(regions):
        raise CaseStudyError(f"{len(captions)} captions files for {len(regions)} regions; expected one per region")
    ids = test_nsd_ids(voxels)
    refs = read_references(references)
    if len(refs) != len(ids):
        raise CaseStudyError(f"{references}: {len(refs)} test positions, but test/nsd_id of {voxels} has {len(ids)}")
    positions = test_positions(len(ids), n_images, indices)
    candidates = [read_captions(path) for path in captions]
    rows = []
    for pos in positions:
        key = str(pos)
        rows.append({"test_index": pos, "nsd_id": int(ids[pos]), "source": GROUND_TRUTH,
                     "caption": caption_at(refs, key, references)[0]})
        for region, cands, path in zip(regions, candidates, captions):
            rows.append({"test_index": pos, "nsd_id": int(ids[pos]), "source": region,
                         "caption": caption_at(cands, key, path)})
    return pd.DataFrame(rows, columns=["test_index", "nsd_id", "source", "caption"])


def read_stimuli(stimuli: str | Path, nsd_ids: list[int]) -> list[np.ndarray]:
    """The ``imgBrick`` rows of ``nsd_ids`` as (H, W, 3) uint8 arrays, in the given order."""
    with open_stimuli(stimuli) as fh:
        brick = fh[STIMULI_KEY]
        too_far = [i for i in nsd_ids if not 0 <= i < len(brick)]
        if too_far:
            raise CaseStudyError(f"{stimuli}: {STIMULI_KEY} has {len(brick)} rows; nsd_id {too_far[0]} asked for")
        return [brick[int(i)] for i in nsd_ids]


def plot(table: pd.DataFrame, images: list[np.ndarray]):
    """One row per test image: the stimulus, then its ground truth and each region's caption, wrapped."""
    groups = list(table.groupby("test_index", sort=False))
    if len(groups) != len(images):
        raise ValueError(f"{len(groups)} test images in the table but {len(images)} images")
    n_lines = [sum(len(textwrap.wrap(c, WRAP)) for c in g["caption"]) + len(g) for _, g in groups]
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, max(2.2, 0.19 * max(n_lines) + 0.6) * len(groups)),
                             gridspec_kw={"width_ratios": [1, 3.4]}, squeeze=False, layout="constrained")
    for (pos, group), image, (img_ax, text_ax) in zip(groups, images, axes):
        img_ax.imshow(image)
        img_ax.set_title(f"test {pos} (nsd_id {group['nsd_id'].iloc[0]})", fontsize=9)
        img_ax.set_axis_off()
        text_ax.set_axis_off()
        lines = []
        for source, caption in zip(group["source"], group["caption"]):
            name = "Ground truth" if source == GROUND_TRUTH else region_label(source)
            lines.append(textwrap.fill(f"{name}: {caption}", WRAP, subsequent_indent="    "))
        text_ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=9, transform=text_ax.transAxes,
                     linespacing=1.35)
    fig.suptitle("Fig. 7: case study, ground truth and the captions of per-region models")
    return fig, axes
