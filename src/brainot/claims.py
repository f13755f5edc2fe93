"""The paper's comparisons as paired bootstrap tests: ``results/tables/claims.csv``.

Each claim compares run a with run b on the same test images (a minus b, x100, per metric). Either side may be
a list of candidate runs, of which the one with the best headline on that metric is taken (e.g. "all regions
minus the best single family": b is every family, the best chosen per metric by its own score). Every run is
given by its per-image files (:mod:`brainot.image_scores`), one per training seed, first seed first.

Per claim and metric: ``estimate`` = headline(a) - headline(b) of the first seed (pycocoevalcap's numbers);
``lo``, ``hi`` = the percentile interval of the paired bootstrap replicates of the difference (seeds and images
resampled, :mod:`brainot.bootstrap`); ``p`` = its two-sided bootstrap p-value; ``verdict``:

* ``supported``: the interval excludes 0 on the claimed side (``lo > 0`` for ``expect = greater``);
* ``contradicted``: it excludes 0 on the other side;
* ``inconclusive``: it contains 0 (or the metric is unavailable: NaN interval).

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

from brainot import bootstrap as B
from brainot import image_scores as IS

# The metrics claims.csv tests (the per-image files hold every metric; SPICE only with its jars).
CLAIM_METRICS = ("CIDEr", "METEOR", "ROUGE", "BLEU4", "BLEU1", "SPICE", "CLIP-S", "RefCLIP-S")
COLUMNS = ("claim", "metric", "a", "b", "estimate", "lo", "hi", "p", "verdict", "expect", "n_images", "n_seeds",
           "resamples")
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


def _best(runs: list[dict], metric: str) -> dict:
    """The candidate with the highest headline (``"head"``: first seed, identity resample) on ``metric``."""
    heads = [r["head"].get(metric, np.nan) for r in runs]
    if all(np.isnan(h) for h in heads):
        return runs[0]
    return runs[int(np.nanargmax(heads))]


def config_claims(config: dict, images_of) -> list[dict]:
    """The claims of a validated config, as the ``claims`` list of a spec.

    Built in: ``synergy`` (the tables.roi region set ``[all]`` minus the best single-family set of
    tables.roi.regions), ``ot_vs_mse_s1`` and ``ot_vs_mse_cross`` (tables.methods: OT at loss.mass minus MSE),
    ``partial_mass_<region>`` per region set of tables.lambda (the best lambda < 1 minus lambda = 1, when both
    are swept); then tables.claims. ``images_of(trainset, region, objective)`` gives a cell's per-image files,
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
    """One row per metric of claim ``name`` (a minus b, x100). ``a``/``b``: candidate runs, each
    ``{"label": str, "data": [(table, corpus) per seed]}`` (:func:`brainot.image_scores.read`); ``counts``,
    ``seed_index``: the plan (:func:`brainot.bootstrap.plan`) over these images and seeds."""
    n = counts.shape[1]
    plan0 = B.identity_plan(n)

    def scored(run: dict) -> dict:
        head = {m: v[0] for m, v in B.all_replicates(run["data"][:1], *plan0).items()}
        return {**run, "head": head, "reps": B.all_replicates(run["data"], counts, seed_index)}

    a, b = [scored(r) for r in a], [scored(r) for r in b]
    nan = np.full(len(counts), np.nan)
    rows = []
    for metric in metrics:
        ra, rb = _best(a, metric), _best(b, metric)
        estimate = 100 * (ra["head"].get(metric, np.nan) - rb["head"].get(metric, np.nan))
        diff = 100 * (ra["reps"].get(metric, nan) - rb["reps"].get(metric, nan))
        lo, hi = B.percentile_interval(diff, level)
        rows.append({"claim": name, "metric": metric, "a": ra["label"], "b": rb["label"], "estimate": estimate,
                     "lo": lo, "hi": hi, "p": B.p_value(diff), "verdict": verdict(lo, hi, expect),
                     "expect": expect, "n_images": n, "n_seeds": len(ra["data"]), "resamples": len(counts)})
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
    counts, seed_index = B.plan(sizes.pop(), seeds.pop(), int(spec["resamples"]), int(spec["seed"]))
    rows = [row for name, a, b, expect in loaded
            for row in claim_rows(name, a, b, expect, counts, seed_index, float(spec.get("level", 0.95)))]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write(table: pd.DataFrame, csv_path: str | Path) -> Path:
    """claims.csv (numbers with 4 decimals; p with 5) and its ``.parquet`` sibling; returns the parquet path."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    parquet = csv_path.with_suffix(".parquet")
    table.to_parquet(parquet, index=False)
    text = table.copy()
    for col in ("estimate", "lo", "hi"):
        text[col] = [f"{v:.4f}" for v in table[col]]
    text["p"] = [f"{v:.5f}" for v in table["p"]]
    text.to_csv(csv_path, index=False)
    return parquet


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(prog="python -m brainot.claims",
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
