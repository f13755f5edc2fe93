"""The table builders on metrics JSONs written here: row order, columns, n/a cells, the paper's Table 1 block,
and that a region set added to the config becomes a row whose cells are DAG targets."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from brainot import tables
from brainot.config import REPO
from brainot.metrics import METRICS


def metrics_json(path, base: float, spice: bool = True):
    """A metrics JSON as brainot.score writes it; metric k holds base + k (so every cell is traceable)."""
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
    with pytest.raises(tables.TableError, match=r"bad.json: missing metric 'BLEU2'"):
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
