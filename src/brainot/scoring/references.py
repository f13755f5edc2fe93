"""BrainHub-format ground truth: ``{"0": [captions...], ...}`` keyed by test position.

Test position i is the i-th entry of the voxels file's ``test/nsd_id`` (ascending nsdId, docs/contracts.md); its
captions are the COCO captions of that image (:func:`brainot.data.coco.captions_by_nsd_id`: the stimulus table's
``cocoId``/``cocoSplit`` joined with COCO's ``captions_{split}.json``). On real NSD with sessions 1-37 this is
BrainHub's ``fmri_cococap.json`` (982 images, 4913 captions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from brainot import io as data
from brainot.data.coco import captions_by_nsd_id


def references(voxels: str | Path, stim_info: str | Path, caption_jsons: list[str | Path]) -> dict[str, list[str]]:
    """``{"0": [captions of the first test image], ...}`` in the voxels file's test order."""
    ids = data.test_nsd_ids(voxels)
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
    data.write_references(out, refs)
    counts = [len(v) for v in refs.values()]
    print(f"wrote {out}: {len(refs)} test images, {sum(counts)} captions ({min(counts)}-{max(counts)} per image) "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
