"""COCO captions of NSD images: the stimulus table's ``cocoId``/``cocoSplit`` joined with COCO caption files.

NSD's stimulus table (``nsd_stim_info_merged.csv``, one row per 73k image, row i has ``nsdId == i``) names each
image's COCO id and the COCO 2017 split whose caption file holds it (``cocoSplit``: ``train2017`` or
``val2017``). The caption files are COCO's ``captions_{split}.json``
(``{"images": [...], "annotations": [{"image_id", "id", "caption"}, ...]}``); a file's split is read from its
name, so the two files may be passed in any order.

Where the caption files come from is ``nsd.captions_source``: ``coco`` (COCO's own 2017 annotation archive,
:func:`fetch_annotations`, verified by size and MD5, extracted once), ``nsd`` (the NSD source, under
:data:`layout.CAPTIONS_DIR`), or a ``file://``, ``s3://`` or ``http(s)://`` prefix holding the two files.
:func:`fetch_view` turns the first two into what :mod:`brainot.data.fetch` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from brainot.atomic import atomic_open, atomic_path, write_text
from brainot.data import layout

STIM_COLUMNS = ("nsdId", "cocoId", "cocoSplit")
# Where the caption files sit inside COCO's annotations_trainval2017.zip.
ARCHIVE_DIR = "annotations"
STAMP = ".source.json"


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


def shared1000(table: pd.DataFrame, path: str | Path) -> np.ndarray:
    """The stimulus table's ``shared1000`` column as (N,) bool, row i = nsdId i: the images every subject saw
    (the test set). pandas reads NSD's ``True``/``False`` as bool; text or 0/1 cells are read the same way, and
    any other value is an error naming the file."""
    if "shared1000" not in table.columns:
        raise CaptionError(f"{path}: no column 'shared1000'; expected NSD's stimulus table")
    column = table["shared1000"]
    if column.dtype == bool:
        return column.to_numpy()
    text = column.astype(str).str.strip().str.lower()
    known = text.isin(("true", "false", "1", "0"))
    if not known.all():
        first = int(np.flatnonzero(~known.to_numpy())[0])
        raise CaptionError(f"{path}: shared1000 is {column.iloc[first]!r} in row {first}; expected True or False")
    return text.isin(("true", "1")).to_numpy()


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


# ------------------------------------------------------------------------------------ the COCO archive
def archive_dir(nsd: dict) -> Path:
    """Where :func:`fetch_annotations` keeps the two caption files of COCO's archive: ``{nsd.dir}/coco-annotations``."""
    return Path(nsd["dir"]) / "coco-annotations"


def fetch_view(nsd: dict) -> dict:
    """The ``nsd`` section as :mod:`brainot.data.fetch` reads it: ``captions_source`` ``coco`` becomes the directory
    :func:`fetch_annotations` extracts into (:func:`archive_dir`), ``nsd`` the empty string (the NSD source
    itself); any other value (a ``file://``, ``s3://`` or ``http(s)://`` prefix) is passed on as it is."""
    source = nsd.get("captions_source") or ""
    if source == "coco":
        return {**nsd, "captions_source": "file://" + str(archive_dir(nsd).resolve())}
    if source == "nsd":
        return {**nsd, "captions_source": ""}
    return dict(nsd)


def _open(url: str):
    """A readable byte stream of ``url`` (http, https or file), with a clear error naming it."""
    if not url.startswith(("http://", "https://", "file://")):
        raise CaptionError(f"nsd.coco_annotations.url {url!r}: expected an http(s):// or file:// URL")
    try:
        return urllib.request.urlopen(url, timeout=60)
    except OSError as exc:
        raise CaptionError(f"{url}: cannot download the COCO annotation archive ({exc})") from None


def download(url: str, dest: Path, size: int | None, md5: str | None, chunk: int = 1 << 20) -> str:
    """Stream ``url`` to ``dest`` (through a temporary name, :func:`brainot.atomic.atomic_path`), checking its
    byte count and MD5; returns the MD5.

    ``size`` / ``md5`` None skip that check. A mismatch deletes the download and raises naming both values.
    """
    digest, n = hashlib.md5(), 0
    with atomic_path(dest) as part:   # removed when a check below raises
        with _open(url) as response, open(part, "wb") as fh:
            while block := response.read(chunk):
                fh.write(block)
                digest.update(block)
                n += len(block)
        got = digest.hexdigest()
        for what, expected, found in (("size", size, n), ("MD5", md5, got)):
            if expected is not None and expected != found:
                raise CaptionError(f"{url}: {what} {found} differs from nsd.coco_annotations.{what.lower()} "
                                   f"{expected}; the download was deleted")
    return got


def fetch_annotations(url: str, size: int | None, md5: str | None, out: str | Path) -> list[Path]:
    """``captions_train2017.json`` and ``captions_val2017.json`` from COCO's annotation archive, into ``out``.

    Done once: when both files are there and ``out/.source.json`` records the same url, size and MD5, nothing is
    downloaded. Otherwise the archive is downloaded next to them, checked (:func:`download`), only the two caption
    members are extracted (through temporary names, so a killed run leaves no half file), and the archive is
    deleted. Returns the two paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    members = [f"{ARCHIVE_DIR}/{layout.captions(split)}" for split in layout.COCO_SPLITS]
    targets = [out / layout.captions(split) for split in layout.COCO_SPLITS]
    record = {"url": url, "size": size, "md5": md5}
    stamp = out / STAMP
    if all(t.exists() for t in targets) and stamp.exists() and json.loads(stamp.read_text()) == record:
        return targets
    archive = out / Path(url).name
    got = download(url, archive, size, md5)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise CaptionError(f"{url} (MD5 {got}): no member(s) {missing}; expected COCO's annotation archive")
            for member, target in zip(members, targets):
                with zf.open(member) as src, atomic_open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise CaptionError(f"{url} (MD5 {got}): not a zip archive ({exc})") from None
    finally:
        archive.unlink(missing_ok=True)
    write_text(stamp, json.dumps(record) + "\n")
    return targets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m brainot.data.coco",
        description="Download COCO's 2017 annotation archive, check its size and MD5, and keep only "
                    "captions_train2017.json and captions_val2017.json (once; a rerun with the same archive "
                    "does nothing).")
    p.add_argument("--nsd", help="the nsd config section as JSON (as the rule passes it)")
    p.add_argument("--config", nargs="+", help="config file(s) instead of --nsd, e.g. config.yaml")
    args = p.parse_args(argv)
    if bool(args.nsd) == bool(args.config):
        p.error("give either --nsd or --config")
    if args.config:
        from brainot import config as bcfg

        nsd = bcfg.load(*args.config)["nsd"]
    else:
        nsd = json.loads(args.nsd)
    cfg = nsd["coco_annotations"]
    t0 = time.perf_counter()
    try:
        paths = fetch_annotations(cfg["url"], cfg["size"], cfg["md5"], archive_dir(nsd))
    except CaptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"COCO captions from {cfg['url']}: {', '.join(str(q) for q in paths)} "
          f"({sum(q.stat().st_size for q in paths) / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
