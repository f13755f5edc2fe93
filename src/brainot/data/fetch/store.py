"""The local side of a fetch: where keys, partial downloads and verification records live under ``nsd.dir``.

```
{nsd.dir}/<key>                         the fetched file (what the rules read)
{nsd.dir}/manifest/{group}.tsv          the group's manifest (the rule's output)
{nsd.dir}/.fetch/objects/<key>          a hard link to the same file
{nsd.dir}/.fetch/objects/<key>.part     a partial download (+ .part.json: which object version it holds)
{nsd.dir}/.fetch/journal/{group}.tsv    one record appended per verified key, as soon as it is verified
```

Why the hard link and the journal: Snakemake deletes a job's outputs before it reruns the job and after it
fails, and the fetched files and the manifest are outputs. The link keeps a verified file's bytes (without
using more disk) and the journal keeps its record, so a rerun after a failure or a config change relinks what
it already has instead of downloading it again. Where hard links are not supported the file is only moved
into place (nothing is kept) and a rerun downloads again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from brainot.atomic import atomic_open, hard_link, publish
from .sources import CHUNK

MANIFEST_COLUMNS = ("key", "size", "md5", "source", "etag", "verified")


@dataclass(frozen=True)
class Record:
    """One verified key: ``md5`` of the local bytes, the source's ``etag`` (version token) at fetch time, and
    how it was verified against the source (``md5``: ETag == MD5 of the bytes; ``size``: size only, for
    multipart ETags and local sources that have no checksum)."""

    key: str
    size: int
    md5: str
    source: str
    etag: str
    verified: str


def md5_file(path: Path, progress=None) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def md5_prefix(path: Path, length: int) -> "hashlib._Hash":
    """A running MD5 over the first ``length`` bytes of ``path`` (to continue hashing a resumed download)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        remaining = length
        while remaining and (chunk := fh.read(min(CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def read_records(path: Path) -> dict[str, Record]:
    """Records of a manifest or journal, the last one per key winning. A torn last line (a crash while
    appending) is ignored: that key is simply checked again."""
    records: dict[str, Record] = {}
    if not path.is_file():
        return records
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            try:
                rec = Record(**{f.name: row[f.name] for f in fields(Record)})
                records[rec.key] = Record(rec.key, int(rec.size), rec.md5, rec.source, rec.etag, rec.verified)
            except (KeyError, TypeError, ValueError):
                continue
    return records


def _row(record: Record) -> str:
    return "\t".join(str(v) for v in astuple(record)) + "\n"


def append_record(path: Path, record: Record) -> None:
    """Append one record (flushed, so that it survives the process being killed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as fh:
        if new:
            fh.write("\t".join(MANIFEST_COLUMNS) + "\n")
        fh.write(_row(record))


def write_manifest(path: Path, records: list[Record]) -> None:
    """The group's manifest, written under a temporary name and renamed into place."""
    with atomic_open(path, "w") as fh:
        fh.write("\t".join(MANIFEST_COLUMNS) + "\n")
        for record in records:
            fh.write(_row(record))


class Store:
    """Paths under ``nsd.dir`` and the operations that put a verified file in place."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.links_ok = True

    def dest(self, key: str) -> Path:
        return self.root / key

    def kept(self, key: str) -> Path:
        return self.root / ".fetch" / "objects" / key

    def part(self, key: str) -> Path:
        kept = self.kept(key)
        return kept.with_name(kept.name + ".part")

    def part_meta(self, key: str) -> Path:
        kept = self.kept(key)
        return kept.with_name(kept.name + ".part.json")

    def manifest(self, group: str) -> Path:
        return self.root / "manifest" / f"{group}.tsv"

    def journal(self, group: str) -> Path:
        return self.root / ".fetch" / "journal" / f"{group}.tsv"

    def records(self, group: str) -> dict[str, Record]:
        """What earlier runs verified: the manifest, overridden by the (newer) journal."""
        return {**read_records(self.manifest(group)), **read_records(self.journal(group))}

    def resume_offset(self, key: str, etag: str | None, size: int) -> int:
        """Bytes of a partial download that can be kept: those of the same object version, never more than
        the object. Anything else is discarded."""
        part, meta = self.part(key), self.part_meta(key)
        if not part.is_file():
            return 0
        try:
            held = json.loads(meta.read_text())
        except (OSError, ValueError):
            held = {}
        have = part.stat().st_size
        if held.get("etag") == etag and held.get("size") == size and have <= size:
            return have
        return 0

    def start_part(self, key: str, etag: str | None, size: int) -> None:
        """Begin a fresh partial download of this object version."""
        part = self.part(key)
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"")
        self.part_meta(key).write_text(json.dumps({"etag": etag, "size": size}))

    def drop_part(self, key: str) -> None:
        for path in (self.part(key), self.part_meta(key)):
            path.unlink(missing_ok=True)

    def install(self, key: str) -> None:
        """Rename the verified ``.part`` over the kept copy, then link it to the destination atomically."""
        kept = self.kept(key)
        publish(self.part(key), kept)  # fsynced: the journal records it as verified right after
        self.part_meta(key).unlink(missing_ok=True)
        self._link(kept, self.dest(key), move_if_unsupported=True)

    def restore(self, key: str) -> None:
        """Put the kept copy back at the destination (Snakemake deleted it, or it was damaged)."""
        self._link(self.kept(key), self.dest(key), move_if_unsupported=False)

    def keep(self, key: str) -> None:
        """Make sure a verified destination file also has its kept link."""
        dest, kept = self.dest(key), self.kept(key)
        if not self.links_ok or (kept.exists() and os.path.samefile(dest, kept)):
            return
        kept.parent.mkdir(parents=True, exist_ok=True)
        try:
            hard_link(dest, kept)
        except OSError:
            self.links_ok = False

    def _link(self, kept: Path, dest: Path, move_if_unsupported: bool) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            hard_link(kept, dest)
        except OSError:
            if not move_if_unsupported:
                raise
            self.links_ok = False
            os.replace(kept, dest)   # a move, not a write: the kept copy becomes the destination
        # A restored file must look newer than the rule's inputs, or Snakemake would rerun the rule forever.
        os.utime(dest)
