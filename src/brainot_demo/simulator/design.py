"""The simulated trial design (``nsd_expdesign.mat``) and stimulus table (``nsd_stim_info_merged.csv``).

Conventions are NSD's (``docs/nsd.md``): every index in the design is 1-based; ``masterordering`` is one
sequence of 10k-indices shared by all subjects; the first ``len(sharedix)`` 10k-indices are the shared
images, identical for every subject; the stimulus table's ``subject{s}_rep{r}`` columns hold the 1-based
global trial number of the r-th presentation (0 = not shown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

N_SUBJECTS = 8          # NSD's design always has 8 subjects, whichever ones get files
MAX_SESSIONS = 40       # NSD's longest subjects; the bucket keys have two-digit session numbers
RUNS_PER_SESSION = 12   # NSD: 12 runs per session, 75 slots each, 62-63 of them stimulus trials
SLOTS_PER_STIMULUS = 75 / 62.5
COCO_ID_MAX = 581929    # largest COCO 2017 image id


class DesignError(ValueError):
    """The synthetic sizes do not make a valid NSD-like design; the message names the key."""


@dataclass(frozen=True)
class Design:
    """The design of the simulated experiment (arrays 1-based as in ``nsd_expdesign.mat``).

    masterordering: (T,) 10k-index shown at each global trial, T = images_per_subject * repeats.
    subjectim: (8, images_per_subject) nsdId (1-based) of each subject's 10k-index.
    sharedix: (n_shared,) nsdIds (1-based, ascending) of the shared images.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray
    n_images: int
    n_sessions: int
    trials_per_session: int
    repeats: int

    @property
    def n_trials(self) -> int:
        return self.masterordering.size

    def trial_nsd_ids(self, subject: int) -> np.ndarray:
        """(T,) 0-based nsdId of every global trial of ``subject`` (1..8)."""
        return self.subjectim[subject - 1, self.masterordering - 1] - 1

    def session_trials(self, session: int) -> slice:
        """Global (0-based) trial indices of a 1-based session."""
        n = self.trials_per_session
        return slice((session - 1) * n, session * n)


def n_sessions(synthetic: dict) -> int:
    """Sessions the design implies: images_per_subject * repeats / trials_per_session (must divide)."""
    n_trials = synthetic["images_per_subject"] * synthetic["repeats"]
    per_session = synthetic["trials_per_session"]
    if n_trials % per_session:
        raise DesignError(
            f"synthetic.trials_per_session: {per_session} does not divide images_per_subject * repeats = "
            f"{synthetic['images_per_subject']} * {synthetic['repeats']} = {n_trials}; the design needs whole sessions")
    sessions = n_trials // per_session
    if sessions > MAX_SESSIONS:
        raise DesignError(f"synthetic: images_per_subject * repeats / trials_per_session = {sessions} sessions; "
                          f"NSD has at most {MAX_SESSIONS} (raise trials_per_session)")
    return sessions


def n_images(synthetic: dict) -> int:
    """Size of the 73k-analogue: the shared images plus 8 subjects' unique ones (1000 + 8 * 9000 in NSD)."""
    return synthetic["n_shared"] + N_SUBJECTS * (synthetic["images_per_subject"] - synthetic["n_shared"])


def make_design(synthetic: dict, rng: np.random.Generator) -> Design:
    """Draw the design: which nsdIds each subject sees and the shared order of the trials."""
    per_subject, n_shared, repeats = synthetic["images_per_subject"], synthetic["n_shared"], synthetic["repeats"]
    if n_shared > per_subject:
        raise DesignError(f"synthetic.n_shared: {n_shared} exceeds images_per_subject ({per_subject})")
    sessions = n_sessions(synthetic)
    total = n_images(synthetic)
    ids = rng.permutation(total)
    shared = np.sort(ids[:n_shared])
    unique = ids[n_shared:].reshape(N_SUBJECTS, per_subject - n_shared)
    subjectim = np.concatenate([np.broadcast_to(shared, (N_SUBJECTS, n_shared)), unique], axis=1) + 1
    # NSD shows each image `repeats` times in a random order spread over the sessions
    masterordering = rng.permutation(np.repeat(np.arange(1, per_subject + 1), repeats))
    return Design(masterordering=masterordering, subjectim=subjectim, sharedix=shared + 1, n_images=total,
                  n_sessions=sessions, trials_per_session=synthetic["trials_per_session"], repeats=repeats)


