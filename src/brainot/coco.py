"""COCO captions of NSD images: the stimulus table's ``cocoId``/``cocoSplit`` joined with COCO caption files.

NSD's stimulus table (``nsd_stim_info_merged.csv``, one row per 73k image, row i has ``nsdId == i``) names each
image's COCO id and the COCO 2017 split whose caption file holds it (``cocoSplit``: ``train2017`` or
``val2017``). The caption files are COCO's ``captions_{split}.json``
(``{"images": [...], "annotations": [{"image_id", "id", "caption"}, ...]}``); a file's split is read from its
name, so the two files may be passed in any order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from brainot import layout

STIM_COLUMNS = ("nsdId", "cocoId", "cocoSplit")


class CaptionError(ValueError):
    """A stimulus table or caption file does not match its format; the message names the file and key."""


def read_stim_info(path: str | Path) -> pd.DataFrame:
    """The stimulus table, checked: the columns this module needs, and row i has ``nsdId == i``."""
    table = pd.read_csv(path, index_col=0)
    missing = [c for c in STIM_COLUMNS if c not in table.columns]
    if missing:
        raise CaptionError(f"{path}: missing column(s) {missing}; expected NSD's stimulus table with "
                           f"columns {list(STIM_COLUMNS)}")
    if not (table["nsdId"].to_numpy() == range(len(table))).all():
        raise CaptionError(f"{path}: column 'nsdId' is not 0, 1, ..., {len(table) - 1} in row order")
    return table


def split_of(path: str | Path) -> str:
    """``.../captions_val2017.json -> 'val2017'``: which COCO split a caption file holds."""
    name = Path(path).name
    for split in layout.COCO_SPLITS:
        if name == layout.captions(split):
            return split
    expected = ", ".join(layout.captions(s) for s in layout.COCO_SPLITS)
    raise CaptionError(f"{path}: cannot tell the COCO split from the file name; expected one of {expected}")


def read_coco_captions(path: str | Path) -> dict[int, list[str]]:
    """COCO image id -> its captions (whitespace-stripped, in the file's annotation order)."""
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise CaptionError(f"{path}: missing list 'annotations'; expected a COCO caption file")
    captions: dict[int, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise CaptionError(f"{path}: annotations[{i}] lacks 'image_id' or a string 'caption'")
        captions.setdefault(int(ann["image_id"]), []).append(ann["caption"].strip())
    return captions


def captions_by_nsd_id(stim_info_csv: str | Path, caption_jsons: list[str | Path],
                       nsd_ids=None) -> dict[int, list[str]]:
    """nsdId (0-based) -> the COCO captions of that image.

    ``caption_jsons``: the ``captions_{split}.json`` files of every split the requested images use.
    ``nsd_ids``: the images wanted (default: every row of the stimulus table). Raises :class:`CaptionError`
    when an image's split has no file or its COCO id has no caption.
    """
    table = read_stim_info(stim_info_csv)
    files = {}
    for path in caption_jsons:
        split = split_of(path)
        if split in files:
            raise CaptionError(f"{path}: a second caption file for split {split!r} (first: {files[split]})")
        files[split] = path
    rows = table
    if nsd_ids is not None:
        ids = [int(i) for i in nsd_ids]
        bad = [i for i in ids if not 0 <= i < len(table)]
        if bad:
            raise CaptionError(f"{stim_info_csv}: nsdId(s) {bad[:5]} not in the table's {len(table)} rows")
        rows = table.iloc[ids]
    by_split = {}
    out: dict[int, list[str]] = {}
    for nsd_id, coco_id, split in zip(rows["nsdId"], rows["cocoId"], rows["cocoSplit"]):
        if split not in files:
            raise CaptionError(f"{stim_info_csv}: nsdId {nsd_id} has cocoSplit {split!r} but no caption file "
                               f"for it was given (got {sorted(files) or 'none'})")
        if split not in by_split:
            by_split[split] = read_coco_captions(files[split])
        captions = by_split[split].get(int(coco_id))
        if not captions:
            raise CaptionError(f"{files[split]}: no caption for cocoId {coco_id} (nsdId {nsd_id})")
        out[int(nsd_id)] = captions
    return out
