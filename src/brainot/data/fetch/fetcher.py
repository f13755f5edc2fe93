"""Plan and run a verified fetch: stat the sources, decide per key, download what is missing, write manifests.

Per key, from the cheapest check to the dearest:

- ``present``: an earlier run's record (manifest or journal) is for the source's current version (same size
  and ETag), and the local file has the recorded size. Nothing is read. ``--verify full`` also recomputes
  the local MD5 and, for a record verified by size only, checks the file against the source's checksums.
- ``restore``: the local file is gone or damaged but the kept hard link (see :mod:`.store`) passes the same
  check: it is linked back. This is what a Snakemake rerun of a fetch rule hits, since Snakemake deletes
  the outputs first.
- ``adopt``: no record, but a local file is there whose size and MD5 match a single-part ETag (e.g. a copy
  made with ``aws s3 cp``): it is recorded as is.
- ``changed``: a verified copy is there, but the source now holds another version (size or ETag). A source
  that got shorter is an error (a truncated upload?) and the local copy is kept; otherwise the new version
  is downloaded beside the local copy and replaces it only once it passed the source's checksum. A new
  version that cannot be checked (the source publishes no checksum) is an error, local copy kept.
- ``fetch``: everything else is downloaded (resuming a partial download of the same version).

Whatever the action, a downloaded file passes every checksum its source publishes (:mod:`.checksum`) before
it is moved into place, and a good local copy is only ever replaced by a verified one.

A key absent from its source is ``missing``: a fetch stops before downloading anything, naming every
missing key and its source; a dry run lists them with the rest.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from .checksum import run_checks
from .groups import Wanted, wanted
from .sources import FetchError, MissingKeyError, ObjectInfo
from .store import Record, Store, append_record, md5_file, read_records, write_manifest
from .transfer import download

log = logging.getLogger("brainot.data.fetch")
ACTIONS = ("present", "restore", "adopt", "changed", "fetch", "missing")
FETCHING = ("changed", "fetch")


@dataclass
class Item:
    want: Wanted
    info: ObjectInfo | None  # None: missing from the source
    action: str
    record: Record | None = None
    resume_from: int = 0


@dataclass
class Stats:
    """What a fetch (or dry run) found and did. Sizes in bytes."""

    groups: list[str] = field(default_factory=list)
    keys: int = 0
    total_bytes: int = 0
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    to_download: int = 0
    received: int = 0
    resumed: int = 0
    retries: int = 0
    size_only: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    missing_error: str = ""
    seconds: float = 0.0
    plan: str = ""
    manifests: list[str] = field(default_factory=list)

    def summary(self) -> str:
        a = self.actions
        rate = f", {human(self.received / self.seconds)}/s" if self.received and self.seconds else ""
        text = (f"{'+'.join(self.groups)}: {self.keys} keys ({human(self.total_bytes)}): {a['present']} present, "
                f"{a['restore']} restored, {a['adopt']} adopted, {a['changed']} changed at the source, "
                f"{a['fetch']} to fetch ({human(self.to_download)}); "
                f"received {human(self.received)} in {self.seconds:.1f} s{rate}, "
                f"{self.resumed} resumed, {self.retries} retries")
        if self.size_only:
            text += f"; {len(self.size_only)} verified by size only"
        return text


def human(size: int) -> str:
    return tqdm.format_sizeof(size, "B", 1000)


def plan(nsd: dict, families: list[str] | None, group: str, verify: str = "size") -> tuple[Store, list[Item]]:
    """What a fetch of ``group`` would do for every key, without changing anything on disk."""
    if verify not in ("size", "full"):
        raise FetchError(f"--verify {verify!r}: expected 'size' or 'full'")
    wants = wanted(nsd, families, group)
    store = Store(nsd["dir"])
    infos = _stat(wants)
    records = {g: store.records(g) for g in dict.fromkeys(w.group for w in wants)}
    items = []
    for want in wants:
        info = infos.get((id(want.source), want.remote))
        if info is None:
            items.append(Item(want, None, "missing"))
            continue
        record = records[want.group].get(want.key)
        action, record = _decide(store, want, info, record, verify)
        resume = store.resume_offset(want.key, info.etag, info.size) if action in FETCHING else 0
        items.append(Item(want, info, action, record if action in ("present", "restore", "changed") else None,
                          resume))
    return store, items


def _stat(wants: list[Wanted]) -> dict[tuple[int, str], ObjectInfo]:
    """Ask each source about all its keys at once (S3: one listing per directory). Absent keys are left out."""
    by_source: dict[int, list[Wanted]] = {}
    for want in wants:
        by_source.setdefault(id(want.source), []).append(want)
    infos = {}
    for members in by_source.values():
        source = members[0].source
        for remote, info in source.stat(list(dict.fromkeys(w.remote for w in members))).items():
            infos[(id(source), remote)] = info
    return infos


def missing_error(items: list[Item]) -> MissingKeyError | None:
    missing = list(dict.fromkeys((it.want.source, it.want.remote) for it in items if it.action == "missing"))
    return MissingKeyError(missing) if missing else None


def _holds(path: Path, record: Record, verify: str) -> bool:
    if not path.is_file() or path.stat().st_size != record.size:
        return False
    return verify == "size" or md5_file(path) == record.md5


def _decide(store: Store, want: Wanted, info: ObjectInfo, record: Record | None,
            verify: str) -> tuple[str, Record | None]:
    """The action for one key, and its record (upgraded when ``--verify full`` checked it against the source)."""
    key = want.key
    dest, kept = store.dest(key), store.kept(key)
    if record is not None and record.size == info.size and record.etag == (info.etag or ""):
        if _holds(dest, record, verify):
            checked = _source_agrees(want, info, dest, record, verify)
            return ("present", checked) if checked else ("fetch", record)
        same_file = dest.is_file() and kept.is_file() and dest.samefile(kept)
        if not same_file and _holds(kept, record, verify):
            checked = _source_agrees(want, info, kept, record, verify)
            return ("restore", checked) if checked else ("fetch", record)
    elif record is not None and (_holds(dest, record, "size") or _holds(kept, record, "size")):
        return "changed", record
    elif info.md5 and dest.is_file() and dest.stat().st_size == info.size and md5_file(dest) == info.md5:
        return "adopt", record
    return "fetch", record


def _source_agrees(want: Wanted, info: ObjectInfo, path: Path, record: Record, verify: str) -> Record | None:
    """``--verify full`` of a file recorded as verified by size only: check it against the source's checksums
    now (a local source's own bytes, a multipart ETag), so that a file torn before it was recorded is found.
    Returns the record (saying how it is now verified), or None when the file fails."""
    if verify != "full" or record.verified != "size":
        return record
    checks = want.source.checks(want.remote, info)
    if not checks:
        return record
    md5, failures = run_checks(path, checks)
    if failures:
        log.warning("%s: %s; fetching it again", want.key, "; ".join(failures))
        return None
    return replace(record, md5=md5, verified="+".join(dict.fromkeys(c.tag for c in checks)))


def shrunk_error(items: list[Item]) -> FetchError | None:
    """Keys whose source got shorter than the verified local copy: never replaced (a truncated upload?)."""
    shrunk = [it for it in items if it.action == "changed" and it.info.size < it.record.size]
    if not shrunk:
        return None
    lines = "".join(f"\n  {it.want.source.url_of(it.want.remote)}: now {it.info.size} bytes (ETag {it.info.etag}), "
                    f"the local copy {it.record.size} bytes (MD5 {it.record.md5}, verified by {it.record.verified})"
                    for it in shrunk)
    return FetchError(f"{len(shrunk)} key(s) got shorter at their source than the verified local copy; the local "
                      f"copies are kept and nothing was downloaded:{lines}\nIf the new versions are wanted, delete "
                      f"the local copies (the file and its link under .fetch/objects/) and fetch again")


def describe(items: list[Item]) -> str:
    """The dry run's report: every key to download with its size, then totals per group and overall."""
    todo = [it for it in items if it.action in FETCHING]
    lines = []
    for it in items:
        if it.action in FETCHING:
            note = f"  (resume at {human(it.resume_from)})" if it.resume_from else ""
            if it.action == "changed":
                note += f"  (changed at the source: {it.record.size} -> {it.info.size} bytes)"
            lines.append(f"{human(it.info.size):>9}  {it.want.source.url_of(it.want.remote)} -> {it.want.key}{note}")
        elif it.action == "missing":
            lines.append(f"{'MISSING':>9}  {it.want.source.url_of(it.want.remote)} ({it.want.source.setting})")
    for group in dict.fromkeys(it.want.group for it in items):
        members = [it for it in items if it.want.group == group and it.info is not None]
        needed = [it for it in members if it.action in FETCHING]
        lines.append(f"{group}: {len(needed)} of {len(members)} keys to fetch, "
                     f"{human(sum(it.info.size - it.resume_from for it in needed))}; "
                     f"all {len(members)} keys: {human(sum(it.info.size for it in members))}")
    need = sum(it.info.size - it.resume_from for it in todo)
    sources = ", ".join(dict.fromkeys(it.want.source.url for it in todo)) or "-"
    lines.append(f"total to fetch: {len(todo)} of {len(items)} keys, {human(need)} ({need} bytes) from {sources}")
    missing = [it for it in items if it.action == "missing"]
    if missing:
        lines.append(f"MISSING from their source: {len(missing)} keys (listed above); a fetch would stop")
    return "\n".join(lines)


def fetch(nsd: dict, families: list[str] | None, group: str, *, dry_run: bool = False, verify: str = "size",
          retries: int = 5, backoff: float = 1.0, progress: bool = True) -> Stats:
    """Fetch every key of ``group`` into ``nsd.dir`` (verified), write ``manifest/{group}.tsv`` per group.

    ``nsd`` is the validated ``nsd:`` config section; ``families`` the ROI files to fetch (None: all five).
    With ``dry_run`` nothing is written; the returned :class:`Stats` says what would be fetched (and what is
    missing). Otherwise a missing key raises :class:`MissingKeyError` before anything is downloaded.
    """
    t0 = time.perf_counter()
    store, items = plan(nsd, families, group, verify)
    stats = Stats(groups=list(dict.fromkeys(it.want.group for it in items)), keys=len(items),
                  total_bytes=sum(it.info.size for it in items if it.info is not None))
    for it in items:
        stats.actions[it.action] += 1
    todo = [it for it in items if it.action in FETCHING]
    stats.to_download = sum(it.info.size - it.resume_from for it in todo)
    stats.missing = [it.want.key for it in items if it.action == "missing"]
    stats.plan = describe(items)
    missing = missing_error(items)
    if missing is not None:
        if not dry_run:
            raise missing
        stats.missing_error = str(missing)
    shrunk = shrunk_error(items)
    if shrunk is not None and not dry_run:
        raise shrunk
    if dry_run:
        stats.seconds = time.perf_counter() - t0
        return stats
    _check_space(store, stats.to_download)

    journaled = {g: read_records(store.journal(g)) for g in stats.groups}
    records: dict[str, list[Record]] = {g: [] for g in stats.groups}
    bar = tqdm(total=sum(it.info.size for it in todo), unit="B", unit_scale=True, unit_divisor=1000,
               desc=f"fetch {group}", disable=not progress or not todo, mininterval=1.0)
    with bar:
        for it in items:
            record = _apply(store, it, stats, retries, backoff, bar)
            # The journal must hold every key's record: Snakemake deletes the manifest with the other outputs.
            if journaled[it.want.group].get(record.key) != record or it.action in ("adopt", *FETCHING):
                append_record(store.journal(it.want.group), record)
            records[it.want.group].append(record)
    for g, recs in records.items():
        write_manifest(store.manifest(g), recs)
        stats.manifests.append(str(store.manifest(g)))
    stats.seconds = time.perf_counter() - t0
    return stats


def _apply(store: Store, it: Item, stats: Stats, retries: int, backoff: float, bar) -> Record:
    key, info, want = it.want.key, it.info, it.want
    if it.action == "present":
        store.keep(key)
        return it.record
    if it.action == "restore":
        store.restore(key)
        log.info("restored %s from its kept copy", key)
        return it.record
    if it.action == "adopt":
        store.keep(key)
        log.info("adopted %s: size and MD5 match the source's ETag", key)
        return Record(key, info.size, info.md5, want.source.url_of(want.remote), info.etag or "", "md5")
    t0 = time.perf_counter()
    transfer = download(want.source, want.remote, info, store, key, retries=retries, backoff=backoff, progress=bar)
    if it.action == "changed" and transfer.verified == "size":
        raise FetchError(f"{want.source.url_of(want.remote)}: changed at the source ({it.record.size} -> {info.size} "
                         f"bytes, ETag {it.record.etag} -> {info.etag}) and the source publishes no checksum to "
                         f"verify the new version; the verified local copy {store.dest(key)} is kept")
    store.install(key)
    if it.action == "changed":
        log.warning("%s changed at the source (%d -> %d bytes, ETag %s -> %s); replaced by the new version, "
                    "verified by %s", key, it.record.size, info.size, it.record.etag, info.etag, transfer.verified)
    stats.received += transfer.received
    stats.retries += transfer.retries
    stats.resumed += bool(transfer.resumed_from)
    dt = time.perf_counter() - t0
    how = transfer.verified
    if how == "size":
        stats.size_only.append(key)
        note = "size verified only (the source publishes no checksum); MD5 recorded"
    else:
        note = f"size + {how} verified"
    log.info("fetched %s: %s in %.1f s; %s", key, human(info.size), dt, note)
    return Record(key, info.size, transfer.md5, want.source.url_of(want.remote), info.etag or "", how)


def _check_space(store: Store, needed: int) -> None:
    """Fail before downloading, not 150 GB in, when ``nsd.dir`` cannot hold what is to be fetched."""
    where = store.root.resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if needed > free:
        raise FetchError(f"nsd.dir: {store.root} ({where}) has {human(free)} free; the fetch needs {human(needed)}")
