"""Per-image caption scores: the file written next to each metrics JSON, so that tables can carry intervals.

:mod:`brainot.scoring.score` writes ``<metrics>.json`` (the corpus numbers) and, through :func:`write`,
``<metrics>.images.parquet`` (:func:`path_for`): one row per test image, in test order, on the toolkits' own
scale (not x100):

* ``METEOR``, ``ROUGE``, ``CIDEr``: pycocoevalcap's per-image scores. CIDEr's document frequencies are those of
  the whole test set (``Cider().compute_score`` over every image at once, as BrainHub scores it), so its
  per-image scores do not change when images are resampled and their mean is the corpus CIDEr.
* ``SPICE``, ``CLIP-S``, ``RefCLIP-S``: the per-image scores whose mean is the corpus number (when computed).
* BLEU is corpus-level (clipped n-gram counts summed over images before the ratio), so the file holds each
  image's sufficient statistics instead, from pycocoevalcap's ``BleuScorer``: ``bleu_testlen``, ``bleu_reflen``
  (the reference length closest to the candidate's, ``option='closest'``), ``bleu_guess1..4`` and
  ``bleu_correct1..4``. :func:`bleu` turns summed statistics into BLEU-1..4 exactly as ``BleuScorer`` does.

METEOR 1.5's corpus score comes from statistics the jar sums internally, not from the mean of its per-image
scores; the file keeps the corpus value in its metadata (:func:`read` returns it) so that a resample can be
put on the corpus scale (:mod:`brainot.tables.bootstrap`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from brainot.atomic import atomic_path
from brainot.scoring import coco_internals

N_BLEU = 4
BLEU_STATS = ("bleu_testlen", "bleu_reflen", *(f"bleu_guess{k}" for k in range(1, N_BLEU + 1)),
              *(f"bleu_correct{k}" for k in range(1, N_BLEU + 1)))
MEAN_METRICS = ("METEOR", "ROUGE", "CIDEr", "SPICE", "CLIP-S", "RefCLIP-S")
BLEU_METRICS = tuple(f"BLEU{k}" for k in range(1, N_BLEU + 1))
SUFFIX = ".images.parquet"
META_KEY = b"brainot.corpus"   # parquet key-value metadata: the corpus scores, JSON


class ImageScoresError(ValueError):
    """A per-image scores file is missing or malformed; the message names the file and what was expected."""


def path_for(metrics_json: str | Path) -> Path:
    """The per-image file of a metrics JSON: ``results/metrics/{run}/{subject}.json`` ->
    ``results/metrics/{run}/{subject}.images.parquet``."""
    metrics_json = Path(metrics_json)
    return metrics_json.with_name(metrics_json.stem + SUFFIX)


def bleu_stats(res: dict, gts: dict) -> np.ndarray:
    """Per-image BLEU sufficient statistics (N, 10) int64, columns :data:`BLEU_STATS`, in ``res``'s key order.

    Counted by pycocoevalcap's ``BleuScorer`` as ``Bleu(4).compute_score`` counts them (tokenized ``res``/``gts``,
    :func:`brainot.scoring.metrics.ptb_tokenize`), through :func:`brainot.scoring.coco_internals.bleu_statistics`;
    the reference length is the one ``compute_score(option='closest')`` adds up.
    """
    rows = [[testlen, reflen, *guess, *correct]
            for testlen, reflen, guess, correct in coco_internals.bleu_statistics(res, gts, N_BLEU)]
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), len(BLEU_STATS))


def bleu(totals: np.ndarray) -> np.ndarray:
    """BLEU-1..4 from summed statistics, as pycocoevalcap's ``BleuScorer.compute_score``.

    ``totals`` (..., 10): the sums over images of :data:`BLEU_STATS` (any weights, e.g. bootstrap counts).
    Returns (..., 4):

    .. math:: \\mathrm{BLEU}_n = \\mathrm{BP} \\Big(\\prod_{k=1}^{n} \\frac{c_k + 10^{-15}}{g_k + 10^{-9}}\\Big)^{1/n},
              \\quad \\mathrm{BP} = \\min\\big(1, e^{1 - 1/r}\\big),\\ r = \\frac{t + 10^{-15}}{l + 10^{-9}}

    with :math:`c_k`, :math:`g_k` the clipped matches and candidate n-grams of order k, :math:`t` the candidate
    length and :math:`l` the (closest) reference length.
    """
    totals = np.asarray(totals, dtype=np.float64)
    testlen, reflen = totals[..., 0], totals[..., 1]
    guess, correct = totals[..., 2:2 + N_BLEU], totals[..., 2 + N_BLEU:2 + 2 * N_BLEU]
    small, tiny = 1e-9, 1e-15
    cumulative = np.cumprod((correct + tiny) / (guess + small), axis=-1)
    scores = cumulative ** (1.0 / np.arange(1, N_BLEU + 1))
    ratio = (testlen + tiny) / (reflen + small)
    with np.errstate(divide="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return scores * penalty[..., None]


def coco_per_image(res: dict, gts: dict, each: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-image scores of the COCO toolkit's metrics on tokenized captions: one row per image (``res``'s key
    order) with :data:`BLEU_STATS` (counted here) and ``METEOR``, ``ROUGE``, ``CIDEr`` from ``each``, the
    per-image arrays of :func:`brainot.scoring.metrics.coco_scores`."""
    table = pd.DataFrame(bleu_stats(res, gts), columns=list(BLEU_STATS))
    for name in ("METEOR", "ROUGE", "CIDEr"):
        table[name] = np.asarray(each[name], dtype=np.float64)
    return table


