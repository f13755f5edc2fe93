"""Paired bootstrap over test images (and training seeds) for the caption metrics' intervals and claims.

One *plan* (:func:`plan`) draws, for each of B replicates, a seed index and a resample of the N test images
(as counts: how often each image is drawn). Every table cell and both sides of every claim are evaluated on the
same plan, so a difference is paired: the same images (and the same seed position) on both sides.

A replicate of a metric (:func:`replicates`) is the corpus metric on the drawn images of the drawn seed's run:

* BLEU-1..4: recomputed from the per-image n-gram statistics summed with the counts
  (:func:`brainot.image_scores.bleu`), since BLEU is a ratio of sums, not a mean of per-image values;
* every other metric: the count-weighted mean of its per-image scores. CIDEr's per-image scores keep the
  document frequencies of the whole test set. METEOR 1.5's corpus score is not the mean of its per-image
  scores: its replicate is shifted by (corpus - mean) of the drawn seed, so the identity resample gives the
  corpus score.

Intervals are percentiles of the replicates (:func:`percentile_interval`); the p-value of a difference is
two-sided (:func:`p_value`).
"""

from __future__ import annotations

import numpy as np

from brainot import image_scores as IS


def plan(n_images: int, n_seeds: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The shared resampling plan: ``counts`` (B, N) int64 and ``seed_index`` (B,) int64.

    Replicate b draws seed position ``seed_index[b]`` uniformly from ``0 .. n_seeds - 1`` and N images
    uniformly with replacement; ``counts[b, i]`` is how often image i was drawn (each row sums to N).
    Deterministic in ``seed`` (``numpy.random.default_rng``).
    """
    if n_images < 1 or n_seeds < 1 or n_boot < 1:
        raise ValueError(f"need n_images, n_seeds, n_boot >= 1; got {n_images}, {n_seeds}, {n_boot}")
    rng = np.random.default_rng(seed)
    seed_index = rng.integers(n_seeds, size=n_boot)
    counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot).astype(np.int64)
    return counts, seed_index


def identity_plan(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The plan whose single replicate is every image once, of the first seed."""
    return np.ones((1, n_images), dtype=np.int64), np.zeros(1, dtype=np.int64)


def weighted_mean(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates of a mean: :math:`\\theta_b = \\frac{1}{N} \\sum_i c_{bi}\\, x_{s_b i}`.

    ``values`` (S, N) per seed and image; ``counts`` (B, N); ``seed_index`` (B,). Returns (B,). A NaN score
    of a drawn image makes its replicate NaN (as ``np.mean`` would).
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.empty(len(counts))
    for s in np.unique(seed_index):
        rows = np.flatnonzero(seed_index == s)
        missing = np.isnan(values[s])
        out[rows] = counts[rows] @ np.where(missing, 0.0, values[s]) / counts.shape[1]
        out[rows[(counts[rows][:, missing] > 0).any(axis=1)]] = np.nan
    return out


def bleu_replicates(stats: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates of corpus BLEU-1..4: the per-image statistics (S, N, 10) (:data:`brainot.image_scores.BLEU_STATS`)
    summed with the counts (B, N) of the drawn seed, then :func:`brainot.image_scores.bleu`. Returns (B, 4)."""
    stats = np.asarray(stats, dtype=np.float64)
    totals = np.empty((len(counts), stats.shape[-1]))
    for s in np.unique(seed_index):
        rows = seed_index == s
        totals[rows] = counts[rows] @ stats[s]
    return IS.bleu(totals)


def replicates(runs: list[tuple], metric: str, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates (B,) of ``metric`` (a name of :data:`brainot.metrics.METRICS`, toolkit scale) for one table
    cell: ``runs`` holds one ``(table, corpus)`` of :func:`brainot.image_scores.read` per seed, in seed order.

    NaN everywhere when a run lacks the metric (e.g. SPICE without its jars).
    """
    n = counts.shape[1]
    for table, _ in runs:
        if len(table) != n:
            raise ValueError(f"a per-image table has {len(table)} images; the plan has {n}")
    if metric in IS.BLEU_METRICS:
        stats = np.stack([table[list(IS.BLEU_STATS)].to_numpy() for table, _ in runs])
        return bleu_replicates(stats, counts, seed_index)[:, IS.BLEU_METRICS.index(metric)]
    if any(metric not in table.columns for table, _ in runs):
        return np.full(len(counts), np.nan)
    values = np.stack([table[metric].to_numpy(dtype=np.float64) for table, _ in runs])
    out = weighted_mean(values, counts, seed_index)
    # a corpus score that is not the mean of its per-image scores (METEOR): shift onto the corpus scale
    shift = np.array([corpus[metric] - np.mean(v) if metric in corpus else 0.0
                      for (_, corpus), v in zip(runs, values)])
    return out + shift[seed_index]


def percentile_interval(reps: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval :math:`[q_{\\alpha/2}, q_{1-\\alpha/2}]` of replicates (B,), :math:`\\alpha = 1 -`
    ``level``; (NaN, NaN) when any replicate is NaN."""
    reps = np.asarray(reps, dtype=np.float64)
    if np.isnan(reps).any():
        return float("nan"), float("nan")
    alpha = 1.0 - level
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def p_value(diff_reps: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0" from replicates of a difference (B,):

    .. math:: p = \\min\\Big(1,\\ 2 \\min\\big(\\tfrac{1 + \\#\\{d_b \\le 0\\}}{B + 1},\\
              \\tfrac{1 + \\#\\{d_b \\ge 0\\}}{B + 1}\\big)\\Big)

    (the +1 keeps it above 0 for a finite B: the smallest reportable p is 2 / (B + 1)). NaN if any is NaN.
    """
    d = np.asarray(diff_reps, dtype=np.float64)
    if np.isnan(d).any():
        return float("nan")
    b = len(d)
    below = (1 + np.count_nonzero(d <= 0)) / (b + 1)
    above = (1 + np.count_nonzero(d >= 0)) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))
