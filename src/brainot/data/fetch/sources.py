"""Where bucket keys are read from: an S3 bucket (anonymous), a local directory, or an HTTP(S) prefix.

Every source answers two questions, with the same errors whatever the transport:

- :meth:`Source.stat`: the size and version token (ETag, or the file's mtime) of many keys at once (absent
  keys are left out). S3 lists each parent "directory" once (a few requests per subject instead of one HEAD
  per key) and falls back to HEAD where listing is refused.
- :meth:`Source.read`: the bytes of one key from an offset on (a ranged GET), as an iterator of chunks.

Network failures that a retry can cure raise :class:`TransientError`; a key that is not there raises
:class:`MissingKeyError` naming the key and the source; anything else raises :class:`FetchError`.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .checksum import MULTIPART_ETAG, Check, part_size_candidates

CHUNK = 1 << 18  # a broken connection loses at most the chunk being read
TIMEOUT_S = 60
# S3 error codes that mean "try again later" rather than "this will never work".
RETRYABLE_CODES = {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError",
                   "ServiceUnavailable", "RequestTimeTooSkewed"}


class FetchError(RuntimeError):
    """The fetch cannot go on; the message says which key, which source and what was expected."""


class TransientError(FetchError):
    """A network failure that a retry (with backoff, resuming where it stopped) may cure."""


class IntegrityError(FetchError):
    """The bytes received are not the object's (a checksum or size mismatch): download it again from byte 0."""


class MissingKeyError(FetchError):
    """Keys the pipeline needs are not in their source. ``missing``: (source, key) pairs; ``keys``: the keys."""

    def __init__(self, missing: list[tuple["Source", str]]):
        self.missing = list(missing)
        self.keys = [key for _, key in self.missing]
        parts = []
        for source in dict.fromkeys(src for src, _ in self.missing):
            keys = [key for src, key in self.missing if src is source]
            shown = "".join(f"\n  {source.url_of(k)}" for k in keys[:20])
            more = f"\n  ... and {len(keys) - 20} more" if len(keys) > 20 else ""
            parts.append(f"{len(keys)} key(s) missing from {source.url} ({source.setting}):{shown}{more}")
        super().__init__("\n".join(parts))


@dataclass(frozen=True)
class ObjectInfo:
    """What a source says about one key: its size and a version token.

    ``etag`` is the S3/HTTP ETag without quotes, or ``mtime:<ns>`` for a local file: a changed token means a
    changed object. A single-part S3 upload's ETag is the MD5 of its bytes; a multipart one looks like
    ``<hex>-<parts>`` (see :mod:`.checksum` and :meth:`Source.checks` for how both are verified).
    """

    size: int
    etag: str | None

    @property
    def md5(self) -> str | None:
        if self.etag and re.fullmatch(r"[0-9a-fA-F]{32}", self.etag):
            return self.etag.lower()
        return None