def write(table: pd.DataFrame, path: str | Path, corpus: dict[str, float]) -> Path:
    """Write a per-image table (:func:`coco_per_image` plus any of ``SPICE``, ``CLIP-S``, ``RefCLIP-S``) and
    the corpus scores that are not a mean of its columns (``corpus``, e.g. METEOR) as ``path`` (Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    unknown = [c for c in table.columns if c not in (*BLEU_STATS, *MEAN_METRICS)]
    if unknown:
        raise ImageScoresError(f"{path}: unknown per-image column(s) {unknown}")
    arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[META_KEY] = json.dumps(corpus).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    return path


def save(path: str | Path, res: dict, gts: dict, each: dict[str, np.ndarray], corpus: dict[str, float],
         log=sys.stderr) -> Path:
    """Per-image scores written to ``path`` (:func:`write`): :func:`coco_per_image` of tokenized ``res``/``gts``
    plus the other per-image arrays in ``each`` (``SPICE``, ``CLIP-S``, ``RefCLIP-S``, one value per image in the
    same order); ``corpus``: the corpus scores that are not a mean of their column (METEOR)."""
    t0 = time.perf_counter()
    table = coco_per_image(res, gts, each)
    for name, values in ((k, v) for k, v in each.items() if k not in table.columns):
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(table),):
            raise ImageScoresError(f"{path}: {name} has shape {values.shape}; expected ({len(table)},)")
        table[name] = values
    write(table, path, corpus)
    print(f"per-image scores of {len(table)} images: {time.perf_counter() - t0:.1f} s ({path})", file=log)
    return Path(path)


def read(path: str | Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """A per-image file of :func:`write`: the table (one row per test image) and the corpus scores."""
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ImageScoresError(f"{path}: cannot read a per-image scores file ({exc}); expected the "
                               f"{SUFFIX} that python -m brainot.scoring.score writes next to its metrics JSON") from None
    meta = arrow.schema.metadata or {}
    if META_KEY not in meta:
        raise ImageScoresError(f"{path}: no {META_KEY.decode()!r} metadata; expected a file of brainot.scoring.image_scores")
    table = arrow.to_pandas()
    missing = [c for c in (*BLEU_STATS, "METEOR", "ROUGE", "CIDEr") if c not in table.columns]
    if missing:
        raise ImageScoresError(f"{path}: missing column(s) {missing}")
    return table, json.loads(meta[META_KEY])


def corpus_scores(table: pd.DataFrame, corpus: dict[str, float]) -> dict[str, float]:
    """The corpus scores (toolkit scale) a per-image file stands for: BLEU from summed statistics, METEOR
    from ``corpus``, every other metric the mean of its column (NaN when an image's score is NaN)."""
    out = dict(zip(BLEU_METRICS, bleu(table[list(BLEU_STATS)].to_numpy().sum(axis=0))))
    for name in MEAN_METRICS:
        if name in corpus:
            out[name] = float(corpus[name])
        elif name in table.columns:
            out[name] = float(np.mean(table[name].to_numpy(dtype=np.float64)))
    return out
