"""NSD's experiment design: which image each trial showed, and the UMBRAE/MindEye train/test split.

Facts from ``docs/nsd.md``. ``nsd_expdesign.mat`` holds 1-based indices:

- global trial ``t`` (0-based) of session ``s`` (1-based) is ``(s - 1) * T + i``, ``i`` the trial within the
  session and ``T`` the trials per session (750 on NSD; the simulated mini-NSD uses fewer);
- its 0-based 10k-index is ``masterordering[t] - 1`` (one ordering serves every subject);
- subject ``n``'s 0-based nsdId for it is ``subjectim[n - 1, masterordering[t] - 1] - 1``;
- the first ``len(sharedix)`` 10k-indices are the images every subject saw (the shared 1000 on NSD).

The split (UMBRAE, MindEye1): over the configured sessions, test = the shared images seen in them,
train = every other image seen in them; one sample per image with its (up to) 3 repeats, in ascending nsdId.
On the real design, sessions 1-37 give 982 test / 8859 train images for subjects 1, 2, 5, 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_REPEATS = 3
SPLITS = ("train", "test")


class DesignError(ValueError):
    """The design files are missing a key or disagree with each other; the message names the file."""


@dataclass(frozen=True)
class Design:
    """The experiment design with every index made 0-based.

    masterordering: (n_trials,) int64, the 10k-index of each global trial.
    subjectim: (n_subjects, n_images) int64, the nsdId of each subject's 10k-index.
    n_shared: the number of shared images (``len(sharedix)``): 10k-indices below it are shared.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    n_shared: int
    path: str = "<memory>"

    def n_sessions(self, trials_per_session: int) -> int:
        """Sessions the design holds at ``trials_per_session`` trials each; raises if it does not divide."""
        n_trials = len(self.masterordering)
        if trials_per_session < 1 or n_trials % trials_per_session:
            raise DesignError(f"{self.path}: masterordering has {n_trials} trials, not a whole number of sessions "
                              f"of {trials_per_session} trials (the betas files' first axis)")
        return n_trials // trials_per_session


def _vector(mat: dict, key: str, path: str) -> np.ndarray:
    if key not in mat:
        raise DesignError(f"{path}: key {key!r} missing (expected the NSD expdesign keys masterordering, "
                          "subjectim, sharedix)")
    return np.asarray(mat[key])


def load_expdesign(path: str | Path) -> Design:
    """Read ``nsd_expdesign.mat`` (MATLAB v5) and convert its 1-based indices to 0-based."""
    from scipy.io import loadmat

    path = str(path)
    try:
        mat = loadmat(path)
    except (OSError, ValueError) as exc:
        raise DesignError(f"{path}: not a readable MATLAB file ({exc})") from None
    order = _vector(mat, "masterordering", path).astype(np.int64).ravel()
    subjectim = _vector(mat, "subjectim", path).astype(np.int64)
    sharedix = _vector(mat, "sharedix", path).ravel()
    if subjectim.ndim != 2:
        raise DesignError(f"{path}: subjectim has shape {subjectim.shape}, expected (subjects, images)")
    n_images = subjectim.shape[1]
    if order.size == 0 or order.min() < 1 or order.max() > n_images:
        raise DesignError(f"{path}: masterordering values must be 1-based 10k-indices in 1..{n_images} "
                          f"(got {order.min() if order.size else 'none'}..{order.max() if order.size else 'none'})")
    if subjectim.min() < 1:
        raise DesignError(f"{path}: subjectim values must be 1-based nsdIds (got a minimum of {subjectim.min()})")
    n_shared = len(sharedix)
    if not 0 < n_shared <= n_images:
        raise DesignError(f"{path}: sharedix has {n_shared} entries, expected 1..{n_images}")
    return Design(masterordering=order - 1, subjectim=subjectim - 1, n_shared=n_shared, path=path)


def session_trials(design: Design, sessions: list[int], trials_per_session: int) -> np.ndarray:
    """Global 0-based trial indices of ``sessions`` (1-based), session by session. Shape (len(sessions) * T,)."""
    available = design.n_sessions(trials_per_session)
    outside = [s for s in sessions if not 1 <= s <= available]
    if outside:
        raise DesignError(f"{design.path}: sessions {outside} are outside the design's 1..{available} "
                          f"(at {trials_per_session} trials per session)")
    return np.concatenate([np.arange((s - 1) * trials_per_session, s * trials_per_session) for s in sessions])


def trial_nsd_ids(design: Design, subject: int, trials: np.ndarray) -> np.ndarray:
    """0-based nsdId shown to ``subject`` (1-based) on each global 0-based trial. Shape like ``trials``."""
    if not 1 <= subject <= design.subjectim.shape[0]:
        raise DesignError(f"{design.path}: subject {subject} is outside subjectim's 1..{design.subjectim.shape[0]}")
    return design.subjectim[subject - 1, design.masterordering[trials]]


