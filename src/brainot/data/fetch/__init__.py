"""Verified, resumable fetch of the NSD keys the config needs (``python -m brainot.data.fetch --help``).

``nsd.source`` is ``s3://bucket[/prefix]`` (anonymous reads, optional ``nsd.endpoint_url``) or ``file://PATH``
(a directory in the bucket layout); the COCO caption files come from ``nsd.captions_source`` (empty: the
NSD source itself). Keys land under ``nsd.dir`` in the bucket's layout, each one verified before use, with a
manifest per group. See ``docs/fetch.md``.
"""

from .fetcher import Stats, describe, fetch, human, plan
from .sources import FetchError, MissingKeyError, ObjectInfo, TransientError, open_source
from .store import MANIFEST_COLUMNS, Record, read_records

__all__ = ["FetchError", "MANIFEST_COLUMNS", "MissingKeyError", "ObjectInfo", "Record", "Stats", "TransientError",
           "describe", "fetch", "human", "open_source", "plan", "read_records"]