def stimpattern(design: Design, rng: np.random.Generator) -> np.ndarray:
    """(sessions, runs, slots) 0/1: which slots of each run show a stimulus (the rest are blanks).

    NSD: 12 runs of 75 slots with 62 or 63 stimulus trials; here the trials of a session are split over
    up to 12 runs and each run gets blank slots in NSD's proportion.
    """
    n = design.trials_per_session
    runs = min(RUNS_PER_SESSION, n)
    per_run = np.array([len(a) for a in np.array_split(np.arange(n), runs)])
    slots = int(np.ceil(per_run.max() * SLOTS_PER_STIMULUS))
    pattern = np.zeros((design.n_sessions, runs, slots))
    for s in range(design.n_sessions):
        for r in range(runs):
            pattern[s, r, np.sort(rng.choice(slots, per_run[r], replace=False))] = 1
    return pattern


def occurrence(design: Design) -> np.ndarray:
    """(T,) 0-based presentation number of each trial's image (0 = first time it is shown)."""
    order = design.masterordering
    out = np.zeros(order.size, dtype=np.int64)
    seen: dict[int, int] = {}
    for t, index in enumerate(order.tolist()):
        out[t] = seen.get(index, 0)
        seen[index] = out[t] + 1
    return out


def basiccnt(design: Design) -> np.ndarray:
    """(3, sessions): trials of each session that are an image's 1st, 2nd, 3rd presentation."""
    occ = occurrence(design).reshape(design.n_sessions, design.trials_per_session)
    return np.stack([(occ == r).sum(axis=1) for r in range(3)]).astype(float)


def expdesign_arrays(design: Design, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The variables of ``nsd_expdesign.mat``, shaped as NSD's and stored as MATLAB doubles."""
    return {
        "masterordering": design.masterordering[None, :].astype(float),
        "subjectim": design.subjectim.astype(float),
        "sharedix": design.sharedix[None, :].astype(float),
        "stimpattern": stimpattern(design, rng),
        "basiccnt": basiccnt(design),
    }


def stim_info(design: Design, rng: np.random.Generator, val_fraction: float = 0.1) -> pd.DataFrame:
    """The stimulus table: one row per nsdId (row i has nsdId i), NSD's columns in NSD's order."""
    n = design.n_images
    coco_ids = rng.choice(np.arange(1, COCO_ID_MAX + 1), size=n, replace=False)
    split = np.where(rng.random(n) < val_fraction, "val2017", "train2017")
    split[rng.choice(n, 2, replace=False)] = ["train2017", "val2017"]   # both caption files are never empty
    # NSD crops the long side of a COCO image to a square: (top, bottom, left, right) fractions
    crop = rng.uniform(0, 0.2, n).round(7)
    horizontal = rng.random(n) < 0.7
    crop_box = [f"(0, 0, {c}, {c})" if h else f"({c}, {c}, 0, 0)" for c, h in zip(crop, horizontal)]
    table = {
        "cocoId": coco_ids,
        "cocoSplit": split,
        "cropBox": crop_box,
        "loss": (2 * crop).round(7),
        "nsdId": np.arange(n),
        "flagged": np.zeros(n, dtype=bool),
        "BOLD5000": rng.random(n) < 0.02,
        "shared1000": np.isin(np.arange(n), design.sharedix - 1),
    }
    seen = np.zeros((N_SUBJECTS, n), dtype=np.int64)
    for s in range(N_SUBJECTS):
        seen[s, design.subjectim[s] - 1] = 1
        table[f"subject{s + 1}"] = seen[s]
    occ = occurrence(design)
    for s in range(N_SUBJECTS):
        ids = design.trial_nsd_ids(s + 1)
        for r in range(3):
            col = np.zeros(n, dtype=np.int64)
            at = np.flatnonzero(occ == r)
            col[ids[at]] = at + 1
            table[f"subject{s + 1}_rep{r}"] = col
    return pd.DataFrame(table)