@dataclass(frozen=True)
class Samples:
    """One split: one sample per image, its trials as rows of ``trials``.

    nsd_id: (N,) int64, ascending. trials: (N, 3) int64 global trial indices; an image seen fewer than
    3 times has its real trials repeated cyclically (MindEye's fill), ``n_reps`` (N,) gives the real count.
    """

    nsd_id: np.ndarray
    trials: np.ndarray
    n_reps: np.ndarray

    def __len__(self) -> int:
        return len(self.nsd_id)


def group_repeats(trials: np.ndarray, nsd_id: np.ndarray, max_repeats: int = MAX_REPEATS) -> Samples:
    """Group trials by image: one row per distinct ``nsd_id`` (ascending), repeats in trial order.

    ``trials`` and ``nsd_id`` are parallel (n,) arrays. Rows with fewer than ``max_repeats`` trials repeat
    the real ones cyclically (``[a, b] -> [a, b, a]``); an image seen more often than ``max_repeats`` is an error.
    """
    trials = np.asarray(trials, dtype=np.int64)
    nsd_id = np.asarray(nsd_id, dtype=np.int64)
    order = np.lexsort((trials, nsd_id))
    ids, start, counts = np.unique(nsd_id[order], return_index=True, return_counts=True)
    if counts.size and counts.max() > max_repeats:
        bad = ids[counts > max_repeats][:5].tolist()
        raise DesignError(f"images {bad} are shown more than {max_repeats} times in the selected trials")
    # Position k of a row takes the (k mod n_reps)-th real repeat.
    slot = np.arange(max_repeats)[None, :] % counts[:, None]
    rows = trials[order][start[:, None] + slot]
    return Samples(nsd_id=ids, trials=rows, n_reps=counts.astype(np.int64))


def split(design: Design, subject: int, sessions: list[int], trials_per_session: int) -> dict[str, Samples]:
    """UMBRAE's split over ``sessions``: ``{'train': Samples, 'test': Samples}``.

    test = the shared images (10k-index < ``len(sharedix)``) seen in the sessions, train = all other images
    seen in them; both in ascending nsdId.
    """
    trials = session_trials(design, sessions, trials_per_session)
    nsd_id = trial_nsd_ids(design, subject, trials)
    shared = design.masterordering[trials] < design.n_shared
    return {"train": group_repeats(trials[~shared], nsd_id[~shared]),
            "test": group_repeats(trials[shared], nsd_id[shared])}


def check_stim_info(path: str | Path, subject: int, trials: np.ndarray, nsd_id: np.ndarray,
                    shared_ids: np.ndarray | None = None) -> None:
    """Check the stimulus table agrees with the design on every given trial; raise :class:`DesignError` if not.

    ``nsd_stim_info_merged.csv`` lists, per nsdId, ``subject{n}_rep{0,1,2}`` = the 1-based global trial of each
    presentation (0 = not shown). Each trial in ``trials`` (0-based) must appear on the row of its ``nsd_id``.
    ``shared_ids``, when given, must all be flagged ``shared1000``.
    """
    import pandas as pd

    path = str(path)
    columns = [f"subject{subject}_rep{k}" for k in range(MAX_REPEATS)]
    try:
        table = pd.read_csv(path, index_col=0)
    except (OSError, ValueError) as exc:
        raise DesignError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in columns + ["nsdId"] if c not in table.columns]
    if missing:
        raise DesignError(f"{path}: columns {missing} missing (expected NSD's stimulus table)")
    if not np.array_equal(table["nsdId"].to_numpy(), np.arange(len(table))):
        raise DesignError(f"{path}: row i must have nsdId == i (read with index_col=0)")
    reps = table[columns].to_numpy(dtype=np.int64)
    trials = np.asarray(trials, dtype=np.int64)
    nsd_id = np.asarray(nsd_id, dtype=np.int64)
    image_of_trial = np.full(max(int(reps.max()), int(trials.max()) + 1) + 1, -1, dtype=np.int64)
    images, _ = np.nonzero(reps)
    image_of_trial[reps[reps > 0] - 1] = images
    listed = image_of_trial[trials]
    disagree = np.flatnonzero(listed != nsd_id)
    if disagree.size:
        i = disagree[0]
        raise DesignError(f"{path}: {disagree.size} trials of subject {subject} disagree with the expdesign, e.g. "
                          f"0-based trial {trials[i]}: expdesign says nsdId {nsd_id[i]}, {', '.join(columns)} "
                          f"say {listed[i] if listed[i] >= 0 else 'no image'}")
    if shared_ids is not None and "shared1000" in table.columns:
        from brainot.data.coco import CaptionError, shared1000

        try:
            flags = shared1000(table, path)[shared_ids]
        except CaptionError as exc:
            raise DesignError(str(exc)) from None
        if not np.all(flags):
            bad = shared_ids[~flags][:5].tolist()
            raise DesignError(f"{path}: shared images {bad} (by the expdesign's sharedix) are not flagged shared1000")
