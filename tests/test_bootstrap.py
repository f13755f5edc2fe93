"""The paired bootstrap (brainot.tables.bootstrap) and the per-image scores file it reads (brainot.scoring.image_scores):
coverage on a synthetic normal sample, pairing, determinism per seed, BLEU recomputed from per-image statistics
against pycocoevalcap's Bleu on the same (and on explicitly resampled) captions, and the file round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainot.scoring import image_scores as IS
from brainot.tables import bootstrap as B

# Tokenized captions (lower case, no punctuation: what the PTB tokenizer hands pycocoevalcap's scorers).
RES = {0: ["a man riding a brown horse"], 1: ["two dogs play in the snow"], 2: ["a plate of food with broccoli"],
       3: ["a red bus"], 4: ["the kitchen s counter has a sink next to a window and a stove"],
       5: ["a cat a cat sitting on a sofa"]}
GTS = {0: ["a man rides a brown horse", "a person on a horse in a field"],
       1: ["two dogs playing in snow", "dogs run through the snow", "a pair of dogs in the snow"],
       2: ["a plate with food on it", "food and broccoli on a white plate"],
       3: ["a red double decker bus on a street", "a bus parked by the curb in a city"],
       4: ["a kitchen with a sink and a counter", "the kitchen counter is clean"],
       5: ["a cat sitting on a couch", "a grey cat on a sofa", "cat on couch"]}


def pycoco_bleu(res, gts):
    from pycocoevalcap.bleu.bleu import Bleu

    return np.array(Bleu(4).compute_score(gts, res, verbose=0)[0])


def test_bleu_from_statistics_equals_pycocoevalcap_on_identity_and_resamples():
    stats = IS.bleu_stats(RES, GTS)
    assert stats.shape == (6, len(IS.BLEU_STATS))
    counts, seed_index = B.identity_plan(6)
    assert np.allclose(B.bleu_replicates(stats[None], counts, seed_index)[0], pycoco_bleu(RES, GTS), rtol=0, atol=1e-12)
    # a resample is the corpus of the drawn captions, each as often as drawn (image 3 is short: brevity penalty)
    counts, seed_index = B.plan(6, 1, 5, seed=3)
    reps = B.bleu_replicates(stats[None], counts, seed_index)
    for b in range(5):
        drawn = np.repeat(np.arange(6), counts[b].astype(int))
        expected = pycoco_bleu({j: RES[i] for j, i in enumerate(drawn)}, {j: GTS[i] for j, i in enumerate(drawn)})
        assert np.allclose(reps[b], expected, rtol=0, atol=1e-12), b
    assert len({tuple(r) for r in reps.round(12)}) > 1


def test_plan_is_deterministic_per_seed():
    a, sa = B.plan(50, 3, 200, seed=7)
    b, sb = B.plan(50, 3, 200, seed=7)
    c, sc = B.plan(50, 3, 200, seed=8)
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    assert not np.array_equal(a, c)
    assert (a.sum(axis=1) == 50).all() and set(np.unique(sa)) == {0, 1, 2}


def test_percentile_interval_covers_the_mean_of_a_normal_sample():
    rng = np.random.default_rng(0)
    trials, n = 300, 40
    hits = 0
    for t in range(trials):
        x = rng.normal(5.0, 2.0, size=n)
        counts, seed_index = B.plan(n, 1, 1000, seed=t)
        lo, hi = B.percentile_interval(B.weighted_mean(x[None], counts, seed_index))
        hits += lo <= 5.0 <= hi
    # nominal 0.95; the percentile interval of a mean of 40 undercovers slightly (about 0.93);
    # 300 trials: binomial sd 0.013
    assert 0.89 <= hits / trials <= 0.98, hits / trials


def test_paired_differences_cancel_the_image_variance():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(0, 10, size=200)            # images differ a lot; the runs differ by 0.5 +- 0.5
    a = difficulty + 0.5 + rng.normal(0, 0.5, size=200)
    b = difficulty
    counts, seed_index = B.plan(200, 1, 2000, seed=0)
    ra, rb = B.weighted_mean(a[None], counts, seed_index), B.weighted_mean(b[None], counts, seed_index)
    lo, hi = B.percentile_interval(ra - rb)
    assert 0 < lo < 0.5 < hi < 1.0
    assert B.p_value(ra - rb) == pytest.approx(2 / 2001)
    # unpaired (independent resamples of each side) the same difference is far from significant
    other, _ = B.plan(200, 1, 2000, seed=1)
    lo_u, hi_u = B.percentile_interval(ra - B.weighted_mean(b[None], other, seed_index))
    assert lo_u < 0 < hi_u
    # a run against itself: every replicate of the difference is exactly 0
    assert np.array_equal(ra - ra, np.zeros(2000)) and B.p_value(ra - ra) == 1.0


def test_seeds_widen_the_interval():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, size=100)
    runs = np.stack([base + shift for shift in (0.0, 3.0)])      # two seeds, 3 apart
    counts, seed_index = B.plan(100, 2, 2000, seed=0)
    lo, hi = B.percentile_interval(B.weighted_mean(runs, counts, seed_index))
    lo1, hi1 = B.percentile_interval(B.weighted_mean(runs[:1], *B.plan(100, 1, 2000, seed=0)))
    assert lo < base.mean() and hi > base.mean() + 3 - 0.01
    assert hi - lo > 3 and hi1 - lo1 < 1


def test_nan_scores_and_missing_metrics_give_nan_intervals():
    x = np.array([[1.0, np.nan, 3.0]])
    counts = np.array([[1, 1, 1], [3, 0, 0]])
    reps = B.weighted_mean(x, counts, np.zeros(2, dtype=int))
    assert np.isnan(reps[0]) and reps[1] == 1.0
    assert np.isnan(B.percentile_interval(reps)).all() and np.isnan(B.p_value(reps))


def test_image_scores_file_round_trip_and_identity_replicates(tmp_path):
    stats = IS.bleu_stats(RES, GTS)
    table = pd.DataFrame(stats, columns=list(IS.BLEU_STATS))
    table["METEOR"] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    table["ROUGE"] = np.linspace(0.2, 0.7, 6)
    table["CIDEr"] = np.linspace(0.0, 2.5, 6)
    path = IS.write(table, IS.path_for(tmp_path / "run" / "subj01.json"), {"METEOR": 0.37})
    assert path == tmp_path / "run" / "subj01.images.parquet"
    back, corpus = IS.read(path)
    pd.testing.assert_frame_equal(back, table)
    assert corpus == {"METEOR": 0.37}
    counts, seed_index = B.identity_plan(6)
    headline = IS.corpus_scores(back, corpus)
    for metric in (*IS.BLEU_METRICS, "METEOR", "ROUGE", "CIDEr"):
        assert B.replicates([(back, corpus)], metric, counts, seed_index)[0] == pytest.approx(headline[metric],
                                                                                            abs=1e-12)
    assert headline["METEOR"] == 0.37 and headline["CIDEr"] == pytest.approx(1.25)
    assert np.isnan(B.replicates([(back, corpus)], "SPICE", counts, seed_index)).all()


def test_a_file_without_the_metadata_is_named(tmp_path):
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "bad.images.parquet")
    with pytest.raises(IS.ImageScoresError, match=r"bad.images.parquet: no 'brainot.corpus' metadata"):
        IS.read(tmp_path / "bad.images.parquet")


def test_interval_ends_settle_as_resamples_grow():
    rng = np.random.default_rng(4)
    table = pd.DataFrame(np.zeros((100, len(IS.BLEU_STATS)), dtype=np.int64), columns=list(IS.BLEU_STATS))
    table["METEOR"], table["ROUGE"], table["CIDEr"] = rng.random(100), rng.random(100), rng.exponential(0.6, 100)
    runs = [[(table, {})]]
    few, many = (max(B.end_spread(runs, ["CIDEr", "ROUGE", "SPICE"], n).values()) for n in (200, 5000))
    # Monte Carlo error of a percentile ~ 1 / sqrt(B): 25 times the resamples, about 5 times less spread
    assert many < few / 2.5 and many > 0
    assert set(B.end_spread(runs, ["CIDEr", "SPICE"], 100)) == {"CIDEr"}     # no run has SPICE


def test_integer_counts_give_the_replicates_of_float_counts_in_blocks_or_at_once():
    rng = np.random.default_rng(5)
    stats = rng.integers(0, 30, size=(3, 40, len(IS.BLEU_STATS))).astype(np.float64)
    values = rng.exponential(0.6, size=(3, 40, 4))
    values[1, 7, 2] = np.nan
    counts, seed_index = B.plan(40, 3, 1000, seed=9)
    assert counts.dtype == np.uint16 and counts.nbytes == 1000 * 40 * 2
    assert (counts.sum(axis=1) == 40).all()
    as_float = counts.astype(np.float64)
    one_shot = B.weighted_sums(values, as_float, seed_index, block_rows=len(counts))
    for c, rows in ((counts, None), (counts, 64), (counts, 1), (as_float, 37)):
        assert np.allclose(B.weighted_sums(values, c, seed_index, block_rows=rows), one_shot, rtol=1e-12, atol=0,
                           equal_nan=True), rows
    assert np.allclose(B.bleu_replicates(stats, counts, seed_index), B.bleu_replicates(stats, as_float, seed_index),
                       rtol=1e-12, atol=0)
    means = B.weighted_means(values, counts, seed_index)
    assert np.allclose(means, B.weighted_means(values, as_float, seed_index), rtol=1e-12, atol=0, equal_nan=True)
    # the NaN of seed 1's image 7 reaches exactly the replicates of seed 1 that drew image 7
    assert np.array_equal(np.isnan(means[:, 2]), (seed_index == 1) & (counts[:, 7] > 0))
    # a one-seed plan takes the sliced path; the result matches a float matrix product row by row
    counts1, seed1 = B.plan(40, 1, 300, seed=2)
    assert np.allclose(B.weighted_sums(values[:1], counts1, seed1, block_rows=7),
                       counts1.astype(np.float64) @ values[0], rtol=1e-12, atol=0, equal_nan=True)


def test_a_plan_drawn_in_blocks_is_the_plan_drawn_at_once(monkeypatch):
    counts, seed_index = B.plan(30, 2, 500, seed=4)
    monkeypatch.setattr(B, "BLOCK_ELEMENTS", 30 * 7)           # blocks of 7 rows
    small_blocks = B.plan(30, 2, 500, seed=4)
    rng = np.random.default_rng(4)                             # the same draws without blocks
    assert np.array_equal(seed_index, rng.integers(2, size=500)) and np.array_equal(small_blocks[1], seed_index)
    assert np.array_equal(counts, rng.multinomial(30, np.full(30, 1 / 30), size=500))
    assert np.array_equal(small_blocks[0], counts)


def test_auto_resamples_spend_a_fixed_budget_of_draws_with_a_floor(monkeypatch):
    assert B.n_resamples("auto", 150) == 666_667 == -(-B.AUTO_BUDGET // 150)
    assert B.n_resamples("auto", 982) == 101_833
    assert B.n_resamples("auto", 100_000) == B.AUTO_MIN == 10_000
    assert B.n_resamples(2000, 150) == 2000 and B.n_resamples(np.int64(7), 3) == 7
    for bad in (0, -5, 1.5, True, "10000", "Auto", None):
        with pytest.raises(ValueError, match="resamples must be an integer >= 1 or 'auto'"):
            B.n_resamples(bad, 150)
    # counts never exceed N: 2 bytes each up to 65535 images
    assert B.count_dtype(65_535) == np.uint16 and B.count_dtype(65_536) == np.uint32
    # the plan takes 'auto' (a small budget here, to keep the test light)
    monkeypatch.setattr(B, "AUTO_BUDGET", 3000)
    monkeypatch.setattr(B, "AUTO_MIN", 100)
    assert B.plan(7, 2, "auto", seed=0)[0].shape == (429, 7)
    counts, seed_index = B.plan(60, 2, "auto", seed=0)
    assert counts.shape == (100, 60) and seed_index.shape == (100,)
