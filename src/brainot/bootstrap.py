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
    """The shared resampling plan: ``counts`` (B, N) float64 (whole numbers) and ``seed_index`` (B,) int64.

    Replicate b draws seed position ``seed_index[b]`` uniformly from ``0 .. n_seeds - 1`` and N images
    uniformly with replacement; ``counts[b, i]`` is how often image i was drawn (each row sums to N). Floats so
    that the replicates are one matrix product each. Deterministic in ``seed`` (``numpy.random.default_rng``).
    """
    if n_images < 1 or n_seeds < 1 or n_boot < 1:
        raise ValueError(f"need n_images, n_seeds, n_boot >= 1; got {n_images}, {n_seeds}, {n_boot}")
    rng = np.random.default_rng(seed)
    seed_index = rng.integers(n_seeds, size=n_boot)
    counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot).astype(np.float64)
    return counts, seed_index


def identity_plan(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The plan whose single replicate is every image once, of the first seed."""
    return np.ones((1, n_images)), np.zeros(1, dtype=np.int64)


def weighted_sums(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """:math:`S_{bk} = \\sum_i c_{bi}\\, x_{s_b i k}`: ``values`` (S, N, K) per seed, image and column, ``counts``
    (B, N), ``seed_index`` (B,). Returns (B, K); one matrix product per seed drawn."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    out = np.empty((len(counts), values.shape[-1]))
    for s in np.unique(seed_index):
        rows = seed_index == s
        out[rows] = (counts if rows.all() else counts[rows]) @ values[s]
    return out


def weighted_means(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates of means: :math:`\\theta_{bk} = \\frac{1}{N} \\sum_i c_{bi}\\, x_{s_b i k}`.

    ``values`` (S, N, K); ``counts`` (B, N); ``seed_index`` (B,). Returns (B, K). A NaN score of a drawn image
    makes its replicate NaN (as ``np.mean`` would); an undrawn one does not matter.
    """
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    k = values.shape[-1]
    sums = weighted_sums(np.concatenate([np.where(missing, 0.0, values), missing], axis=-1), counts, seed_index)
    out = sums[:, :k] / counts.shape[1]
    out[sums[:, k:] > 0] = np.nan
    return out


def weighted_mean(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """:func:`weighted_means` of one score: ``values`` (S, N) per seed and image. Returns (B,)."""
    return weighted_means(np.asarray(values, dtype=np.float64)[..., None], counts, seed_index)[:, 0]


def bleu_replicates(stats: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates of corpus BLEU-1..4: the per-image statistics (S, N, 10) (:data:`brainot.image_scores.BLEU_STATS`)
    summed with the counts (B, N) of the drawn seed, then :func:`brainot.image_scores.bleu`. Returns (B, 4)."""
    return IS.bleu(weighted_sums(stats, counts, seed_index))


def all_replicates(runs: list[tuple], counts: np.ndarray, seed_index: np.ndarray) -> dict[str, np.ndarray]:
    """Replicates (B,) of every metric of one table cell (toolkit scale), by name: BLEU1-4 always, the others
    when every seed's file has them. ``runs`` holds one ``(table, corpus)`` of :func:`brainot.image_scores.read`
    per seed, in seed order.

    A run with one file but a plan over several seeds (the image-fed captioner, which trains nothing) uses
    that file in every replicate.
    """
    n = counts.shape[1]
    for table, _ in runs:
        if len(table) != n:
            raise ValueError(f"a per-image table has {len(table)} images; the plan has {n}")
    if len(runs) == 1:
        seed_index = np.zeros_like(seed_index)
    elif len(runs) <= seed_index.max():
        raise ValueError(f"{len(runs)} seeds of a run; the plan draws seed positions up to {seed_index.max()}")
    stats = np.stack([table[list(IS.BLEU_STATS)].to_numpy(dtype=np.float64) for table, _ in runs])
    out = dict(zip(IS.BLEU_METRICS, bleu_replicates(stats, counts, seed_index).T))
    present = [m for m in IS.MEAN_METRICS if all(m in table.columns for table, _ in runs)]
    if present:
        values = np.stack([table[present].to_numpy(dtype=np.float64) for table, _ in runs])   # (S, N, K)
        means = weighted_means(values, counts, seed_index)
        # a corpus score that is not the mean of its per-image scores (METEOR): shift onto the corpus scale
        shift = np.array([[corpus[m] - np.mean(v[:, k]) if m in corpus else 0.0 for k, m in enumerate(present)]
                          for (_, corpus), v in zip(runs, values)])
        out.update(zip(present, (means + shift[seed_index]).T))
    return out


def replicates(runs: list[tuple], metric: str, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates (B,) of ``metric`` (a name of :data:`brainot.metrics.METRICS`) for one table cell
    (:func:`all_replicates`); NaN everywhere when a run lacks the metric (e.g. SPICE without its jars)."""
    return all_replicates(runs, counts, seed_index).get(metric, np.full(len(counts), np.nan))


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
    below, above = one_sided_p_values(diff_reps)
    if np.isnan(below):
        return float("nan")
    return float(min(1.0, 2 * min(below, above)))


def one_sided_p_values(diff_reps: np.ndarray) -> tuple[float, float]:
    r"""The one-sided bootstrap p-values of a difference's replicates (B,): of "d > 0" (evidence against it:
    :math:`\tfrac{1 + \#\{d_b \le 0\}}{B + 1}`) and of "d < 0" (:math:`\tfrac{1 + \#\{d_b \ge 0\}}{B + 1}`);
    (NaN, NaN) if any replicate is NaN. :func:`p_value` is twice the smaller, capped at 1."""
    d = np.asarray(diff_reps, dtype=np.float64)
    if np.isnan(d).any():
        return float("nan"), float("nan")
    b = len(d)
    return (1 + np.count_nonzero(d <= 0)) / (b + 1), (1 + np.count_nonzero(d >= 0)) / (b + 1)


def end_spread(runs: list[list[tuple]], metrics, n_boot: int, plan_seeds=tuple(range(10)),
               level: float = 0.95) -> dict[str, float]:
    """How much the interval ends move with the plan's seed alone: per metric, the largest (max - min) over
    ``plan_seeds`` of either end of any run's interval, on the score's scale (x100 scores give x100 spreads).

    ``runs``: per run, its ``(table, corpus)`` per training seed (:func:`brainot.image_scores.read`). A metric
    no run has is left out.
    """
    n = len(runs[0][0][0])
    n_seeds = max(len(r) for r in runs)
    ends = {m: [] for m in metrics}
    for s in plan_seeds:
        counts, seed_index = plan(n, n_seeds, n_boot, s)
        reps = [all_replicates(r, counts, seed_index) for r in runs]
        for m in metrics:
            ends[m].append([percentile_interval(x[m], level) if m in x else (np.nan, np.nan) for x in reps])
    out = {}
    for m, e in ends.items():
        e = np.asarray(e, dtype=np.float64)            # (plan seeds, runs, 2)
        spread = e.max(axis=0) - e.min(axis=0)
        if not np.isnan(spread).all():
            out[m] = float(np.nanmax(spread))
    return out


def main(argv=None) -> None:
    import argparse

    from brainot.metrics import METRICS

    p = argparse.ArgumentParser(prog="python -m brainot.bootstrap",
                                description="How stable the tables' interval ends are in the number of resamples: "
                                            "per metric, the largest move (x100) of any end between ten plan seeds.")
    p.add_argument("--images", nargs="+", required=True, help="per-image score files (.images.parquet), one per run")
    p.add_argument("--resamples", nargs="+", type=int, default=[1000, 2000, 4000, 8000])
    args = p.parse_args(argv)
    runs = [[IS.read(path)] for path in args.images]
    n = len(runs[0][0][0])
    print(f"{len(runs)} runs of {n} test images; largest move of an interval end (x100) over 10 plan seeds:")
    for n_boot in args.resamples:
        spread = end_spread(runs, METRICS, n_boot)
        print(f"B = {n_boot:6d}: " + ", ".join(f"{m} {100 * v:.3f}" for m, v in spread.items()), flush=True)


if __name__ == "__main__":
    main()
