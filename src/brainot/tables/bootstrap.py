"""Paired bootstrap over test images (and training seeds) for the caption metrics' intervals and claims.

One *plan* (:func:`plan`) draws, for each of B replicates, a seed index and a resample of the N test images
(as counts: how often each image is drawn). Every table cell and both sides of every claim are evaluated on the
same plan, so a difference is paired: the same images (and the same seed position) on both sides.

A replicate of a metric (:func:`replicates`) is the corpus metric on the drawn images of the drawn seed's run:

* BLEU-1..4: recomputed from the per-image n-gram statistics summed with the counts
  (:func:`brainot.scoring.image_scores.bleu`), since BLEU is a ratio of sums, not a mean of per-image values;
* every other metric: the count-weighted mean of its per-image scores. CIDEr's per-image scores keep the
  document frequencies of the whole test set. METEOR 1.5's corpus score is not the mean of its per-image
  scores: its replicate is shifted by (corpus - mean) of the drawn seed, so the identity resample gives the
  corpus score.

Intervals are percentiles of the replicates (:func:`percentile_interval`); the p-value of a difference is
two-sided (:func:`p_value`).
"""

from __future__ import annotations

import numpy as np

from brainot.scoring import image_scores as IS


#: ``tables.bootstrap.resamples: auto`` draws B = ceil(AUTO_BUDGET / N) replicates (at least AUTO_MIN): the Monte
#: Carlo error of an interval end falls as SE / sqrt(B) and SE as 1 / sqrt(N), so a fixed budget of B * N image
#: draws keeps the ends equally stable at any test-set size. Calibrated on the demo's 150 images so that CIDEr's
#: ends move by at most 0.1 (x100) over ten plan seeds (docs/statistics.md).
AUTO_BUDGET = 100_000_000
AUTO_MIN = 10_000
#: counts are converted to float64 this many elements at a time (32 MiB), so B x N never becomes a float matrix
BLOCK_ELEMENTS = 1 << 22


