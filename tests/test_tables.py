"""The table builders on metrics JSONs written here: row order, columns, n/a cells, the paper's Table 1 block,
and that a region set added to the config becomes a row whose cells are DAG targets."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from brainot.config import REPO
from brainot.io import DataError
from brainot.scoring.metrics import METRICS
from brainot.tables import build as tables


def metrics_json(path, base: float, spice: bool = True):
    """A metrics JSON as brainot.scoring.score writes it; metric k holds base + k (so every cell is traceable)."""
    data = {name: round(base + k, 2) for k, name in enumerate(METRICS)}
    data["n"] = 982
    data["unavailable"] = {}
    if not spice:
        data["SPICE"] = None
        data["unavailable"]["SPICE"] = "score.spice_jars is not set"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def test_roi_table_keeps_config_order_and_reads_valid_voxels(tmp_path):
    regions = ["all", "V", "P", "V+P"]          # config order, not sorted
    paths = [metrics_json(tmp_path / r / "subj01.json", 10 * i, spice=(r != "P")) for i, r in enumerate(regions)]
    voxels = pd.DataFrame({
        "region": ["all", "V", "P", "V+P", "all", "V", "P", "V+P"],
        "subject": ["subj01"] * 4 + ["subj02"] * 4,
        "n": [15724, 4657, 2252, 6706, 14278, 4000, 2000, 6000],
        "total": [15724] * 4 + [14278] * 4,
    })
    voxels["valid_voxels"] = [f"{n}/{t}" for n, t in zip(voxels["n"], voxels["total"])]
    voxels.to_csv(tmp_path / "voxels.csv", index=False)
    out = tmp_path / "tables" / "roi.csv"
    tables.main(["roi", "--metrics", *paths, "--regions", *regions, "--voxels", str(tmp_path / "voxels.csv"),
                 "--subject", "subj01", "--out", str(out)])
    csv = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["source", "region", *METRICS, "Valid Voxels", "n", "notes"]
    assert list(csv["source"]) == ["this run"] * 4 + ["paper (reported)"] * 4
    assert list(csv["region"]) == regions * 2
    assert list(csv["Valid Voxels"]) == ["15724/15724", "4657/15724", "2252/15724", "6706/15724"] * 2
    assert csv.loc[3, "CIDEr"] == "36.00" and csv.loc[1, "BLEU1"] == "10.00"
    assert csv.loc[2, "SPICE"] == "n/a" and "SPICE n/a: score.spice_jars is not set" in csv.loc[2, "notes"]
    parquet = pd.read_parquet(out.with_suffix(".parquet"))
    assert parquet["CIDEr"].dtype == float and math.isnan(parquet.loc[2, "SPICE"])
    assert parquet["CIDEr"].tolist() == [6.0, 16.0, 26.0, 36.0, 71.52, 10.95, 23.00, 55.59]


def test_roi_table_shows_the_papers_table2_rows_of_the_same_region_sets(tmp_path):
    """The paper's values sit beside ours for the region sets it reports; one it does not name gets no row."""
    regions = ["VPFWB", "F", "mine"]
    paths = [metrics_json(tmp_path / f"{r}.json", 1) for r in regions]
    pd.DataFrame({"region": regions, "subject": ["subj01"] * 3, "valid_voxels": ["11051/15724", "1042/15724", "9/9"]}) \
        .to_csv(tmp_path / "voxels.csv", index=False)
    table = tables.roi_table(paths, regions, tmp_path / "voxels.csv", "subj01")
    paper = table[table["source"] == tables.PAPER].set_index("region")
    assert list(paper.index) == ["VPFWB", "F"]
    # Table 2 as printed: the five-family row and the face row
    assert paper.loc["VPFWB", ["BLEU1", "CIDEr", "RefCLIP-S"]].tolist() == [61.56, 62.83, 73.03]
    assert paper.loc["F", ["BLEU4", "SPICE", "Valid Voxels"]].tolist() == [5.42, 3.94, "1042/15724"]
    # the paper's all-regions row is its OT-S1 row of Table 1
    row1 = tables.paper_table1().set_index("method").loc["OT-S1", list(METRICS)]
    assert tables.paper_table2(["all"]).iloc[0][list(METRICS)].tolist() == row1.tolist()


def test_roi_table_names_a_missing_voxel_row(tmp_path):
    pd.DataFrame({"region": ["all"], "subject": ["subj01"], "n": [5], "total": [5], "valid_voxels": ["5/5"]}) \
        .to_csv(tmp_path / "voxels.csv", index=False)
    path = metrics_json(tmp_path / "m.json", 1)
    with pytest.raises(tables.TableError, match=r"voxels.csv: expected one row for region 'V' and subject 'subj01'"):
        tables.roi_table([path], ["V"], tmp_path / "voxels.csv", "subj01")


