"""The NSD bucket's key layout: one place that names every file the pipeline reads.

Facts from ``docs/nsd.md``. The simulator writes these keys, the fetcher downloads them and the
extractor reads them, so the three can never disagree about a path.
"""

from __future__ import annotations

ROI_FILES = ("nsdgeneral", "prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words")
FAMILY_FILES = ROI_FILES[1:]
COCO_SPLITS = ("train2017", "val2017")

EXPDESIGN = "nsddata/experiments/nsd/nsd_expdesign.mat"
STIM_INFO = "nsddata/experiments/nsd/nsd_stim_info_merged.csv"
STIMULI = "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
CAPTIONS_DIR = "nsddata_stimuli/stimuli/nsd/annotations"


def subj(subject: int | str) -> str:
    """``1 -> 'subj01'``; a string (``'subj01'``, or a Snakemake pattern ``'{subject}'``) passes through."""
    if isinstance(subject, str):
        return subject
    return f"subj{int(subject):02d}"


def subject_number(name: str) -> int:
    """``'subj01' -> 1``."""
    if not (name.startswith("subj") and name[4:].isdigit()):
        raise ValueError(f"not a subject name: {name!r} (expected e.g. 'subj01')")
    return int(name[4:])


def betas(subject: int | str, session: int, beta_version: str = "betas_fithrf_GLMdenoise_RR",
          space: str = "func1pt8mm") -> str:
    return f"nsddata_betas/ppdata/{subj(subject)}/{space}/{beta_version}/betas_session{session:02d}.hdf5"


def roi(subject: int | str, name: str, space: str = "func1pt8mm") -> str:
    return f"nsddata/ppdata/{subj(subject)}/{space}/roi/{name}.nii.gz"


def ctab(subject: int | str, name: str) -> str:
    return f"nsddata/freesurfer/{subj(subject)}/label/{name}.mgz.ctab"


def valid_session(subject: int | str, session: int, space: str = "func1pt8mm") -> str:
    return f"nsddata/ppdata/{subj(subject)}/{space}/valid_session{session:02d}.nii.gz"


def valid_mean(subject: int | str, space: str = "func1pt8mm") -> str:
    return f"nsddata/ppdata/{subj(subject)}/{space}/valid.nii.gz"


def captions(split: str) -> str:
    """COCO caption file name, relative to the captions source (``nsd.captions_source``)."""
    if split not in COCO_SPLITS:
        raise ValueError(f"unknown COCO split {split!r}; expected one of {COCO_SPLITS}")
    return f"captions_{split}.json"


def sessions(nsd: dict) -> list[int]:
    """The configured sessions, 1-based, inclusive."""
    first, last = nsd["sessions"]["first"], nsd["sessions"]["last"]
    return list(range(first, last + 1))


def shared_keys() -> list[str]:
    """Keys every subject needs (design, stimulus table, stimuli)."""
    return [EXPDESIGN, STIM_INFO, STIMULI]


def subject_keys(nsd: dict, subject: int | str, families: list[str] | None = None) -> list[str]:
    """Keys one subject needs: betas and validity masks of the used sessions, ROI volumes and their ctabs.

    ``nsd`` is the validated ``nsd:`` config section; ``families`` the ROI files of the configured
    families (default: all five). nsdgeneral has no ctab (its label 1 is the mask).
    """
    files = list(FAMILY_FILES if families is None else families)
    keys = []
    for session in sessions(nsd):
        keys.append(betas(subject, session, nsd["beta_version"], nsd["space"]))
        keys.append(valid_session(subject, session, nsd["space"]))
    keys.append(valid_mean(subject, nsd["space"]))
    keys.append(roi(subject, "nsdgeneral", nsd["space"]))
    for name in files:
        keys.append(roi(subject, name, nsd["space"]))
        keys.append(ctab(subject, name))
    return keys


def caption_keys() -> list[str]:
    return [captions(split) for split in COCO_SPLITS]