class Source:
    """Base of the three transports. ``url`` is the configured value and ``setting`` the config key holding it."""

    url: str
    setting: str

    def url_of(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    def stat(self, keys: list[str]) -> dict[str, ObjectInfo]:
        """Size and version of every key that exists; absent keys are left out (the caller names them)."""
        raise NotImplementedError

    def read(self, key: str, offset: int, end: int | None = None) -> tuple[int, Iterator[bytes]]:
        """``(start, chunks)``: the bytes of ``key`` from ``start`` on (up to byte ``end``, exclusive, when
        given). ``start`` is ``offset`` when the source honoured the range and 0 when it sent the whole object
        instead."""
        raise NotImplementedError

    def checks(self, key: str, info: ObjectInfo) -> list[Check]:
        """The checksums the source publishes for ``key`` (empty: none; only the size can be verified)."""
        return [Check("md5", "MD5 (= ETag)", "md5", info.md5)] if info.md5 else []


def _unquote(etag: str | None) -> str | None:
    return etag.strip().strip('"') if etag else None


class S3Source(Source):
    """``s3://bucket[/prefix]`` read anonymously (unsigned requests), optionally from another endpoint."""

    def __init__(self, url: str, setting: str, endpoint_url: str | None = None, region: str | None = None):
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        match = re.fullmatch(r"s3://([^/]+)/?(.*)", url)
        if not match:
            raise FetchError(f"{setting}: {url!r} is not an S3 URL; expected s3://bucket[/prefix]")
        self.url, self.setting = url, setting
        self.bucket = match.group(1)
        self.prefix = match.group(2).strip("/")
        self.endpoint_url = endpoint_url
        # botocore retries the request itself (not a broken body stream: that is ours, with a ranged GET).
        config = Config(signature_version=UNSIGNED, connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S,
                        retries={"max_attempts": 3, "mode": "standard"})
        self.client = boto3.client("s3", region_name=region or None, endpoint_url=endpoint_url or None, config=config)

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self) -> str:
        return f"{self.url} ({self.setting}{', endpoint ' + self.endpoint_url if self.endpoint_url else ''})"

    def _error(self, exc: Exception, key: str | None = None) -> FetchError:
        """Translate a boto error into ours: transient, missing, or fatal with a message naming key and source."""
        from botocore.exceptions import ClientError, FlexibleChecksumError

        what = self.url_of(key) if key else self._where()
        if isinstance(exc, FlexibleChecksumError):
            # botocore checks a whole-object response against the CRC that S3 stored with the object.
            return IntegrityError(f"{what}: {exc}")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchBucket",):
                return FetchError(f"{self.setting}: bucket {self.bucket!r} does not exist at {self._where()}")
            if code in RETRYABLE_CODES or status >= 500:
                return TransientError(f"{what}: {code or status} {err.get('Message', '')}".strip())
            if code in ("AccessDenied", "403"):
                return FetchError(f"{what}: access denied for anonymous reads from {self._where()}. The NSD bucket "
                                  "allows them; a mirror may need a public-read policy")
            return FetchError(f"{what}: {code or status} {err.get('Message', '')}".strip())
        if _is_transient(exc):
            return TransientError(f"{what}: {type(exc).__name__}: {exc}")
        return FetchError(f"{what}: {type(exc).__name__}: {exc}")

    def _head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, key) from exc
        return ObjectInfo(int(head["ContentLength"]), _unquote(head.get("ETag")))

    def _list(self, directory: str) -> dict[str, ObjectInfo] | None:
        """Every object directly under ``directory`` (one page per 1000 keys); None if listing is refused."""
        from botocore.exceptions import BotoCoreError, ClientError

        found = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{directory}/" if directory else "", Delimiter="/")
            for page in pages:
                for obj in page.get("Contents", []):
                    found[obj["Key"]] = ObjectInfo(int(obj["Size"]), _unquote(obj.get("ETag")))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("AccessDenied", "403"):
                return None
            raise self._error(exc) from exc
        except BotoCoreError as exc:
            raise self._error(exc) from exc
        return found

    def stat(self, keys: list[str]) -> dict[str, ObjectInfo]:
        by_dir = defaultdict(list)
        for key in keys:
            by_dir[self._object(key).rpartition("/")[0]].append(key)
        infos = {}
        for directory, members in by_dir.items():
            listed = self._list(directory) or {}
            for key in members:
                # A key absent from the listing is confirmed by HEAD: a listing may be refused or stale.
                info = listed.get(self._object(key)) or self._head(key)
                if info is not None:
                    infos[key] = info
        return infos

    def checks(self, key: str, info: ObjectInfo) -> list[Check]:
        """The ETag (single-part: MD5; multipart: MD5 of the part MD5s) and any additional checksums S3 holds
        for the object (one HEAD, two for a multipart object: its first part's size is the part size)."""
        from botocore.exceptions import BotoCoreError, ClientError

        found = super().checks(key, info)
        multipart = MULTIPART_ETAG.fullmatch(info.etag or "")
        part_size = None
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key), ChecksumMode="ENABLED")
        except ClientError as exc:
            raise self._error(exc, key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, key) from exc
        if multipart:
            try:
                first = self.client.head_object(Bucket=self.bucket, Key=self._object(key), PartNumber=1)
                part_size = int(first["ContentLength"])
            except (ClientError, BotoCoreError, KeyError, ValueError):
                part_size = None  # a server without part HEADs: the common part sizes are tried instead
        if _unquote(head.get("ETag")) != info.etag:
            raise TransientError(f"{self.url_of(key)}: the object changed while it was being fetched "
                                 f"(ETag {info.etag} -> {_unquote(head.get('ETag'))})")
        sizes = part_size_candidates(info.size, int(multipart.group(2)), part_size) if multipart else ()
        if multipart and sizes:
            found.append(Check("etag", "multipart ETag", "md5", info.etag, sizes))
        kind = head.get("ChecksumType")  # COMPOSITE or FULL_OBJECT where S3 says; older objects: absent
        for field, algorithm in (("ChecksumSHA256", "sha256"), ("ChecksumSHA1", "sha1"), ("ChecksumCRC32", "crc32")):
            value = head.get(field)
            if not value:
                continue
            suffixed = re.fullmatch(r"(.+)-(\d+)", value)
            # SHA checksums of a multipart object are always composite (checksum of the part checksums); a CRC
            # of one may be either, and without ChecksumType there is no telling: the ETag check covers it.
            if suffixed or kind == "COMPOSITE" or (multipart and algorithm != "crc32" and kind != "FULL_OBJECT"):
                if not sizes:
                    continue  # a composite checksum of unknown part size cannot be recomputed
                parts = suffixed.group(2) if suffixed else multipart.group(2) if multipart else None
                if parts is None:
                    continue
                base = suffixed.group(1) if suffixed else value
                found.append(Check(algorithm, f"S3 {field}", algorithm, f"{base}-{parts}", sizes))
            elif multipart and kind is None:
                continue
            else:
                found.append(Check(algorithm, f"S3 {field}", algorithm, value))
        return found

    def read(self, key: str, offset: int, end: int | None = None) -> tuple[int, Iterator[bytes]]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"Bucket": self.bucket, "Key": self._object(key)}
        if offset or end is not None:
            kwargs["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        try:
            response = self.client.get_object(**kwargs)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                raise MissingKeyError([(self, key)]) from exc
            raise self._error(exc, key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, key) from exc
        start = offset if offset and response.get("ContentRange", "").startswith(f"bytes {offset}-") else 0
        return start, self._chunks(response["Body"], key)

    def _chunks(self, body, key: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except Exception as exc:  # noqa: BLE001 - translated: a broken stream is transient
            raise self._error(exc, key) from exc
        finally:
            body.close()


class FileSource(Source):
    """``file://PATH``: a directory in the bucket layout (relative paths are relative to the working directory)."""

    def __init__(self, url: str, setting: str):
        if not url.startswith("file://") or len(url) == len("file://"):
            raise FetchError(f"{setting}: {url!r} is not a file:// URL; expected file://PATH")
        self.url, self.setting = url, setting
        self.root = Path(url[len("file://"):])
        if not self.root.is_dir():
            raise FetchError(f"{setting}: {url!r}: directory {self.root.resolve()} does not exist "
                             "(expected a directory laid out like the NSD bucket)")

    def stat(self, keys: list[str]) -> dict[str, ObjectInfo]:
        infos = {}
        for key in keys:
            path = self.root / key
            if path.is_file():
                st = path.stat()
                infos[key] = ObjectInfo(st.st_size, f"mtime:{st.st_mtime_ns}")
        return infos

    def read(self, key: str, offset: int, end: int | None = None) -> tuple[int, Iterator[bytes]]:
        path = self.root / key
        if not path.is_file():
            raise MissingKeyError([(self, key)])
        return offset, self._chunks(path, offset, end)

    def checks(self, key: str, info: ObjectInfo) -> list[Check]:
        """The MD5 of the source file's own bytes (read once more: a local source has no stored checksum)."""
        from .store import md5_file

        path = self.root / key
        if not path.is_file():
            raise MissingKeyError([(self, key)])
        if path.stat().st_size != info.size:
            raise FetchError(f"{self.url_of(key)}: the source file changed while it was being fetched "
                             f"({info.size} -> {path.stat().st_size} bytes)")
        return [Check("source-md5", "MD5 of the source file", "md5", md5_file(path))]

    @staticmethod
    def _chunks(path: Path, offset: int, end: int | None) -> Iterator[bytes]:
        with open(path, "rb") as fh:
            fh.seek(offset)
            left = None if end is None else max(0, end - offset)
            while (left is None or left > 0) and (chunk := fh.read(CHUNK if left is None else min(CHUNK, left))):
                if left is not None:
                    left -= len(chunk)
                yield chunk


class HttpSource(Source):
    """``https://prefix`` (or ``http://``): HEAD for sizes, ranged GETs for bytes."""

    def __init__(self, url: str, setting: str):
        if not re.match(r"https?://[^/]+", url):
            raise FetchError(f"{setting}: {url!r} is not an HTTP(S) URL; expected https://host/prefix")
        self.url, self.setting = url, setting

    def _open(self, key: str, method: str = "GET", headers: dict | None = None):
        request = urllib.request.Request(self.url_of(key), method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise MissingKeyError([(self, key)]) from exc
            if exc.code >= 500 or exc.code == 429:
                raise TransientError(f"{self.url_of(key)}: HTTP {exc.code} {exc.reason}") from exc
            raise FetchError(f"{self.url_of(key)} ({self.setting}): HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise TransientError(f"{self.url_of(key)}: {type(exc).__name__}: {exc}") from exc

    def stat(self, keys: list[str]) -> dict[str, ObjectInfo]:
        infos = {}
        for key in keys:
            try:
                with self._open(key, "HEAD") as response:
                    length = response.headers.get("Content-Length")
                    if length is None:
                        raise FetchError(f"{self.url_of(key)} ({self.setting}): the server sent no Content-Length, "
                                         "so the download cannot be verified")
                    infos[key] = ObjectInfo(int(length), _unquote(response.headers.get("ETag")))
            except MissingKeyError:
                continue
        return infos

    def read(self, key: str, offset: int, end: int | None = None) -> tuple[int, Iterator[bytes]]:
        ranged = offset or end is not None
        response = self._open(key, headers={"Range": f"bytes={offset}-{'' if end is None else end - 1}"}
                              if ranged else {})
        start = offset if offset and response.status == 206 else 0
        return start, self._chunks(response, key)

    def _chunks(self, response, key: str) -> Iterator[bytes]:
        try:
            while chunk := response.read(CHUNK):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(f"{self.url_of(key)}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()


def _is_transient(exc: Exception) -> bool:
    """Network-level failures (connection refused/reset/closed, timeouts, truncated bodies)."""
    import botocore.exceptions as bex
    import urllib3.exceptions

    return isinstance(exc, (bex.ConnectionError, bex.ResponseStreamingError, bex.IncompleteReadError,
                            urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError,
                            TimeoutError, OSError))


def open_source(url: str, setting: str, *, endpoint_url: str | None = None, region: str | None = None,
                allow_http: bool = False) -> Source:
    """The source a config value names. ``setting`` (e.g. ``'nsd.source'``) is quoted in every error."""
    if url.startswith("s3://"):
        return S3Source(url, setting, endpoint_url, region)
    if url.startswith("file://"):
        return FileSource(url, setting)
    if allow_http and re.match(r"https?://", url):
        return HttpSource(url, setting)
    expected = "s3://bucket[/prefix], file://PATH" + (" or https://host/prefix" if allow_http else "")
    raise FetchError(f"{setting}: unsupported source {url!r}; expected {expected}")