def test_methods_table_puts_this_run_above_the_papers_rows(tmp_path):
    keys = ["image_fed", "ot_s1", "ot_cross", "mse_s1", "mse_cross"]
    paths = {k: metrics_json(tmp_path / f"{k}.json", 100 * (i + 1), spice=False) for i, k in enumerate(keys)}
    out = tmp_path / "methods.csv"
    tables.main(["methods", *[a for k in keys for a in (f"--{k.replace('_', '-')}", paths[k])], "--out", str(out)])
    csv = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["source", "method", *METRICS, "n", "notes"]
    ours = csv[csv["source"] == "this run"]
    assert list(ours["method"]) == ["Shikra-w/img", "OT-S1", "OT-Cross Subjects", "UMBRAE(MSE)-S1*", "UMBRAE(MSE)*"]
    assert list(ours["BLEU1"]) == ["100.00", "200.00", "300.00", "400.00", "500.00"]
    assert set(ours["SPICE"]) == {"n/a"}
    paper = csv[csv["source"] == "paper (reported)"].set_index("method")
    assert list(csv.index[csv["source"] == "paper (reported)"]) == list(range(5, 17))
    # spot checks against the paper's Table 1 text
    assert paper.loc["Shikra-w/img", "CIDEr"] == "161.43" and paper.loc["Shikra-w/img", "BLEU2"] == "69.90"
    assert paper.loc["OT-S1", "CIDEr"] == "71.52" and paper.loc["OT-S1", "RefCLIP-S"] == "75.68"
    assert paper.loc["OT-Cross Subjects", "BLEU1"] == "64.12" and paper.loc["OT-Cross Subjects", "BLEU4"] == "21.50"
    assert paper.loc["UMBRAE(MSE)*", "CIDEr"] == "58.80" and paper.loc["UMBRAE(MSE)-S1*", "SPICE"] == "11.86"
    assert paper.loc["UniBrain [37]", "BLEU1"] == "" and paper.loc["UniBrain [37]", "METEOR"] == "16.90"
    assert paper.loc["UniBrain [37]", "ROUGE"] == "22.20" and paper.loc["UniBrain [37]", "CLIP-S"] == ""
    assert paper.loc["BrainCap [17] [58] (1st value)", "BLEU1"] == "55.96"
    assert paper.loc["BrainCap [17] [58] (2nd value)", "BLEU1"] == "57.19"
    assert paper.loc["BrainCap [17] [58] (1st value)", "RefCLIP-S"] == "69.90"
    assert paper.loc["BrainCap [17] [58] (2nd value)", "RefCLIP-S"] == ""
    assert paper.loc["SDRecon [63]", "SPICE"] == "5.02" and paper.loc["UMBRAE [71]", "METEOR"] == "19.45"
    parquet = pd.read_parquet(out.with_suffix(".parquet"))
    assert len(parquet) == 17 and parquet["BLEU1"].isna().sum() == 1        # UniBrain only


def test_lambda_table_is_region_major_over_masses(tmp_path):
    regions, masses = ["all", "P"], [0.1, 0.5, 1.0]
    paths = [metrics_json(tmp_path / r / f"ot{m:g}.json", 10 * i + j) for i, r in enumerate(regions)
             for j, m in enumerate(masses)]
    out = tmp_path / "lambda.csv"
    tables.main(["lambda", "--metrics", *paths, "--regions", *regions, "--masses", *map(str, masses),
                 "--out", str(out)])
    table = pd.read_parquet(out.with_suffix(".parquet"))
    assert list(zip(table["region"], table["lambda"])) == [(r, m) for r in regions for m in masses]
    assert table["BLEU1"].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
    with pytest.raises(tables.TableError, match="5 metrics files for 2 regions x 3 masses"):
        tables.lambda_table(paths[:5], regions, masses)


def test_a_metrics_file_without_a_metric_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"BLEU1": 1.0}))
    with pytest.raises(DataError, match=r"bad.json: missing metric 'BLEU2'; expected the output of "
                                          r"python -m brainot.scoring.score"):
        tables.load_metrics(bad)


def test_a_new_region_set_in_the_config_is_a_new_scored_row(tmp_path):
    """Dry run: adding a region set to rois.regions and tables.roi.regions schedules its training, captions and
    metrics, and table_roi takes its metrics JSON as an input."""
    extra = {"rois": {"regions": {"FW": ["F", "W"]}}, "tables": {"roi": {"regions": ["all", "FW"]}}}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "results/tables/roi.csv",
                          "-n", "--cores", "1",
                          "--configfile", str(REPO / "demo" / "config.yaml"), str(tmp_path / "extra.yaml")],
                         cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    scored = set(re.findall(r"results/metrics/(\S+)/subj01\.json", out.stdout))
    assert scored == {"subj01/all/ot0.5/seed0", "subj01/FW/ot0.5/seed0"}


