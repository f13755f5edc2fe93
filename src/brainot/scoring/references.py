"""BrainHub-format ground truth: ``{"0": [captions...], ...}`` keyed by test position.

Test position i is the i-th entry of the voxels file's ``test/nsd_id`` (ascending nsdId, docs/contracts.md); its
captions are the COCO captions of that image (:func:`brainot.data.coco.captions_by_nsd_id`: the stimulus table's
``cocoId``/``cocoSplit`` joined with COCO's ``captions_{split}.json``). On real NSD with sessions 1-37 this is
BrainHub's ``fmri_cococap.json`` (982 images, 4913 captions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from brainot import io as data
from brainot.data.coco import captions_by_nsd_id


class ReferencesError(ValueError):
    """The voxels file lacks what the references need; the message names the file and key."""


def test_nsd_ids(voxels: str | Path) -> np.ndarray:
    """The voxels file's ``test/nsd_id`` (N,) int64, checked to be strictly ascending."""
    with data.open_h5(voxels, data.VOXELS) as fh:
        if "test/nsd_id" not in fh:
            raise ReferencesError(f"{voxels}: no dataset 'test/nsd_id'; expected a voxels file of rule extract")
        ids = fh["test/nsd_id"][()].astype(np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ReferencesError(f"{voxels}: test/nsd_id must be a non-empty 1-D array; found shape {ids.shape}")
    if not (np.diff(ids) > 0).all():
        raise ReferencesError(f"{voxels}: test/nsd_id is not strictly ascending (the test order of docs/contracts.md)")
    return ids


def references(voxels: str | Path, stim_info: str | Path, caption_jsons: list[str | Path]) -> dict[str, list[str]]:
    """``{"0": [captions of the first test image], ...}`` in the voxels file's test order."""
    ids = test_nsd_ids(voxels)
    by_id = captions_by_nsd_id(stim_info, caption_jsons, nsd_ids=ids)
    return {str(pos): list(by_id[int(nsd_id)]) for pos, nsd_id in enumerate(ids)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m brainot.scoring.references",
        description="Write the BrainHub-format ground-truth captions {\"0\": [captions...], ...} of a subject's "
                    "test images, keyed by test position (the voxels file's ascending test/nsd_id).")
    p.add_argument("--voxels", required=True, help="voxels HDF5 of rule extract (its test/nsd_id)")
    p.add_argument("--stim-info", required=True, help="nsd_stim_info_merged.csv (cocoId, cocoSplit per nsdId)")
    p.add_argument("--captions", required=True, nargs="+",
                   help="COCO caption files captions_train2017.json captions_val2017.json")
    p.add_argument("--out", required=True, help="output JSON")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    refs = references(args.voxels, args.stim_info, args.captions)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(refs, indent=1) + "\n")
    counts = [len(v) for v in refs.values()]
    print(f"wrote {out}: {len(refs)} test images, {sum(counts)} captions ({min(counts)}-{max(counts)} per image) "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
