"""The paper's tables from the per-run metrics JSONs (:mod:`brainot.scoring.score`), as CSV and Parquet.

* ``roi`` (Table 2): one row per configured region set, the ten metrics and "Valid Voxels" (n/total of the
  tables' subject, from ``results/tables/voxels.csv``), then the paper's Table 2 rows of the same region sets,
  marked ``source = "paper (reported)"``.
* ``methods`` (Table 1): this run's image-fed upper bound, OT and MSE (single- and cross-subject), then the
  paper's Table 1 as printed, in a block marked ``source = "paper (reported)"``.
* ``lambda`` (Fig. 5 / appendix A.1): the ten metrics per mass ratio per region set.

Metric columns are named as in the paper. In the CSV, a metric this run could not compute reads ``n/a``
(the reason is in ``notes``) and a cell the paper leaves empty ("None" in its table) is empty; the Parquet
file holds the same cells as floats with nulls.

With ``--intervals`` (the workflow always passes it) each table gets ``<metric>_lo`` and ``<metric>_hi`` columns
after its own (:func:`with_intervals`): the 95% paired-bootstrap interval of this run's rows over test images
and training seeds (docs/statistics.md); the paper's rows leave them empty.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

from brainot.data import layout
from brainot.io import read_metrics
from brainot.scoring.metrics import METRICS
from brainot.tables.files import write_table

THIS_RUN = "this run"
PAPER = "paper (reported)"

# Table 1 of the paper, transcribed cell for cell; "None" as printed.
# The row "BrainCap [17] [58]" prints two values per cell: it becomes two rows, (1st value) and (2nd value).
PAPER_TABLE1 = """\
Shikra-w/img	82.38	69.9	58.63	49.66	35.6	65.49	161.43	27.62	80.6	85.92
SDRecon [63]	36.21	17.11	7.72	3.43	10.03	25.13	13.83	5.02	61.07	66.36
OneLLM [22]	47.04	26.97	15.49	9.51	13.55	35.05	22.99	6.26	54.8	61.28
UniBrain [37]	None	None	None	None	16.90	22.20	None	None	None	None
BrainCap [17] [58]	55.96 57.19	36.21 37.17	22.7 23.78	14.51 15.85	16.68 18.6	40.69 36.67	41.3 49.51	9.06 12.39	64.31 65.49	69.9 None
UMBRAE-S1 [71]	57.63	38.02	25.00	16.76	18.41	42.15	51.93	11.83	66.44	72.12
UMBRAE [71]	59.44	40.48	27.66	19.03	19.45	43.71	61.06	12.79	67.78	73.54
UMBRAE(MSE)-S1*	57.33	37.69	24.88	16.83	18.23	41.61	51.50	11.86	66.47	72.21
UMBRAE(MSE)*	59.02	39.9	27.1	18.94	19.08	43.41	58.8	12.68	67.87	73.55
OT-S1	63.25	44.76	30.96	21.72	21.61	47.12	71.52	14.41	70.35	75.68
OT-Cross Subjects	64.12	45.18	31.16	21.50	21.42	46.83	72.90	14.51	69.95	75.44
"""

# Table 2 of the paper, transcribed cell for cell: region set (named as in config.yaml's rois.regions), the ten
# metrics, "Valid Voxels" (subject 1). The row markers are printed ambiguously; the mapping is config.yaml's.
PAPER_TABLE2 = """\
all	63.25	44.76	30.96	21.72	21.61	47.12	71.52	14.41	70.35	75.68	15724/15724
V	43.11	21.68	10.23	5.48	10.65	31.64	10.95	3.03	46.24	52.94	4657/15724
P	48.14	27.75	15.09	8.72	13.25	35.23	23.00	6.03	54.25	60.32	2252/15724
F	44.87	23.02	10.89	5.42	11.47	32.58	12.33	3.94	49.10	55.65	1042/15724
W	42.68	20.44	9.16	4.61	10.19	31.45	8.31	2.22	43.99	50.71	1736/15724
B	53.09	32.85	20.38	12.99	15.78	39.05	37.18	8.56	58.23	64.70	2934/15724
V+P	59.28	39.66	25.91	16.9	18.92	43.52	55.59	11.74	66.13	71.86	6706/15724
VPFWB	61.56	42.43	28.65	19.58	19.98	45.05	62.83	12.83	67.34	73.03	11051/15724
"""

# This run's Table 1 rows: method name (the paper's) -> the command-line option holding its metrics JSON.
METHOD_ROWS = (
    ("Shikra-w/img", "image_fed"),
    ("OT-S1", "ot_s1"),
    ("OT-Cross Subjects", "ot_cross"),
    ("UMBRAE(MSE)-S1*", "mse_s1"),
    ("UMBRAE(MSE)*", "mse_cross"),
)


class TableError(ValueError):
    """An input of a table is malformed or missing; the message names the file and key."""


def _cell(text: str) -> float:
    return math.nan if text == "None" else float(text)


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 as rows (source, method, ten metrics, notes); "None" -> NaN."""
    rows = []
    for line in PAPER_TABLE1.splitlines():
        method, *cells = line.split("\t")
        if len(cells) != len(METRICS):
            raise AssertionError(f"PAPER_TABLE1 row {method!r} has {len(cells)} cells")
        parts = [c.split(" ") for c in cells]
        for k in range(max(len(p) for p in parts)):
            name = method if len(parts[0]) == 1 else f"{method} ({['1st', '2nd'][k]} value)"
            note = "" if len(parts[0]) == 1 else f"the paper prints two values per cell in row {method!r}"
            rows.append({"source": PAPER, "method": name,
                         **{m: _cell(p[k]) for m, p in zip(METRICS, parts)}, "n": None, "notes": note})
    return pd.DataFrame(rows)


