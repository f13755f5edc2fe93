"""Download one object into its ``.part`` file: resumable, retried with exponential backoff, verified.

A broken connection keeps the bytes received so far; the next attempt asks for the rest with a ranged GET
(``Range: bytes=<part size>-``) and continues the running MD5 from the part's bytes. An attempt that made
progress resets the backoff, so a long download over a flaky link is not given up on; ``retries`` failures
in a row without progress are. A part left by an earlier run is only built on after its last
:data:`OVERLAP` bytes were downloaded again and found equal. The finished part must have the source's size
and pass every checksum the source publishes (:meth:`Source.checks`: single-part or multipart ETag, S3
additional checksums, a local source's own bytes); otherwise it is discarded and downloaded again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .checksum import run_checks
from .sources import FetchError, IntegrityError, ObjectInfo, Source, TransientError
from .store import Store, md5_prefix

log = logging.getLogger("brainot.data.fetch")
MAX_DELAY_S = 120.0
OVERLAP = 4 << 20  # bytes of a part left by an earlier run that are downloaded again and compared


@dataclass
class Transfer:
    """What one download took: bytes received, whether it resumed an earlier part, failed attempts."""

    md5: str = ""
    verified: str = "size"
    received: int = 0
    resumed_from: int = 0
    retries: int = 0


def download(source: Source, remote: str, info: ObjectInfo, store: Store, key: str, *, retries: int,
             backoff: float, progress=None) -> Transfer:
    """Fetch ``remote`` from ``source`` into ``store.part(key)`` and verify it; returns the :class:`Transfer`.

    Raises :class:`FetchError` after ``retries`` consecutive failed attempts (network errors or a
    verification mismatch), naming the object and the last error.
    """
    result = Transfer()
    failures = 0
    first = True
    earlier = True  # the part on disk, if any, was left by an earlier run: not trusted without a check
    digest, digested = None, -1  # the running MD5 and how many bytes of the part it has seen
    while True:
        offset = store.resume_offset(key, info.etag, info.size)
        if offset == 0:
            store.start_part(key, info.etag, info.size)
        elif first:
            result.resumed_from = offset
            log.info("resuming %s at byte %d of %d", key, offset, info.size)
        if first and progress is not None:
            progress.update(offset)
        first = False
        received = 0
        try:
            if earlier and offset:
                _check_overlap(source, remote, store, key, offset)
            earlier = False
            if digested != offset:
                digest, digested = md5_prefix(store.part(key), offset), offset
            if offset < info.size:  # a part already complete (killed before its rename) is only verified
                for received in _attempt(source, remote, store, key, offset, digest, progress):
                    pass
            result.received += received
            result.md5, result.verified = _verify(source, remote, info, store, key, digest.hexdigest())
            return result
        except TransientError as exc:
            result.received += received
            digested = offset + received if digested == offset else -1
            failures = 1 if received else failures + 1
            error = exc
        except IntegrityError as exc:
            if progress is not None:
                progress.update(-store.part(key).stat().st_size)
            store.drop_part(key)
            earlier, digested, result.resumed_from = False, -1, 0
            failures += 1
            error = exc
        result.retries += 1
        if failures > retries:
            raise FetchError(f"{source.url_of(remote)}: gave up after {failures} failed attempts in a row: {error}")
        delay = min(backoff * 2 ** (failures - 1), MAX_DELAY_S)
        log.warning("%s: %s; retry %d/%d in %.1f s", key, error, failures, retries, delay)
        time.sleep(delay)


def _check_overlap(source: Source, remote: str, store: Store, key: str, offset: int) -> None:
    """Download the last :data:`OVERLAP` bytes of a part left by an earlier run again and compare them.

    A crash can leave a part of the right length whose tail never reached the disk (zeros). The final
    checksum catches that where the source has one; the overlap catches it (when within the last
    :data:`OVERLAP` bytes) before a long download builds on it, and is the only check where there is none.
    """
    begin = max(0, offset - OVERLAP)
    start, chunks = source.read(remote, begin, offset)
    try:
        if start != begin:
            raise IntegrityError(f"{source.url_of(remote)}: the source ignored the range request "
                                 f"(bytes={begin}-{offset - 1}); cannot check the partial download")
        theirs = bytearray()
        for chunk in chunks:
            theirs += chunk
            if len(theirs) >= offset - begin:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    with open(store.part(key), "rb") as fh:
        fh.seek(begin)
        ours = fh.read(offset - begin)
    if bytes(theirs[:offset - begin]) != ours:
        raise IntegrityError(f"{source.url_of(remote)}: the partial download left by an earlier run differs from "
                             f"the source in bytes {begin}-{offset - 1} (a torn write?); fetching it again")


def _attempt(source: Source, remote: str, store: Store, key: str, offset: int, digest, progress):
    """One GET from ``offset``, appended to the part file and to ``digest``. A generator of the running count
    of bytes received, so that the caller knows how far it got when the connection breaks."""
    start, chunks = source.read(remote, offset)
    part = store.part(key)
    if start != offset:
        raise IntegrityError(f"{source.url_of(remote)}: the source ignored the range request (bytes={offset}-)")
    received = 0
    # No fsync: a part left by a crash is checked on resume (overlap and checksum) before it is trusted.
    with open(part, "ab") as fh:
        for chunk in chunks:
            fh.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
            yield received


def _verify(source: Source, remote: str, info: ObjectInfo, store: Store, key: str, md5: str) -> tuple[str, str]:
    """Check the finished part against every checksum the source publishes; returns (MD5, how verified)."""
    part = store.part(key)
    size = part.stat().st_size
    if size != info.size:
        raise IntegrityError(f"{source.url_of(remote)}: got {size} bytes, the source says {info.size}")
    checks = source.checks(remote, info)
    # A whole-object MD5 (single-part ETag, a local source's MD5) was hashed while downloading; anything else
    # needs one more read of the part.
    streamed = [c for c in checks if c.algorithm == "md5" and not c.part_sizes]
    for check in streamed:
        if md5 != check.normalised():
            raise IntegrityError(f"{source.url_of(remote)}: MD5 {md5} of the downloaded bytes differs from "
                                 f"the {check.label} {check.expected}")
    rest = [c for c in checks if c not in streamed]
    if rest:
        md5, failures = run_checks(part, rest)
        if failures:
            raise IntegrityError(f"{source.url_of(remote)}: " + "; ".join(failures))
    return md5, "+".join(dict.fromkeys(c.tag for c in checks)) or "size"
