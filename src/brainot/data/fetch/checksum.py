"""Checksums a source publishes for an object, and their recomputation over a local file in one pass.

What S3 (and our other sources) can tell about an object's bytes:

- a **single-part ETag** is the hex MD5 of the bytes;
- a **multipart ETag** ``<hex>-<n>`` is the MD5 of the concatenated binary MD5s of the ``n`` parts, followed
  by the part count. Recomputing it needs the part size: S3 says it (``HeadObject`` with ``PartNumber=1``
  gives the first part's length); failing that, the sizes uploaders use (the AWS CLI's 8 MiB, ...) that give
  ``n`` parts for the object's size are all tried;
- an **additional checksum** (``ChecksumSHA256``, ``ChecksumSHA1``, ``ChecksumCRC32``, base64 of the digest),
  either of the whole object or, for a multipart upload, ``<b64>-<n>``: the checksum of the concatenated part
  checksums (composite), with the same part size as the ETag;
- a ``file://`` source's own bytes: their MD5, read from the source file.

A :class:`Check` is one such expectation; :func:`run_checks` reads a file once and evaluates every check
(and the file's own MD5, which the manifest records).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

READ = 1 << 20
MIB = 1 << 20
# Part sizes of common uploaders (AWS CLI/boto3 default 8 MiB, S3 minimum 5 MiB, ...), tried in this order.
COMMON_PART_MIB = (8, 16, 5, 15, 32, 50, 64, 100, 128, 256, 512, 1024)
MULTIPART_ETAG = re.compile(r"([0-9a-fA-F]{32})-(\d+)")


class _Crc32:
    """``hashlib``-like CRC-32 (what S3 calls CRC32), big-endian digest."""

    def __init__(self):
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


ALGORITHMS = {"md5": hashlib.md5, "sha256": hashlib.sha256, "sha1": hashlib.sha1, "crc32": _Crc32}


@dataclass(frozen=True)
class Check:
    """One published checksum. ``algorithm`` in :data:`ALGORITHMS`; ``expected`` as the source writes it
    (hex for MD5/ETags, base64 for S3 additional checksums, ``-<n>`` for multipart); ``part_sizes``: the
    candidate part sizes of a multipart value (empty: a whole-object value); ``tag`` names it in the
    manifest's ``verified`` column and ``label`` in messages."""

    tag: str
    label: str
    algorithm: str
    expected: str
    part_sizes: tuple[int, ...] = ()

    @property
    def parts(self) -> int:
        return int(self.expected.rsplit("-", 1)[1]) if self.part_sizes else 0

    def encode(self, digest: bytes) -> str:
        return digest.hex() if self.algorithm == "md5" else base64.b64encode(digest).decode()

    def normalised(self) -> str:
        return self.expected.lower() if self.algorithm == "md5" else self.expected


def part_size_candidates(size: int, parts: int, known: int | None = None) -> tuple[int, ...]:
    """Part sizes that split ``size`` bytes into exactly ``parts`` parts: ``known`` (from S3) if given and
    valid, else the common uploader sizes that fit, else the smallest whole MiB that fits."""
    def fits(p: int) -> bool:
        return p > 0 and -(-size // p) == parts

    if known and fits(known):
        return (known,)
    found = tuple(m * MIB for m in COMMON_PART_MIB if fits(m * MIB))
    if found:
        return found
    smallest = -(-size // parts)
    smallest_mib = -(-smallest // MIB) * MIB
    return tuple(p for p in (smallest_mib, smallest) if fits(p))[:1]


class _Parts:
    """The running per-part digests of one candidate part size."""

    def __init__(self, algorithm: str, part_size: int):
        self.factory, self.part_size = ALGORITHMS[algorithm], part_size
        self.current, self.filled, self.digests = self.factory(), 0, []

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.part_size - self.filled)
            self.current.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.part_size:
                self.digests.append(self.current.digest())
                self.current, self.filled = self.factory(), 0

    def value(self, check: Check) -> str:
        digests = self.digests + ([self.current.digest()] if self.filled else [])
        combined = self.factory()
        combined.update(b"".join(digests))
        return f"{check.encode(combined.digest())}-{len(digests)}"


def run_checks(path: Path, checks: list[Check], progress=None) -> tuple[str, list[str]]:
    """Read ``path`` once: its MD5 (hex) and a message for every check it fails (empty: all pass)."""
    md5 = hashlib.md5()
    whole = {c: ALGORITHMS[c.algorithm]() for c in checks if not c.part_sizes}
    multi = {c: [_Parts(c.algorithm, p) for p in c.part_sizes] for c in checks if c.part_sizes}
    with open(path, "rb") as fh:
        while chunk := fh.read(READ):
            md5.update(chunk)
            for h in whole.values():
                h.update(chunk)
            for states in multi.values():
                for state in states:
                    state.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    failures = []
    for check, h in whole.items():
        got = check.encode(h.digest())
        if got != check.normalised():
            failures.append(f"{check.label} {got} of the local bytes differs from the source's {check.expected}")
    for check, states in multi.items():
        got = [state.value(check) for state in states]
        want = check.normalised()
        if want not in [g.lower() if check.algorithm == "md5" else g for g in got]:
            sizes = ", ".join(f"{p} bytes" for p in check.part_sizes)
            failures.append(f"{check.label} of the local bytes ({', '.join(got)} for part size {sizes}) "
                            f"differs from the source's {check.expected}")
    return md5.hexdigest(), failures
