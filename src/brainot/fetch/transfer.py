"""Download one object into its ``.part`` file: resumable, retried with exponential backoff, verified.

A broken connection keeps the bytes received so far; the next attempt asks for the rest with a ranged GET
(``Range: bytes=<part size>-``) and continues the running MD5 from the part's bytes. An attempt that made
progress resets the backoff, so a long download over a flaky link is not given up on; ``retries`` failures
in a row without progress are. The finished part must have the source's size and, where the source's ETag
is an MD5 (single-part S3 uploads), that MD5; otherwise it is discarded and downloaded again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .sources import FetchError, IntegrityError, ObjectInfo, Source, TransientError
from .store import Store, md5_prefix

log = logging.getLogger("brainot.fetch")
MAX_DELAY_S = 120.0


@dataclass
class Transfer:
    """What one download took: bytes received, whether it resumed an earlier part, failed attempts."""

    md5: str = ""
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
        if digested != offset:
            digest, digested = md5_prefix(store.part(key), offset), offset
        received = 0
        try:
            if offset < info.size:  # a part already complete (killed before its rename) is only verified
                for received in _attempt(source, remote, store, key, offset, digest, progress):
                    pass
            result.received += received
            result.md5 = _verify(source, remote, info, store, key, digest.hexdigest())
            return result
        except TransientError as exc:
            result.received += received
            digested = offset + received
            failures = 1 if received else failures + 1
            error = exc
        except IntegrityError as exc:
            if progress is not None:
                progress.update(-store.part(key).stat().st_size)
            store.drop_part(key)
            digested = -1
            failures += 1
            error = exc
        result.retries += 1
        if failures > retries:
            raise FetchError(f"{source.url_of(remote)}: gave up after {failures} failed attempts in a row: {error}")
        delay = min(backoff * 2 ** (failures - 1), MAX_DELAY_S)
        log.warning("%s: %s; retry %d/%d in %.1f s", key, error, failures, retries, delay)
        time.sleep(delay)


def _attempt(source: Source, remote: str, store: Store, key: str, offset: int, digest, progress):
    """One GET from ``offset``, appended to the part file and to ``digest``. A generator of the running count
    of bytes received, so that the caller knows how far it got when the connection breaks."""
    start, chunks = source.read(remote, offset)
    part = store.part(key)
    if start != offset:
        raise IntegrityError(f"{source.url_of(remote)}: the source ignored the range request (bytes={offset}-)")
    received = 0
    # No fsync: after a crash a rerun checks sizes against the records anyway, and an fsync per key
    # costs more than the download of a small key.
    with open(part, "ab") as fh:
        for chunk in chunks:
            fh.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if progress is not None:
                progress.update(len(chunk))
            yield received


def _verify(source: Source, remote: str, info: ObjectInfo, store: Store, key: str, md5: str) -> str:
    size = store.part(key).stat().st_size
    if size != info.size:
        raise IntegrityError(f"{source.url_of(remote)}: got {size} bytes, the source says {info.size}")
    if info.md5 is not None and md5 != info.md5:
        raise IntegrityError(f"{source.url_of(remote)}: MD5 {md5} of the downloaded bytes differs from the ETag {info.md5}")
    return md5
