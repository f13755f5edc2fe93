"""Which keys a fetch group needs and which source each comes from, computed from the config.

Groups: ``shared`` (design, stimulus table, stimuli and the two COCO caption files), ``subjNN`` (one
subject's betas, validity masks, ROI volumes and colour tables) and ``all`` (``shared`` and every subject
of ``nsd.subjects``). The key list comes from :mod:`brainot.data.layout`, the one place that names bucket keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from brainot.data import coco, layout
from .sources import FetchError, Source, open_source


@dataclass(frozen=True)
class Wanted:
    """One key of a group: ``key`` is where it lives under ``nsd.dir``, ``remote`` its name in ``source``."""

    group: str
    key: str
    source: Source
    remote: str


def group_names(nsd: dict, group: str) -> list[str]:
    """``'all'`` -> ``['shared', 'subj01', ...]``; a subject must be one of ``nsd.subjects``."""
    subjects = [layout.subj(s) for s in nsd["subjects"]]
    if group == "all":
        return ["shared", *subjects]
    if group == "shared":
        return ["shared"]
    try:
        layout.subject_number(group)
    except ValueError:
        raise FetchError(f"--group {group!r}: expected 'shared', 'all' or a subject such as 'subj01'") from None
    if group not in subjects:
        raise FetchError(f"--group {group}: not one of nsd.subjects ({', '.join(subjects)})")
    return [group]


def check_families(families: list[str] | None) -> list[str] | None:
    if families is None:
        return None
    unknown = [f for f in families if f not in layout.FAMILY_FILES]
    if unknown:
        raise FetchError(f"--families: unknown ROI file(s) {unknown}; expected some of {list(layout.FAMILY_FILES)}")
    return list(families)


def open_sources(nsd: dict) -> tuple[Source, Source, str]:
    """The NSD source, the captions source and the captions' key prefix within it (``''`` for a separate
    captions source; :data:`layout.CAPTIONS_DIR` when the captions come from the NSD source itself)."""
    s3 = {"endpoint_url": nsd.get("endpoint_url"), "region": nsd.get("region")}
    nsd_source = open_source(nsd["source"], "nsd.source", **s3)
    captions = coco.fetch_view(nsd).get("captions_source") or ""
    if not captions:
        return nsd_source, nsd_source, f"{layout.CAPTIONS_DIR}/"
    return nsd_source, open_source(captions, "nsd.captions_source", allow_http=True, **s3), ""


NSD_KEYS = ("source", "dir", "subjects", "sessions", "space", "beta_version")


def check_nsd(nsd: dict) -> dict:
    """The fetch reads these keys of the (schema-validated, defaults-filled) ``nsd:`` section."""
    if not isinstance(nsd, dict):
        raise FetchError(f"--nsd: expected the nsd: config section as a JSON object, got {type(nsd).__name__}")
    absent = [k for k in NSD_KEYS if k not in nsd]
    if absent:
        raise FetchError(f"--nsd: no {', '.join(absent)}; expected the validated nsd: config section "
                         "(as the rules pass it), or use --config")
    return nsd


def wanted(nsd: dict, families: list[str] | None, group: str) -> list[Wanted]:
    """Every key of ``group`` (``shared``, ``subjNN`` or ``all``), in a stable order."""
    names = group_names(check_nsd(nsd), group)
    families = check_families(families)
    nsd_source, captions_source, captions_prefix = open_sources(nsd)
    items = []
    for name in names:
        if name == "shared":
            items += [Wanted(name, key, nsd_source, key) for key in layout.shared_keys()]
            items += [Wanted(name, f"{layout.CAPTIONS_DIR}/{file}", captions_source, f"{captions_prefix}{file}")
                      for file in layout.caption_keys()]
        else:
            subject = layout.subject_number(name)
            items += [Wanted(name, key, nsd_source, key) for key in layout.subject_keys(nsd, subject, families)]
    return items