def paper_table2(regions: list[str]) -> pd.DataFrame:
    """The paper's Table 2 rows of those ``regions`` it reports, in the given order (source, region, ten metrics,
    Valid Voxels, notes); a region set the paper does not name has no row."""
    printed = {}
    for line in PAPER_TABLE2.splitlines():
        region, *cells, voxels = line.split("\t")
        if len(cells) != len(METRICS):
            raise AssertionError(f"PAPER_TABLE2 row {region!r} has {len(cells)} cells")
        printed[region] = {m: _cell(c) for m, c in zip(METRICS, cells)} | {"Valid Voxels": voxels}
    rows = [{"source": PAPER, "region": r, **printed[r], "n": None, "notes": ""} for r in regions if r in printed]
    return pd.DataFrame(rows, columns=["source", "region", *METRICS, "Valid Voxels", "n", "notes"])


def with_paper_rows(table: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """``table`` marked ``source = this run``, then ``paper``'s rows (columns the paper lacks stay empty)."""
    ours = table.assign(source=THIS_RUN)[["source", *table.columns]]
    return pd.concat([ours, paper], ignore_index=True) if len(paper) else ours


def load_metrics(path: str | Path) -> dict:
    """A metrics JSON of :mod:`brainot.scoring.score` (:func:`brainot.io.read_metrics`) as a table row: the ten
    metrics (None -> NaN), ``n`` and ``notes``."""
    data = read_metrics(path)
    row = {name: math.nan if data[name] is None else float(data[name]) for name in METRICS}
    row["n"] = data.get("n")
    row["notes"] = "; ".join(f"{k} n/a: {v}" for k, v in (data.get("unavailable") or {}).items())
    return row


def roi_table(metric_paths: list[str], regions: list[str], voxels_csv: str | Path, subject: str) -> pd.DataFrame:
    """Table 2: one row per region set, in the given order, with "Valid Voxels" of ``subject``, then the paper's
    rows of the same region sets (:func:`paper_table2`)."""
    if len(metric_paths) != len(regions):
        raise TableError(f"{len(metric_paths)} metrics files for {len(regions)} regions; expected one per region")
    voxels = pd.read_csv(voxels_csv)
    needed = ("region", "subject", "valid_voxels")
    missing = [c for c in needed if c not in voxels.columns]
    if missing:
        raise TableError(f"{voxels_csv}: missing column(s) {missing}; expected {list(needed)} (rule rois)")
    subject = layout.subj(subject)
    voxels = voxels[voxels["subject"].map(lambda s: layout.subj(int(s)) if str(s).isdigit() else str(s)) == subject]
    rows = []
    for region, path in zip(regions, metric_paths):
        match = voxels[voxels["region"].astype(str) == region]
        if len(match) != 1:
            raise TableError(f"{voxels_csv}: expected one row for region {region!r} and subject {subject!r}; "
                             f"found {len(match)}")
        rows.append({"region": region, **load_metrics(path), "Valid Voxels": str(match["valid_voxels"].iloc[0])})
    table = pd.DataFrame(rows)[["region", *METRICS, "Valid Voxels", "n", "notes"]]
    return with_paper_rows(table, paper_table2(regions))


def methods_table(paths: dict[str, str]) -> pd.DataFrame:
    """Table 1: this run's rows (:data:`METHOD_ROWS`), then the paper's rows, marked by ``source``."""
    ours = [{"source": THIS_RUN, "method": method, **load_metrics(paths[key])} for method, key in METHOD_ROWS]
    table = pd.concat([pd.DataFrame(ours), paper_table1()], ignore_index=True)
    return table[["source", "method", *METRICS, "n", "notes"]]


def lambda_table(metric_paths: list[str], regions: list[str], masses: list[float]) -> pd.DataFrame:
    """Fig. 5 / A.1: one row per (region, lambda); ``metric_paths`` ordered region-major, as the rule lists them."""
    if len(metric_paths) != len(regions) * len(masses):
        raise TableError(f"{len(metric_paths)} metrics files for {len(regions)} regions x {len(masses)} masses; "
                         "expected one per pair, region-major")
    pairs = [(r, m) for r in regions for m in masses]
    rows = [{"region": r, "lambda": float(m), **load_metrics(p)} for (r, m), p in zip(pairs, metric_paths)]
    return pd.DataFrame(rows)[["region", "lambda", *METRICS, "n", "notes"]]


def interval_columns() -> list[str]:
    """The interval columns the tables append after their own: ``<metric>_lo``, ``<metric>_hi`` per metric."""
    return [f"{m}_{end}" for m in METRICS for end in ("lo", "hi")]


def with_intervals(table: pd.DataFrame, images: list[list[str]], resamples: int | str, seed: int,
                   level: float = 0.95) -> pd.DataFrame:
    """``table`` with :func:`interval_columns` appended: the percentile interval (x100) of each metric of the
    first ``len(images)`` rows from the paired bootstrap (:mod:`brainot.tables.bootstrap`; docs/statistics.md);
    later rows (the paper's) get NaN. ``images[r]``: row r's per-image files, one per seed of tables.seeds
    (one file for a run without seeds). Every row is resampled with the same plan, of ``resamples`` replicates
    (an integer or ``"auto"``: :func:`brainot.tables.bootstrap.n_resamples`)."""
    from brainot.tables import bootstrap
    from brainot.scoring import image_scores

    if len(images) > len(table):
        raise TableError(f"per-image files for {len(images)} rows of a table of {len(table)}")
    runs = [[image_scores.read(path) for path in paths] for paths in images]
    sizes = {len(t) for row in runs for t, _ in row}
    if len(sizes) != 1:
        raise TableError(f"the per-image files cover different numbers of test images: {sorted(sizes)}; "
                         f"expected every run on the same test set ({images[0][0]} ...)")
    counts, seed_index = bootstrap.plan(sizes.pop(), max(len(r) for r in runs), resamples, seed)
    out = table.copy()
    for col in interval_columns():
        out[col] = math.nan
    for r, row in enumerate(runs):
        reps = bootstrap.all_replicates(row, counts, seed_index)
        for metric in METRICS:
            lo, hi = bootstrap.percentile_interval(reps[metric], level) if metric in reps else (math.nan, math.nan)
            out.loc[out.index[r], [f"{metric}_lo", f"{metric}_hi"]] = [100 * lo, 100 * hi]
    return out


def write_numeric(table: pd.DataFrame, csv_path: str | Path, float_format: str) -> Path:
    """Write a table of plain numbers as ``csv_path`` (floats as ``float_format``) and its ``.parquet`` sibling;
    returns the parquet path. (The paper's metric tables, with their n/a cells, go through :func:`write`.)"""
    return write_table(table, csv_path, float_format=float_format)


def write(table: pd.DataFrame, csv_path: str | Path) -> Path:
    """Write ``csv_path`` and its ``.parquet`` sibling. CSV metric cells: 2 decimals, ``n/a`` for a metric
    this run lacks, empty for one the paper leaves empty."""
    typed = table.copy()
    typed["n"] = typed["n"].astype("Int64")
    text = typed.copy()
    paper = text["source"] == PAPER if "source" in text else pd.Series(False, index=text.index)
    for name in [c for c in table.columns if c in METRICS or c in interval_columns()]:
        text[name] = [("" if is_paper else "n/a") if math.isnan(v) else f"{v:.2f}"
                      for v, is_paper in zip(table[name], paper)]
    return write_table(typed, csv_path, text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m brainot.tables.build",
                                description="Build the paper's tables (CSV + Parquet) from metrics JSONs.")
    sub = p.add_subparsers(dest="table", required=True)
    roi = sub.add_parser("roi", help="Table 2: metrics and valid voxels per region set")
    roi.add_argument("--metrics", nargs="+", required=True, help="metrics JSONs, one per region, in order")
    roi.add_argument("--regions", nargs="+", required=True, help="the region sets, in table order")
    roi.add_argument("--voxels", required=True, help="results/tables/voxels.csv (region, subject, valid_voxels)")
    roi.add_argument("--subject", required=True, help="the tables' subject, e.g. subj01")
    roi.add_argument("--out", required=True, help="output CSV (a .parquet is written beside it)")
    methods = sub.add_parser("methods", help="Table 1: this run's methods, then the paper's reported rows")
    for _, key in METHOD_ROWS:
        methods.add_argument(f"--{key.replace('_', '-')}", dest=key, required=True,
                             help=f"metrics JSON of the {dict((k, m) for m, k in METHOD_ROWS)[key]} row")
    methods.add_argument("--out", required=True, help="output CSV (a .parquet is written beside it)")
    lam = sub.add_parser("lambda", help="Fig. 5 / A.1: metrics per mass ratio per region set")
    lam.add_argument("--metrics", nargs="+", required=True, help="metrics JSONs, region-major over the masses")
    lam.add_argument("--regions", nargs="+", required=True, help="the region sets")
    lam.add_argument("--masses", nargs="+", type=float, required=True, help="the mass ratios lambda")
    lam.add_argument("--out", required=True, help="output CSV (a .parquet is written beside it)")
    for table in (roi, methods, lam):
        table.add_argument("--intervals", help="JSON {resamples, seed, level, images: [[per-image file per seed] "
                                               "per row]}: append <metric>_lo/_hi columns (brainot.tables.bootstrap)")
    return p.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.table == "roi":
        table = roi_table(args.metrics, args.regions, args.voxels, args.subject)
    elif args.table == "methods":
        table = methods_table({key: getattr(args, key) for _, key in METHOD_ROWS})
    else:
        table = lambda_table(args.metrics, args.regions, args.masses)
    if args.intervals:
        spec = json.loads(args.intervals)
        table = with_intervals(table, spec["images"], spec["resamples"], spec["seed"], spec["level"])
    parquet = write(table, args.out)
    print(f"wrote {args.out} and {parquet}: {len(table)} rows in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
