"""The paper's comparisons as paired bootstrap tests: ``results/tables/claims.csv``.

Each claim compares run a with run b on the same test images (a minus b, x100, per metric). One side may be a
list of K candidate runs; every run is given by its per-image files (:mod:`brainot.scoring.image_scores`), one per
training seed, first seed first. All differences are replicated on one shared plan (:mod:`brainot.tables.bootstrap`:
seeds and images resampled), so each candidate's difference is paired with the others'.

Per claim and metric: ``estimate`` = headline(a) - headline(b) of the first seed (pycocoevalcap's numbers),
with the candidate side's run the one of best headline on that metric (``a``/``b`` name the runs of the
estimate). The verdict (``expect = greater``; mirrored for ``less``) is a test of the claim as stated:

* one run on each side (``test = paired``): ``supported`` when the percentile interval at ``level`` of the
  difference lies above 0, ``contradicted`` when below, ``inconclusive`` otherwise (or NaN: metric missing);
* K candidates on side b, "a beats every b" (``intersection-union``, :func:`intersection_union`):
  ``supported`` when every candidate's interval at ``level`` lies above 0 (no multiplicity correction needed);
  ``contradicted`` when some candidate's interval at the Bonferroni level ``1 - (1 - level) / K`` lies below 0;
* K candidates on side a, "some a beats b" (``union-intersection``, :func:`union_intersection`), the mirror
  image: ``supported`` when some candidate's Bonferroni interval lies above 0; ``contradicted`` when every
  candidate's interval at ``level`` lies below 0.

``lo``, ``hi`` are the interval that decides the verdict (``interval_of`` names its candidate and
``interval_level`` its level), so :func:`verdict` of them is the row's verdict; ``p`` is the test's two-sided
bootstrap p-value (:func:`decide`). Picking a side's run by its headline on the same test images biases a
plain paired test (under a null of K equal runs, the best of K looks better than it is); these tests do not
pick, they test every candidate.

Spec (``--spec``, JSON): ``{"resamples": B, "seed": s, "level": 0.95, "claims": [{"name": ..., "expect":
"greater"|"less", "a": [{"label": ..., "images": [path per seed]}, ...], "b": [...]}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from brainot.scoring import image_scores as IS
from brainot.tables import bootstrap as B
from brainot.tables.files import write_table

# The metrics claims.csv tests (the per-image files hold every metric; SPICE only with its jars).
CLAIM_METRICS = ("CIDEr", "METEOR", "ROUGE", "BLEU4", "BLEU1", "SPICE", "CLIP-S", "RefCLIP-S")
COLUMNS = ("claim", "metric", "a", "b", "estimate", "lo", "hi", "p", "verdict", "expect", "n_images", "n_seeds",
           "resamples", "test", "interval_of", "interval_level")
VERDICTS = ("supported", "contradicted", "inconclusive")


class ClaimsError(ValueError):
    """A claims spec or its inputs are malformed; the message names the claim and what was expected."""


def verdict(lo: float, hi: float, expect: str) -> str:
    """``supported`` when the interval [lo, hi] excludes 0 on the side of ``expect`` (``greater``: lo > 0;
    ``less``: hi < 0), ``contradicted`` when it excludes 0 on the other side, else ``inconclusive``."""
    if expect not in ("greater", "less"):
        raise ClaimsError(f"expect must be 'greater' or 'less'; got {expect!r}")
    if np.isnan(lo) or np.isnan(hi):
        return "inconclusive"
    above, below = lo > 0, hi < 0
    if (above and expect == "greater") or (below and expect == "less"):
        return "supported"
    if above or below:
        return "contradicted"
    return "inconclusive"


def intersection_union(diffs: np.ndarray, expect: str, level: float = 0.95) -> dict:
    r"""The test of "a beats every one of K candidates b_k" from paired replicates ``diffs`` (K, B) of
    :math:`d_k = a - b_k` (``expect = greater``; for ``less`` every sign flips).

    With :math:`[l_k, u_k]` the percentile interval of :math:`d_k` at ``level`` and :math:`[l'_k, u'_k]` the one at
    the Bonferroni level :math:`1 - (1 - \text{level}) / K`:

    * ``supported`` iff :math:`\min_k l_k > 0` (intersection-union: each of the K tests at full level);
    * ``contradicted`` iff :math:`\min_k u'_k < 0` (some candidate beats a; union of K tests, so Bonferroni);
    * ``inconclusive`` otherwise.

    The reported interval is the deciding candidate's: when contradicted, the Bonferroni interval of
    :math:`\arg\min_k u'_k`; otherwise the candidate :math:`k^* = \arg\min_k l_k`, at ``level`` when
    supported and at the Bonferroni level when inconclusive (which then covers 0). The p-value is that of the
    better-supported direction, doubled as in :func:`brainot.tables.bootstrap.p_value`:

    .. math:: p = \min\big(1,\ 2 \min(\max_k p^{\le}_k,\ \min(1, K \min_k p^{\ge}_k))\big)

    with :math:`p^{\le}_k = (1 + \#\{d_{kb} \le 0\}) / (B + 1)` and :math:`p^{\ge}_k` its mirror
    (:func:`brainot.tables.bootstrap.one_sided_p_values`). For K = 1 all of this is the plain paired test.

    Returns a dict: ``verdict``, ``lo``, ``hi``, ``p``, ``index`` (the reported candidate) and ``level`` (its
    interval's); NaN interval and p, ``inconclusive``, when any replicate is NaN.
    """
    if expect not in ("greater", "less"):
        raise ClaimsError(f"expect must be 'greater' or 'less'; got {expect!r}")
    sign = 1.0 if expect == "greater" else -1.0
    z = sign * np.atleast_2d(np.asarray(diffs, dtype=np.float64))       # (K, B): the claim is "every z_k > 0"
    k = len(z)
    bonferroni = 1.0 - (1.0 - level) / k
    if np.isnan(z).any():
        return {"verdict": "inconclusive", "lo": np.nan, "hi": np.nan, "p": np.nan, "index": 0, "level": level}
    at_level = np.array([B.percentile_interval(r, level) for r in z])         # (K, 2)
    at_bonf = np.array([B.percentile_interval(r, bonferroni) for r in z])
    one_sided = np.array([B.one_sided_p_values(r) for r in z])               # (K, 2): against z > 0, z < 0
    p = min(1.0, 2 * min(one_sided[:, 0].max(), min(1.0, k * one_sided[:, 1].min())))
    weakest, beaten_by = int(np.argmin(at_level[:, 0])), int(np.argmin(at_bonf[:, 1]))
    if at_level[weakest, 0] > 0:
        out = ("supported", weakest, at_level[weakest], level)
    elif at_bonf[beaten_by, 1] < 0:
        out = ("contradicted", beaten_by, at_bonf[beaten_by], bonferroni)
    else:
        out = ("inconclusive", weakest, at_bonf[weakest], bonferroni)
    name, index, (lo, hi), used = out
    lo, hi = (lo, hi) if sign > 0 else (-hi, -lo)
    return {"verdict": name, "lo": float(lo), "hi": float(hi), "p": float(p), "index": index, "level": used}


def union_intersection(diffs: np.ndarray, expect: str, level: float = 0.95) -> dict:
    r"""The test of "some one of K candidates a_k beats b" from paired replicates ``diffs`` (K, B) of
    :math:`d_k = a_k - b`: the mirror image of :func:`intersection_union` (it tests "b beats every a_k", with
    supported and contradicted swapped). ``supported`` iff some candidate's interval at the Bonferroni level
    :math:`1 - (1 - \text{level}) / K` lies above 0 (reported: the one with the largest lower bound there);
    ``contradicted`` iff every candidate's interval at ``level`` lies below 0 (reported: the one with the
    largest upper bound); ``inconclusive`` otherwise (reported: that candidate at the Bonferroni level). Same
    keys and p-value as :func:`intersection_union`."""
    mirrored = intersection_union(-np.asarray(diffs, dtype=np.float64), expect, level)
    swap = {"supported": "contradicted", "contradicted": "supported", "inconclusive": "inconclusive"}
    return {**mirrored, "verdict": swap[mirrored["verdict"]], "lo": -mirrored["hi"], "hi": -mirrored["lo"]}


def _best(runs: list[dict], metric: str) -> dict:
    """The candidate with the highest headline (``"head"``: first seed, identity resample) on ``metric``."""
    heads = [r["head"].get(metric, np.nan) for r in runs]
    if all(np.isnan(h) for h in heads):
        return runs[0]
    return runs[int(np.nanargmax(heads))]


def config_claims(config: dict, images_of) -> list[dict]:
    """The claims of a validated config, as the ``claims`` list of a spec.

    Built in: ``synergy`` (the tables.roi region set ``[all]`` against every single-family set of
    tables.roi.regions: "all beats every family"), ``ot_vs_mse_s1`` and ``ot_vs_mse_cross`` (tables.methods: OT
    at loss.mass minus MSE), ``partial_mass_<region>`` per region set of tables.lambda (every lambda < 1 against
    lambda = 1, when both are swept: "some lambda < 1 beats lambda = 1"); then tables.claims. ``images_of(trainset, region, objective)`` gives a cell's per-image files,
    one per seed of tables.seeds.
    """
    from brainot.config import objective as objective_of
    from brainot.config import parse_objective

    def run(trainset, region, objective):
        # "ot" is OT at loss.mass; "ot0.50" and "ot0.5" name the same run directory
        objective = objective_of(*(("ot", config["loss"]["mass"]) if objective == "ot" else parse_objective(objective)))
        return {"label": f"{trainset}/{region}/{objective}", "images": list(images_of(trainset, region, objective))}

    tables, regions = config["tables"], config["rois"]["regions"]
    roi_objective = objective_of(tables["roi"]["loss"], config["loss"]["mass"])
    out = []
    whole = [r for r in tables["roi"]["regions"] if regions[r] == ["all"]]
    single = [r for r in tables["roi"]["regions"]
              if len(regions[r]) == 1 and regions[r][0] in config["rois"]["families"]]
    if whole and single:
        out.append({"name": "synergy", "expect": "greater",
                    "a": [run(tables["roi"]["trainset"], whole[0], roi_objective)],
                    "b": [run(tables["roi"]["trainset"], r, roi_objective) for r in single]})
    methods = tables["methods"]
    for name, trainset in (("ot_vs_mse_s1", methods["s1"]), ("ot_vs_mse_cross", methods["cross"])):
        out.append({"name": name, "expect": "greater", "a": [run(trainset, methods["region"], "ot")],
                    "b": [run(trainset, methods["region"], "mse")]})
    lam = tables["lambda"]
    partial = [m for m in lam["masses"] if m < 1]
    if partial and 1.0 in lam["masses"]:
        for region in lam["regions"]:
            out.append({"name": f"partial_mass_{region}", "expect": "greater",
                        "a": [run(lam["trainset"], region, objective_of("ot", m)) for m in partial],
                        "b": [run(lam["trainset"], region, objective_of("ot", 1.0))]})
    for claim in tables["claims"]:
        out.append({"name": claim["name"], "expect": claim["expect"], "a": [run(**claim["a"])],
                    "b": [run(**claim["b"])]})
    return out


def claim_rows(name: str, a: list[dict], b: list[dict], expect: str, counts: np.ndarray, seed_index: np.ndarray,
               level: float = 0.95, metrics=CLAIM_METRICS) -> list[dict]:
    """One row per metric of claim ``name`` (a minus b, x100). ``a``/``b``: runs, each ``{"label": str, "data":
    [(table, corpus) per seed]}`` (:func:`brainot.scoring.image_scores.read`), one of the two sides possibly several
    candidates (module docstring); ``counts``, ``seed_index``: the plan (:func:`brainot.tables.bootstrap.plan`) over
    these images and seeds."""
    if len(a) > 1 and len(b) > 1:
        raise ClaimsError(f"claim {name!r}: only one side may list several runs; got {len(a)} and {len(b)}")
    n = counts.shape[1]
    plan0 = B.identity_plan(n)

    def scored(run: dict) -> dict:
        head = {m: v[0] for m, v in B.all_replicates(run["data"][:1], *plan0).items()}
        return {**run, "head": head, "reps": B.all_replicates(run["data"], counts, seed_index)}

    a, b = [scored(r) for r in a], [scored(r) for r in b]
    many, test = (a, union_intersection) if len(a) > 1 else (b, intersection_union)
    described = ("paired" if len(many) == 1 else
                 f"{test.__name__.replace('_', '-')} over {len(many)} {'a' if many is a else 'b'} runs")
    nan = np.full(len(counts), np.nan)
    rows = []
    for metric in metrics:
        ra, rb = _best(a, metric), _best(b, metric)
        estimate = 100 * (ra["head"].get(metric, np.nan) - rb["head"].get(metric, np.nan))
        diffs = np.stack([100 * (x["reps"].get(metric, nan) - y["reps"].get(metric, nan))
                          for x in a for y in b])                                  # (K, B)
        result = test(diffs, expect, level)
        rows.append({"claim": name, "metric": metric, "a": ra["label"], "b": rb["label"], "estimate": estimate,
                     "lo": result["lo"], "hi": result["hi"], "p": result["p"], "verdict": result["verdict"],
                     "expect": expect, "n_images": n, "n_seeds": len(ra["data"]), "resamples": len(counts),
                     "test": described, "interval_of": many[result["index"]]["label"],
                     "interval_level": result["level"]})
    return rows


def _load_side(claim: str, side: str, runs, cache: dict) -> list[dict]:
    if not isinstance(runs, list) or not runs:
        raise ClaimsError(f"claim {claim!r}: side {side!r} must be a non-empty list of runs")
    out = []
    for run in runs:
        if not isinstance(run, dict) or not isinstance(run.get("label"), str) or not run.get("images"):
            raise ClaimsError(f"claim {claim!r}: each run of side {side!r} needs a 'label' and a list 'images'")
        for path in run["images"]:
            if path not in cache:
                cache[path] = IS.read(path)
        out.append({"label": run["label"], "data": [cache[p] for p in run["images"]]})
    return out


def claims_table(spec: dict) -> pd.DataFrame:
    """claims.csv's rows (:data:`COLUMNS`) for a spec (module docstring), every claim on one shared plan."""
    missing = [k for k in ("resamples", "seed", "claims") if k not in spec]
    if missing:
        raise ClaimsError(f"--spec: missing key(s) {missing}; expected resamples, seed, level and claims")
    cache: dict = {}
    claims = spec["claims"]
    loaded = []
    for claim in claims:
        name = claim.get("name")
        if not isinstance(name, str) or claim.get("expect") not in ("greater", "less"):
            raise ClaimsError(f"claim {name!r}: needs a 'name' and 'expect' of 'greater' or 'less'")
        loaded.append((name, _load_side(name, "a", claim.get("a"), cache), _load_side(name, "b", claim.get("b"), cache),
                       claim["expect"]))
    if not loaded:
        return pd.DataFrame(columns=list(COLUMNS))
    sizes = {len(t) for t, _ in cache.values()}
    seeds = {len(r["data"]) for _, a, b, _ in loaded for r in (*a, *b)}
    if len(sizes) != 1 or len(seeds) != 1:
        raise ClaimsError(f"every run must have the same test images and seeds; got image counts {sorted(sizes)} "
                          f"and seed counts {sorted(seeds)}")
    counts, seed_index = B.plan(sizes.pop(), seeds.pop(), spec["resamples"], int(spec["seed"]))
    rows = [row for name, a, b, expect in loaded
            for row in claim_rows(name, a, b, expect, counts, seed_index, float(spec.get("level", 0.95)))]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write(table: pd.DataFrame, csv_path: str | Path) -> Path:
    """claims.csv (numbers with 4 decimals; p with 5) and its ``.parquet`` sibling; returns the parquet path."""
    text = table.copy()
    for col in ("estimate", "lo", "hi"):
        text[col] = [f"{v:.4f}" for v in table[col]]
    text["interval_level"] = [f"{v:.4f}" for v in table["interval_level"]]
    text["p"] = [f"{v:.5f}" for v in table["p"]]
    return write_table(table, csv_path, text)


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(prog="python -m brainot.tables.claims",
                                description="Paired bootstrap tests of the paper's comparisons -> claims.csv")
    p.add_argument("--spec", required=True, help="the claims as JSON (see the module docstring)")
    p.add_argument("--out", required=True, help="output CSV (a .parquet is written beside it)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as exc:
        raise ClaimsError(f"--spec: not valid JSON ({exc})") from None
    table = claims_table(spec)
    parquet = write(table, args.out)
    summary = table.groupby("verdict").size().to_dict() if len(table) else {}
    print(f"wrote {args.out} and {parquet}: {len(table)} rows {summary} in {time.perf_counter() - t0:.2f} s",
          file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