def scored_run(json_path, rng, shift=0.0, n=80):
    """A metrics JSON and its per-image file (brainot.scoring.image_scores) that agree: the JSON's numbers are the
    per-image file's corpus scores x100. CLIP-S, RefCLIP-S and SPICE are unavailable."""
    from brainot.scoring import image_scores

    guess = rng.integers(5, 12, size=(n, 1)) - np.arange(4)
    correct = np.minimum(guess, rng.binomial(guess, np.clip(0.5 + shift - 0.1 * np.arange(4), 0, 1)))
    table = pd.DataFrame(np.column_stack([guess[:, 0], guess[:, 0] + rng.integers(-2, 3, size=n), guess, correct]),
                         columns=list(image_scores.BLEU_STATS))
    for name, scale in (("METEOR", 0.3), ("ROUGE", 0.5), ("CIDEr", 1.0)):
        table[name] = np.clip(rng.normal(scale * (1 + shift), 0.2 * scale, size=n), 0, None)
    corpus = {"METEOR": float(table["METEOR"].mean()) * 1.01}
    image_scores.write(table, image_scores.path_for(json_path), corpus)
    scores = image_scores.corpus_scores(table, corpus)
    data = {m: (round(100 * scores[m], 2) if m in scores else None) for m in METRICS}
    data.update(n=n, unavailable={m: "not computed here" for m in ("SPICE", "CLIP-S", "RefCLIP-S")})
    json_path.write_text(json.dumps(data))
    return str(json_path), str(image_scores.path_for(json_path))


def test_intervals_bracket_this_runs_numbers_and_leave_the_papers_rows_empty(tmp_path):
    rng = np.random.default_rng(0)
    keys = ["image_fed", "ot_s1", "ot_cross", "mse_s1", "mse_cross"]
    runs = {k: scored_run(tmp_path / f"{k}.json", rng, shift=0.1 * i) for i, k in enumerate(keys)}
    # OT-S1 has a second seed 0.3 better: its interval covers both seeds; the others' runs list one file
    runs["ot_s1_seed1"] = scored_run(tmp_path / "ot_s1_seed1.json", rng, shift=0.4)
    images = [[runs[k][1]] for k in keys]
    images[1].append(runs["ot_s1_seed1"][1])
    intervals = json.dumps({"resamples": 1000, "seed": 0, "level": 0.95, "images": images})
    out = tmp_path / "methods.csv"
    tables.main(["methods", *[a for k in keys for a in (f"--{k.replace('_', '-')}", runs[k][0])],
                 "--intervals", intervals, "--out", str(out)])
    csv = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(csv.columns) == ["source", "method", *METRICS, "n", "notes", *tables.interval_columns()]
    ours, paper = csv[csv["source"] == "this run"], csv[csv["source"] == "paper (reported)"]
    assert (paper[tables.interval_columns()] == "").all().all()
    assert set(ours["CLIP-S_lo"]) == {"n/a"} and set(ours["SPICE_hi"]) == {"n/a"}
    for metric in ("BLEU1", "BLEU4", "METEOR", "ROUGE", "CIDEr"):
        lo, mid, hi = (ours[c].astype(float) for c in (f"{metric}_lo", metric, f"{metric}_hi"))
        assert ((lo < mid) & (mid < hi)).all(), metric
    parquet = pd.read_parquet(out.with_suffix(".parquet"))
    parquet = parquet[parquet["source"] == "this run"].set_index("method")
    width = parquet["CIDEr_hi"] - parquet["CIDEr_lo"]
    assert width["OT-S1"] > 25 > 2 * max(width["OT-Cross Subjects"], width["UMBRAE(MSE)-S1*"])
    # the interval (seed 0 or seed 1, each ~0.3 apart in CIDEr) reaches up to the second seed's score
    assert parquet.loc["OT-S1", "CIDEr_hi"] > parquet.loc["OT-S1", "CIDEr"] + 20


def test_several_seeds_schedule_every_seed_of_every_cell(tmp_path):
    """Dry run: tables.seeds [0, 2] trains and scores both seeds of each Table 2 cell; the table reads both
    per-image files and only the first seed's metrics JSON."""
    extra = {"tables": {"seeds": [0, 2], "roi": {"regions": ["all", "V"]}}}
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "results/tables/roi.csv",
                          "-n", "-p", "--cores", "1",
                          "--configfile", str(REPO / "demo" / "config.yaml"), str(tmp_path / "extra.yaml")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    scored = set(re.findall(r"results/metrics/(\S+)/subj01\.json", out.stdout))
    assert scored == {f"subj01/{r}/ot0.5/seed{s}" for r in ("all", "V") for s in (0, 2)}
    command = next(line for line in out.stdout.splitlines() if "brainot.tables.build roi" in line)
    assert "seed2/subj01.images.parquet" in command and "seed2/subj01.json" not in command