def n_resamples(resamples: int | str, n_images: int) -> int:
    """The number of replicates B: ``resamples`` itself (an integer >= 1), or for ``"auto"``
    :math:`B = \\max(\\text{AUTO\\_MIN}, \\lceil \\text{AUTO\\_BUDGET} / N \\rceil)` with N = ``n_images``."""
    if isinstance(resamples, str) and resamples == "auto":
        if n_images < 1:
            raise ValueError(f"need n_images >= 1 for resamples 'auto'; got {n_images}")
        return max(AUTO_MIN, -(-AUTO_BUDGET // n_images))
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1 or 'auto'; got {resamples!r}")
    return int(resamples)


def count_dtype(n_images: int) -> np.dtype:
    """The integer type of a plan's counts: a count never exceeds N, so uint16 up to 65535 images."""
    return np.dtype(np.uint16 if n_images <= np.iinfo(np.uint16).max else np.uint32)


def plan(n_images: int, n_seeds: int, n_boot: int | str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The shared resampling plan: ``counts`` (B, N) unsigned integers (:func:`count_dtype`) and ``seed_index``
    (B,) int64; B = :func:`n_resamples` of ``n_boot`` (an integer or ``"auto"``).

    Replicate b draws seed position ``seed_index[b]`` uniformly from ``0 .. n_seeds - 1`` and N images
    uniformly with replacement; ``counts[b, i]`` is how often image i was drawn (each row sums to N).
    Deterministic in ``seed`` (``numpy.random.default_rng``); drawn in blocks of rows, which gives the same
    counts as one draw of all B rows, in a fraction of the memory (2 bytes per count, not 8).
    """
    n_boot = n_resamples(n_boot, n_images)
    if n_images < 1 or n_seeds < 1:
        raise ValueError(f"need n_images, n_seeds >= 1; got {n_images}, {n_seeds}")
    rng = np.random.default_rng(seed)
    seed_index = rng.integers(n_seeds, size=n_boot)
    counts = np.empty((n_boot, n_images), dtype=count_dtype(n_images))
    pvals = np.full(n_images, 1.0 / n_images)
    step = _block_rows(n_images)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        counts[start:stop] = rng.multinomial(n_images, pvals, size=stop - start)
    return counts, seed_index


def identity_plan(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The plan whose single replicate is every image once, of the first seed."""
    return np.ones((1, n_images), dtype=count_dtype(n_images)), np.zeros(1, dtype=np.int64)


def _block_rows(n_images: int) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, n_images))


def weighted_sums(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray,
                  block_rows: int | None = None) -> np.ndarray:
    """:math:`S_{bk} = \\sum_i c_{bi}\\, x_{s_b i k}`: ``values`` (S, N, K) per seed, image and column, ``counts``
    (B, N) (integers or floats), ``seed_index`` (B,). Returns (B, K) float64.

    One matrix product per seed drawn and block of ``block_rows`` rows (default: :data:`BLOCK_ELEMENTS` / N),
    each block's counts converted to float64 alone (exact: whole numbers below 2**53)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts)
    step = _block_rows(counts.shape[1]) if block_rows is None else int(block_rows)
    if step < 1:
        raise ValueError(f"block_rows must be >= 1; got {block_rows}")
    out = np.empty((len(counts), values.shape[-1]))
    for s in np.unique(seed_index):
        rows = np.flatnonzero(seed_index == s)
        for start in range(0, len(rows), step):
            block = rows[start:start + step]
            if len(rows) == len(counts):          # one seed: a slice, no gather
                block = slice(start, start + step)
            out[block] = counts[block].astype(np.float64) @ values[s]
    return out


def weighted_means(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates of means: :math:`\\theta_{bk} = \\frac{1}{N} \\sum_i c_{bi}\\, x_{s_b i k}`.

    ``values`` (S, N, K); ``counts`` (B, N); ``seed_index`` (B,). Returns (B, K). A NaN score of a drawn image
    makes its replicate NaN (as ``np.mean`` would); an undrawn one does not matter.
    """
    values = np.asarray(values, dtype=np.float64)
    return _means(weighted_sums(_with_missing(values), counts, seed_index), values.shape[-1], counts.shape[1])


def _with_missing(values: np.ndarray) -> np.ndarray:
    """(S, N, 2K): the scores with NaN as 0, then 1 where a score is NaN (summed: how often a NaN was drawn)."""
    missing = np.isnan(values)
    return np.concatenate([np.where(missing, 0.0, values), missing], axis=-1)


def _means(sums: np.ndarray, k: int, n: int) -> np.ndarray:
    """Replicates (B, K) of means from the weighted sums (B, 2K) of :func:`_with_missing`'s columns."""
    out = sums[:, :k] / n
    out[sums[:, k:] > 0] = np.nan
    return out


def weighted_mean(values: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """:func:`weighted_means` of one score: ``values`` (S, N) per seed and image. Returns (B,)."""
    return weighted_means(np.asarray(values, dtype=np.float64)[..., None], counts, seed_index)[:, 0]


def bleu_replicates(stats: np.ndarray, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates of corpus BLEU-1..4: the per-image statistics (S, N, 10) (:data:`brainot.scoring.image_scores.BLEU_STATS`)
    summed with the counts (B, N) of the drawn seed, then :func:`brainot.scoring.image_scores.bleu`. Returns (B, 4)."""
    return IS.bleu(weighted_sums(stats, counts, seed_index))


def all_replicates(runs: list[tuple], counts: np.ndarray, seed_index: np.ndarray) -> dict[str, np.ndarray]:
    """Replicates (B,) of every metric of one table cell (toolkit scale), by name: BLEU1-4 always, the others
    when every seed's file has them. ``runs`` holds one ``(table, corpus)`` of :func:`brainot.scoring.image_scores.read`
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
    present = [m for m in IS.MEAN_METRICS if all(m in table.columns for table, _ in runs)]
    values = np.stack([table[present].to_numpy(dtype=np.float64) for table, _ in runs])       # (S, N, K)
    # one pass over the counts for BLEU's statistics and the means' columns together
    sums = weighted_sums(np.concatenate([stats, _with_missing(values)], axis=-1), counts, seed_index)
    nstat = stats.shape[-1]
    out = dict(zip(IS.BLEU_METRICS, IS.bleu(sums[:, :nstat]).T))
    if present:
        means = _means(sums[:, nstat:], len(present), n)
        # a corpus score that is not the mean of its per-image scores (METEOR): shift onto the corpus scale
        shift = np.array([[corpus[m] - np.mean(v[:, k]) if m in corpus else 0.0 for k, m in enumerate(present)]
                          for (_, corpus), v in zip(runs, values)])
        out.update(zip(present, (means + shift[seed_index]).T))
    return out


def replicates(runs: list[tuple], metric: str, counts: np.ndarray, seed_index: np.ndarray) -> np.ndarray:
    """Replicates (B,) of ``metric`` (a name of :data:`brainot.scoring.metrics.METRICS`) for one table cell
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


def end_spread(runs: list[list[tuple]], metrics, n_boot: int | str, plan_seeds=tuple(range(10)),
               level: float = 0.95) -> dict[str, float]:
    """How much the interval ends move with the plan's seed alone: per metric, the largest (max - min) over
    ``plan_seeds`` of either end of any run's interval, on the score's scale (x100 scores give x100 spreads).

    ``runs``: per run, its ``(table, corpus)`` per training seed (:func:`brainot.scoring.image_scores.read`). A metric
    no run has is left out. ``n_boot``: an integer or ``"auto"`` (:func:`n_resamples`).
    """
    n = len(runs[0][0][0])
    n_seeds = max(len(r) for r in runs)
    ends = {m: [] for m in metrics}
    for s in plan_seeds:
        counts, seed_index = plan(n, n_seeds, n_boot, s)
        per_run = []
        for r in runs:                      # one run's replicates at a time: B may be large
            reps = all_replicates(r, counts, seed_index)
            per_run.append({m: percentile_interval(reps[m], level) if m in reps else (np.nan, np.nan)
                            for m in metrics})
        for m in metrics:
            ends[m].append([x[m] for x in per_run])
    out = {}
    for m, e in ends.items():
        e = np.asarray(e, dtype=np.float64)            # (plan seeds, runs, 2)
        spread = e.max(axis=0) - e.min(axis=0)
        if not np.isnan(spread).all():
            out[m] = float(np.nanmax(spread))
    return out


def main(argv=None) -> None:
    import argparse

    from brainot.scoring.metrics import METRICS

    p = argparse.ArgumentParser(prog="python -m brainot.tables.bootstrap",
                                description="How stable the tables' interval ends are in the number of resamples: "
                                            "per metric, the largest move (x100) of any end between ten plan seeds.")
    p.add_argument("--images", nargs="+", required=True, help="per-image score files (.images.parquet), one per run")
    p.add_argument("--resamples", nargs="+", default=["1000", "2000", "4000", "8000"],
                   help="numbers of replicates B to compare; 'auto' is tables.bootstrap.resamples' default")
    args = p.parse_args(argv)
    try:
        resamples = [r if r == "auto" else int(r) for r in args.resamples]
    except ValueError:
        p.error(f"--resamples: expected integers or 'auto'; got {args.resamples}")
    runs = [[IS.read(path)] for path in args.images]
    n = len(runs[0][0][0])
    print(f"{len(runs)} runs of {n} test images; largest move of an interval end (x100) over 10 plan seeds:")
    for n_boot in resamples:
        spread = end_spread(runs, METRICS, n_boot)
        print(f"B = {n_resamples(n_boot, n):7d}: " + ", ".join(f"{m} {100 * v:.3f}" for m, v in spread.items()), flush=True)


if __name__ == "__main__":
    main()
