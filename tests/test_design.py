"""The experiment design: 1-based indices, trial -> nsdId, repeat grouping and UMBRAE's split."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat

from benchmarks.extract import random_design, stim_info
from brainot.data import design as nd


def _save(tmp_path, mat: dict) -> str:
    path = tmp_path / "nsd_expdesign.mat"
    savemat(path, {k: np.asarray(v, dtype=np.float64) for k, v in mat.items()})
    return str(path)


@pytest.fixture(scope="module")
def real_size(tmp_path_factory):
    """A design of NSD's dimensions (30000 trials, 10000 images/subject, 1000 shared, 3 repeats), from disk."""
    raw = random_design(seed=1)
    path = tmp_path_factory.mktemp("design") / "nsd_expdesign.mat"
    savemat(path, {k: v.astype(np.float64) for k, v in raw.items()})
    return raw, nd.load_expdesign(path)


def test_load_converts_one_based_indices(tmp_path):
    # subject 2 sees 10k-index 3 (1-based) as nsdId 40 (1-based), i.e. 0-based 39.
    mat = {"masterordering": [[3, 1, 2, 3, 2, 1]], "subjectim": [[11, 12, 13], [20, 30, 40]], "sharedix": [[11]]}
    design = nd.load_expdesign(_save(tmp_path, mat))
    assert design.masterordering.tolist() == [2, 0, 1, 2, 1, 0]
    assert design.n_shared == 1
    assert nd.trial_nsd_ids(design, 2, np.array([0, 1, 2])).tolist() == [39, 19, 29]
    assert nd.trial_nsd_ids(design, 1, np.array([5])).tolist() == [10]


def test_load_names_file_and_key(tmp_path):
    path = _save(tmp_path, {"masterordering": [[1, 2]], "subjectim": [[1, 2]]})
    with pytest.raises(nd.DesignError, match=r"nsd_expdesign\.mat.*'sharedix'"):
        nd.load_expdesign(path)
    path = _save(tmp_path, {"masterordering": [[0, 1]], "subjectim": [[1, 2]], "sharedix": [[1]]})
    with pytest.raises(nd.DesignError, match="1-based"):
        nd.load_expdesign(path)


def test_sessions_must_fit_the_design(tmp_path):
    mat = {"masterordering": [[1, 2, 3, 1, 2, 3]], "subjectim": [[1, 2, 3]], "sharedix": [[1]]}
    design = nd.load_expdesign(_save(tmp_path, mat))
    assert nd.session_trials(design, [2, 3], 2).tolist() == [2, 3, 4, 5]
    with pytest.raises(nd.DesignError, match="not a whole number of sessions of 4"):
        nd.session_trials(design, [1], 4)
    with pytest.raises(nd.DesignError, match=r"sessions \[4\] are outside"):
        nd.session_trials(design, [3, 4], 2)


def test_group_repeats_fills_like_mindeye():
    trials = np.array([7, 3, 9, 4, 8, 5, 6])
    ids = np.array([50, 10, 50, 20, 10, 30, 10])
    samples = nd.group_repeats(trials, ids)
    assert samples.nsd_id.tolist() == [10, 20, 30, 50]
    assert samples.n_reps.tolist() == [3, 1, 1, 2]
    # repeats in trial order; fewer than 3 -> the real ones again, cyclically
    assert samples.trials.tolist() == [[3, 6, 8], [4, 4, 4], [5, 5, 5], [7, 9, 7]]


def test_group_repeats_rejects_more_than_three():
    with pytest.raises(nd.DesignError, match=r"images \[1\] are shown more than 3 times"):
        nd.group_repeats(np.arange(4), np.array([1, 1, 1, 1]))


def _independent_split(raw: dict, subject: int, last_session: int) -> tuple[dict, dict]:
    """nsdId -> trials, by a plain loop over the 1-based MATLAB arrays (no shared code with brainot.data.design)."""
    order = raw["masterordering"][0]
    shared = set(range(1, raw["sharedix"].shape[1] + 1))
    test, train = defaultdict(list), defaultdict(list)
    for trial in range(last_session * 750):
        tenk = int(order[trial])
        image = int(raw["subjectim"][subject - 1][tenk - 1]) - 1
        (test if tenk in shared else train)[image].append(trial)
    return test, train


@pytest.mark.parametrize("subject,last", [(1, 37), (5, 40), (7, 20)])
def test_split_counts_match_an_independent_count(real_size, subject, last):
    raw, design = real_size
    splits = nd.split(design, subject, list(range(1, last + 1)), 750)
    test, train = _independent_split(raw, subject, last)
    for name, expected in (("test", test), ("train", train)):
        samples = splits[name]
        assert samples.nsd_id.tolist() == sorted(expected)
        assert samples.n_reps.tolist() == [len(expected[i]) for i in sorted(expected)]
        assert [sorted(set(row)) for row in samples.trials.tolist()] == [expected[i] for i in sorted(expected)]
    if last == 40:  # every image seen 3 times: NSD's 1000 / 9000
        assert (len(splits["test"]), len(splits["train"])) == (1000, 9000)
        assert splits["test"].n_reps.min() == 3 and splits["train"].n_reps.min() == 3


def test_split_counts_with_pandas(real_size):
    raw, design = real_size
    frame = pd.DataFrame({"tenk": raw["masterordering"][0][: 37 * 750]})
    frame["nsd"] = raw["subjectim"][1][frame["tenk"] - 1] - 1
    frame["shared"] = frame["tenk"] <= raw["sharedix"].shape[1]
    per_split = frame.groupby("shared")["nsd"].nunique()
    splits = nd.split(design, 2, list(range(1, 38)), 750)
    assert len(splits["test"]) == per_split[True]
    assert len(splits["train"]) == per_split[False]
    assert int(splits["test"].n_reps.sum()) == int(frame["shared"].sum())
    # the shared images are the same nsdIds for every subject
    assert np.array_equal(nd.split(design, 1, list(range(1, 38)), 750)["test"].nsd_id, splits["test"].nsd_id)


def test_stim_info_cross_check(tmp_path):
    raw = random_design(seed=2, n_images=40, n_shared=10, n_subjects=2, n_nsd=200)
    design = nd.Design(raw["masterordering"][0] - 1, raw["subjectim"] - 1, 10)
    table = stim_info(raw, n_nsd=200)
    path = tmp_path / "nsd_stim_info_merged.csv"
    table.to_csv(path)
    trials = np.arange(120)
    ids = nd.trial_nsd_ids(design, 2, trials)
    nd.check_stim_info(path, 2, trials, ids, shared_ids=np.unique(ids[design.masterordering < 10]))
    with pytest.raises(nd.DesignError, match=r"nsd_stim_info_merged\.csv: \d+ trials of subject 1 disagree"):
        nd.check_stim_info(path, 1, trials, ids)
    swapped = ids.copy()
    j = int(np.flatnonzero(ids != ids[4])[-1])
    swapped[[4, j]] = swapped[[j, 4]]
    with pytest.raises(nd.DesignError, match="2 trials of subject 2 disagree.*trial 4: expdesign says nsdId"):
        nd.check_stim_info(path, 2, trials, swapped)
