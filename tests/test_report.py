"""The HTML report of the micro workflow (``snakemake --report``): a self-contained HTML document that embeds
every figure and table byte for byte with its caption, and figures whose numbers follow from the run's files.

Reads the session's ``micro_workflow`` run (tests/conftest.py); writes the report outside it.
"""

from __future__ import annotations

import base64
import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, run_micro_workflow
from PIL import Image

from brainot import config as bcfg
from brainot import io as data

pytestmark = pytest.mark.slow      # the session's micro workflow: minutes on a busy 2-core machine


@pytest.fixture(scope="module")
def micro_cfg():
    return bcfg.load(REPO / "config.yaml", REPO / "demo" / "config.yaml", REPO / "tests" / "micro.yaml")


@pytest.fixture(scope="module")
def report(micro_workflow, tmp_path_factory):
    """(html text, the report's ``results`` object: path -> name, caption, data_uri, ...)."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    run_micro_workflow(micro_workflow, extra=("--report", str(path)))
    html = path.read_text()
    match = re.search(r"\n\s*var results = (\{.*?\});\n", html)
    assert match, "the report holds no `var results = {...};` object"
    return html, json.loads(match.group(1))


def figure_paths(cfg):
    subjects = [f"subj{s:02d}" for s in cfg["nsd"]["subjects"]]
    return ["results/figures/correlation.png", *[f"results/figures/roi_maps_{s}.png" for s in subjects],
            "results/figures/lambda.png", "results/figures/case_study.png"]


TABLES = ["results/tables/correlation.csv", "results/tables/case_study.csv", "results/tables/roi.csv",
          "results/tables/methods.csv", "results/tables/lambda.csv", "results/tables/voxels.csv",
          "results/tables/claims.csv"]


def embedded_bytes(entry) -> bytes:
    header, _, payload = entry["data_uri"].partition("base64,")
    assert header.startswith("data:"), header
    return base64.b64decode(payload)


def test_report_is_an_html_document_with_the_workflow_description(report):
    html, _ = report
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert html.rstrip().lower().endswith("</html>")
    # workflow/report/workflow.rst, rendered with this run's config
    assert "reproduces <em>Optimal Transport for Brain-Image Alignment</em>" in html
    assert "subjects [1, 2]" in html


def test_report_embeds_every_figure_and_table_with_its_caption(report, micro_workflow, micro_cfg):
    _, results = report
    wanted = figure_paths(micro_cfg) + TABLES
    missing = [p for p in wanted if p not in results]
    assert not missing, f"not in the report: {missing}; it holds {sorted(results)}"
    for path in wanted:
        entry = results[path]
        assert embedded_bytes(entry) == (micro_workflow / path).read_bytes(), path
        assert entry["caption"].startswith("<p><strong>"), (path, entry["caption"][:200])
    assert "Fig. 1: correlation of predicted and image embeddings" in results["results/figures/correlation.png"]["caption"]
    assert "Fig. 7: case study" in results["results/figures/case_study.png"]["caption"]
    assert "Table 2: region sets" in results["results/tables/roi.csv"]["caption"]
    # the captions are rendered with the run's settings
    assert "(CIDEr, METEOR, ROUGE; x100)" in results["results/figures/lambda.png"]["caption"]


def test_figures_are_pngs_of_readable_size(micro_workflow, micro_cfg):
    for path in figure_paths(micro_cfg):
        with Image.open(micro_workflow / path) as img:
            img.verify()
        with Image.open(micro_workflow / path) as img:
            assert img.format == "PNG", path
            assert img.width >= 900 and img.height >= 450, (path, img.size)
            # not a blank canvas: many distinct colours
            assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50, path


def test_correlation_table_matches_a_direct_computation(micro_workflow, micro_cfg):
    table = pd.read_csv(micro_workflow / "results/tables/correlation.csv")
    ts, fig = micro_cfg["tables"], micro_cfg["figures"]["correlation"]
    objectives = ["mse", bcfg.objective("ot", micro_cfg["loss"]["mass"])]
    assert table["objective"].tolist() == objectives
    assert table["model"].tolist() == ["MSE", f"OT (λ = {micro_cfg['loss']['mass']:g})"]
    subject = f"subj{ts['subject']:02d}"
    for objective, row in zip(objectives, table.itertuples()):
        pred_path = micro_workflow / (f"results/predictions/{ts['methods']['s1']}/{ts['methods']['region']}/"
                                      f"{objective}/seed{ts['seeds'][0]}/{subject}.h5")
        with h5py.File(pred_path, "r") as fh:
            pred, ids = fh["tokens"][()].astype(np.float64), fh["nsd_id"][()]
        image = data.read_tokens(micro_workflow / f"results/embeddings/{micro_cfg['embedding']['name']}/shared.h5",
                                 ids).astype(np.float64)
        k = min(fig["n_images"], len(ids))
        assert row.n_images == k
        # the micro config's settings: mean pooling over tokens, centred on the test-set mean
        assert (fig["pooling"], fig["center"]) == ("mean", True)
        p = (pred - pred.mean(axis=0)).mean(axis=1)[:k]
        q = (image - image.mean(axis=0)).mean(axis=1)[:k]
        r = np.corrcoef(p, q)[:k, k:]
        assert np.all(np.abs(r) <= 1)
        assert row.mean_diagonal_r == pytest.approx(np.trace(r) / k, abs=1e-4)
        assert row.mean_off_diagonal_r == pytest.approx(r[~np.eye(k, dtype=bool)].mean(), abs=1e-4)


def test_case_study_table_holds_the_runs_captions(micro_workflow, micro_cfg):
    table = pd.read_csv(micro_workflow / "results/tables/case_study.csv", dtype={"source": str})
    ts, fig = micro_cfg["tables"], micro_cfg["figures"]["case_study"]
    subject = f"subj{ts['subject']:02d}"
    refs = json.loads((micro_workflow / f"results/references/{subject}.json").read_text())
    objective = bcfg.objective("ot", micro_cfg["loss"]["mass"]) if ts["roi"]["loss"] == "ot" else "mse"
    captions = {r: json.loads((micro_workflow / f"results/captions/{ts['roi']['trainset']}/{r}/{objective}/"
                                               f"seed{ts['seeds'][0]}/{subject}.json").read_text())
                for r in fig["regions"]}
    n_test = len(refs)
    positions = np.unique(np.linspace(0, n_test - 1, min(fig["n_images"], n_test)).round().astype(int)).tolist()
    assert table["test_index"].unique().tolist() == positions
    expected = []
    for pos in positions:
        expected.append(("ground truth", refs[str(pos)][0]))
        expected += [(r, captions[r][str(pos)]) for r in fig["regions"]]
    assert list(zip(table["source"], table["caption"])) == expected
    with h5py.File(micro_workflow / f"results/voxels/{subject}.h5", "r") as fh:
        test_ids = fh["test/nsd_id"][()]
    assert table["nsd_id"].tolist() == [int(test_ids[p]) for p in table["test_index"]]
