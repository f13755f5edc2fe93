"""The paper's figures on small inputs built here in the docs/contracts.md formats: Fig. 1's matrix against a direct
per-pair Pearson computation, Fig. 3's panels and counts against brainot.data.rois on the simulated NSD, Fig. 5's lines
from a lambda table written by brainot.tables.build, Fig. 7's captions in order, and the figures' config check."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from PIL import Image
from scipy.stats import pearsonr

from brainot import config as bcfg
from brainot import io as bio
from brainot.config import REPO
from brainot.data import layout
from brainot.data.extract import nsdgeneral_voxels
from brainot.data.rois import voxel_labels
from brainot.figures import case_study, correlation, lambda_curves, roi_maps
from brainot.figures.__main__ import main as figures_main
from brainot.io import DataError
from brainot.scoring.metrics import METRICS
from brainot.tables import build as tables

T, D = 4, 6


# ------------------------------------------------------------------------------------------- Fig. 1
def write_embeddings(path, ids, tokens):
    with h5py.File(path, "w") as fh:
        fh["tokens"] = tokens.astype(np.float16)
        fh["nsd_id"] = np.asarray(ids, dtype=np.int64)


def write_predictions(path, ids, tokens):
    bio.write_predictions(path, tokens, np.asarray(ids), subject="subj01", region="all", objective="ot0.5",
                          model="model.pt", embedding="clip")


@pytest.fixture
def fig1_inputs(tmp_path):
    """12 test images among 30 embedded ones (ids interleaved, so a positional mix-up would show); the
    predictions are the image tokens plus noise plus a shared offset."""
    rng = np.random.default_rng(0)
    all_ids = np.arange(30) * 3
    image = rng.normal(size=(30, T, D)).astype(np.float16).astype(np.float64)
    test_ids = all_ids[::2][:12]
    truth = image[::2][:12]
    pred = (truth + 0.8 * rng.normal(size=truth.shape) + 5.0).astype(np.float32).astype(np.float64)
    write_embeddings(tmp_path / "emb.h5", all_ids, image)
    write_predictions(tmp_path / "pred.h5", test_ids, pred)
    return tmp_path / "pred.h5", tmp_path / "emb.h5", pred, truth, test_ids


def direct_r(pred, truth, k, pooling, center):
    """Pearson r pair by pair (scipy), pooling and centering written out independently of the module."""
    if center:
        pred, truth = pred - pred.mean(axis=0), truth - truth.mean(axis=0)
    pool = (lambda x: x.mean(axis=1)) if pooling == "mean" else (lambda x: x.reshape(len(x), -1))
    p, q = pool(pred[:k]), pool(truth[:k])
    return np.array([[pearsonr(p[i], q[j]).statistic for j in range(k)] for i in range(k)])


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
@pytest.mark.parametrize("center", [True, False])
def test_correlation_matrix_is_pearson_of_each_pair(fig1_inputs, pooling, center):
    pred_path, emb_path, pred, truth, ids = fig1_inputs
    result = correlation.correlation(pred_path, emb_path, "ot0.5", n_images=5, pooling=pooling, center=center)
    assert result.matrix.shape == (5, 5)
    np.testing.assert_allclose(result.matrix, direct_r(pred, truth, 5, pooling, center), atol=1e-10)
    np.testing.assert_array_equal(result.nsd_id, ids[:5])
    off = result.matrix[~np.eye(5, dtype=bool)]
    assert result.mean_diagonal == pytest.approx(np.trace(result.matrix) / 5)
    assert result.mean_off_diagonal == pytest.approx(off.mean())


def test_matched_pairs_correlate_more_and_the_summary_says_so(fig1_inputs):
    pred_path, emb_path, *_ = fig1_inputs
    results = [correlation.correlation(pred_path, emb_path, obj, 50, "flatten", True) for obj in ("mse", "ot0.5")]
    assert len(results[0].matrix) == 12                    # n_images is clipped to the test set
    table = correlation.summary(results, "flatten", True)
    assert table["model"].tolist() == ["MSE", "OT (λ = 0.5)"]
    assert table["n_images"].tolist() == [12, 12]
    # predictions = truth + noise: the planted pairs stand out
    assert (table["mean_diagonal_r"] > table["mean_off_diagonal_r"] + 0.3).all()


def test_correlation_plot_shows_each_matrix_on_one_colour_scale(fig1_inputs):
    pred_path, emb_path, *_ = fig1_inputs
    results = [correlation.correlation(pred_path, emb_path, obj, 8, "mean", True) for obj in ("mse", "ot0.5")]
    fig, axes = correlation.plot(results)
    assert [ax.get_title().splitlines()[0] for ax in axes] == ["MSE", "OT (λ = 0.5)"]
    for ax, result in zip(axes, results):
        np.testing.assert_array_equal(ax.images[0].get_array(), result.matrix)
        assert ax.get_xlabel() == "image embedding (test index)"
        assert ax.get_ylabel() == "predicted embedding (test index)"
    assert axes[0].images[0].get_clim() == axes[1].images[0].get_clim()
    vmax = max(np.abs(r.matrix).max() for r in results)
    assert axes[0].images[0].get_clim() == pytest.approx((-vmax, vmax))
    assert any(ax.get_ylabel() == "Pearson r" for ax in fig.axes)     # the shared colour bar


def test_correlation_rejects_predictions_of_other_embeddings(fig1_inputs, tmp_path):
    pred_path, _, _, _, ids = fig1_inputs
    other = tmp_path / "other.h5"
    write_embeddings(other, ids, np.zeros((len(ids), T + 1, D)))
    with pytest.raises(DataError, match=r"other\.h5.*\(5, 6\)"):
        correlation.correlation(pred_path, other, "mse", 4, "mean", True)


def test_correlation_cli_writes_figure_and_table(fig1_inputs, tmp_path, capsys):
    pred_path, emb_path, *_ = fig1_inputs
    png, csv = tmp_path / "out" / "fig1.png", tmp_path / "out" / "fig1.csv"
    figures_main(["correlation", "--predictions", str(pred_path), str(pred_path), "--objectives", "mse", "ot0.5",
                  "--embeddings", str(emb_path), "--cfg", '{"n_images": 6, "pooling": "mean", "center": true}',
                  "--out-png", str(png), "--out-csv", str(csv)])
    table = pd.read_csv(csv)
    assert table["objective"].tolist() == ["mse", "ot0.5"]
    assert table["n_images"].tolist() == [6, 6]
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 800 and img.height > 400
    assert "mean_diagonal_r" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- Fig. 3
@pytest.fixture
def simulated_labels(simulated_nsd, sim_cfg):
    """brainot.data.rois' per-voxel table and per-family counts of subj01 of the simulated NSD (all nsdgeneral voxels)."""
    nsd = {**sim_cfg["nsd"], "dir": str(simulated_nsd)}
    general = simulated_nsd / layout.roi(1, "nsdgeneral")
    shape, xyz = nsdgeneral_voxels(general)
    labels, counts = voxel_labels(sim_cfg["rois"], nsd, 1, xyz, "voxels.h5")
    return labels, counts, general, shape


def test_family_maps_hold_each_familys_voxels_as_brainot_rois_counts_them(simulated_labels, sim_cfg, tmp_path):
    labels, counts, general, shape = simulated_labels
    labels.to_parquet(tmp_path / "subj01.parquet", index=False)
    families = sim_cfg["rois"]["families"]
    maps = roi_maps.family_maps(tmp_path / "subj01.parquet", families, shape)
    assert [m.family for m in maps] == list(families)
    for fmap in maps:
        rows = counts[counts["family"] == fmap.family]
        assert fmap.n_voxels == rows[rows["area"].isna()]["columns"].item() > 0
        assert fmap.area_counts == {a: int(n) for a, n in rows[rows["area"].notna()][["area", "columns"]].to_numpy()}
        # each area's value sits at that area's voxels
        for k, area in enumerate(fmap.labels, 1):
            sel = labels[labels[fmap.family] == area]
            assert (fmap.volume[sel["x"], sel["y"], sel["z"]] == k).all()
            assert (fmap.volume == k).sum() == len(sel)


def test_roi_map_draws_one_panel_per_family_with_its_count(simulated_labels, sim_cfg, tmp_path):
    labels, _, general, shape = simulated_labels
    families = sim_cfg["rois"]["families"]
    labels = labels.copy()
    labels["W"] = None                       # an empty family (NSD has empty labels): a panel that says so
    labels.to_parquet(tmp_path / "subj01.parquet", index=False)
    maps = roi_maps.family_maps(tmp_path / "subj01.parquet", families, shape)
    bg = roi_maps.background(general)
    assert sorted(np.unique(bg.get_fdata()).tolist()) == [0, 1, 2]
    fig, displays = roi_maps.plot(maps, bg, slices=2, subject="subj01")
    assert len(displays) == len(families)
    assert [d is None for d in displays] == [f == "W" for f in families]
    texts = [t.get_text() for t in fig.findobj(Text)]
    for fmap in maps:
        assert sum(fmap.title in t for t in texts) == 1, fmap.title
    assert "W (Word): 0 voxels: no voxel of this family" in texts
    assert any("V (Vision)" in t for t in texts)


def test_roi_map_rejects_voxels_outside_the_grid_and_unknown_areas(simulated_labels, sim_cfg, tmp_path):
    labels, _, _, shape = simulated_labels
    families = sim_cfg["rois"]["families"]
    bad = labels.copy()
    bad.loc[bad["V"].notna().idxmax(), "x"] = shape[0]
    bad.to_parquet(tmp_path / "far.parquet", index=False)
    with pytest.raises(roi_maps.RoiMapError, match=r"far\.parquet.*family 'V'.*outside the volume grid"):
        roi_maps.family_maps(tmp_path / "far.parquet", families, shape)
    bad = labels.copy()
    bad.loc[bad["F"].notna().idxmax(), "F"] = "FFA-9"
    bad.to_parquet(tmp_path / "area.parquet", index=False)
    with pytest.raises(roi_maps.RoiMapError, match=r"area\.parquet.*'FFA-9'.*rois\.families\.F\.labels"):
        roi_maps.family_maps(tmp_path / "area.parquet", families, shape)


# ------------------------------------------------------------------------------------------- Fig. 5
def lambda_csv(tmp_path, regions, masses, spice=True):
    """A lambda table written by brainot.tables.build from metrics JSONs: metric k of (region r, mass m) = 10 r + 100 m + k."""
    paths = []
    for r, region in enumerate(regions):
        for mass in masses:
            values = {name: round(10 * r + 100 * mass + k, 2) for k, name in enumerate(METRICS)}
            values.update(n=10, unavailable={})
            if not spice:
                values["SPICE"] = None
                values["unavailable"]["SPICE"] = "score.spice_jars is not set"
            path = tmp_path / "metrics" / region / f"{mass}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
            paths.append(str(path))
    out = tmp_path / "lambda.csv"
    tables.write(tables.lambda_table(paths, regions, masses), out)
    return out


def test_lambda_plot_has_one_line_per_region_at_the_tables_lambdas(tmp_path):
    regions, masses = ["all", "P", "V+P"], [0.5, 0.1, 1.0]
    metrics = ["CIDEr", "METEOR", "ROUGE"]
    table = lambda_curves.read_table(lambda_csv(tmp_path, regions, masses), metrics)
    fig, axes = lambda_curves.plot(table, metrics)
    assert [ax.get_title() for ax in axes] == metrics
    for ax, metric in zip(axes, metrics):
        k = METRICS.index(metric)
        assert ax.get_xlabel() == "mass ratio λ" and ax.get_ylabel() == f"{metric} (x100)"
        assert [line.get_label() for line in ax.get_lines()] == ["all", "P (Place)", "V+P"]
        for r, line in enumerate(ax.get_lines()):
            np.testing.assert_allclose(line.get_xdata(), [0.1, 0.5, 1.0])
            np.testing.assert_allclose(line.get_ydata(), [10 * r + 100 * m + k for m in (0.1, 0.5, 1.0)])
    assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["all", "P (Place)", "V+P"]


def test_lambda_plot_says_when_a_metric_is_unavailable(tmp_path):
    table = lambda_curves.read_table(lambda_csv(tmp_path, ["all"], [0.1, 0.5], spice=False), ["SPICE", "CIDEr"])
    assert table["SPICE"].isna().all()
    fig, axes = lambda_curves.plot(table, ["SPICE", "CIDEr"])
    assert "SPICE is n/a in this run" in " ".join(t.get_text() for t in axes[0].texts)
    assert not axes[1].texts


def test_lambda_table_errors_name_the_file_and_column(tmp_path):
    path = lambda_csv(tmp_path, ["all"], [0.1])
    with pytest.raises(lambda_curves.LambdaError, match="figures.lambda.metrics.*'CIDER'"):
        lambda_curves.read_table(path, ["CIDER"])
    pd.read_csv(path).drop(columns="METEOR").to_csv(tmp_path / "cut.csv", index=False)
    with pytest.raises(lambda_curves.LambdaError, match=r"cut\.csv: missing column\(s\) \['METEOR'\]"):
        lambda_curves.read_table(tmp_path / "cut.csv", ["METEOR"])


def test_lambda_cli_writes_a_png(tmp_path, capsys):
    out = tmp_path / "figs" / "lambda.png"
    figures_main(["lambda", "--table", str(lambda_csv(tmp_path, ["all", "P"], [0.1, 0.5])),
                  "--cfg", '{"metrics": ["CIDEr"]}', "--out", str(out)])
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 500 and img.height > 400
    assert "regions ['all', 'P']" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- Fig. 7
@pytest.fixture
def fig7_inputs(tmp_path):
    """10 test images (nsd_id 100, 103, ...), their references, captions of regions B and P, and a stimuli file
    whose image i is filled with i (so the right row is easy to tell)."""
    ids = 100 + 3 * np.arange(10)
    with h5py.File(tmp_path / "subj01.h5", "w") as fh:
        fh["test/nsd_id"] = ids
    refs = {str(i): [f"truth {i} a", f"truth {i} b"] for i in range(10)}
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    paths = []
    for region in ("B", "P"):
        path = tmp_path / f"{region}.json"
        path.write_text(json.dumps({str(i): f"{region} says {i}" for i in range(10)}))
        paths.append(path)
    with h5py.File(tmp_path / "stimuli.hdf5", "w") as fh:
        fh["imgBrick"] = (np.arange(140, dtype=np.uint8)[:, None, None, None]
                          * np.ones((1, 8, 8, 3), dtype=np.uint8))
    return tmp_path, ids, paths


def test_case_table_lists_ground_truth_then_each_region_per_chosen_image(fig7_inputs):
    tmp, ids, paths = fig7_inputs
    table = case_study.case_table(tmp / "subj01.h5", tmp / "refs.json", paths, ["B", "P"], 4, [7, 2])
    assert table.columns.tolist() == ["test_index", "nsd_id", "source", "caption"]
    assert table["test_index"].tolist() == [7, 7, 7, 2, 2, 2]
    assert table["nsd_id"].tolist() == [ids[7]] * 3 + [ids[2]] * 3
    assert table["source"].tolist() == ["ground truth", "B", "P"] * 2
    assert table["caption"].tolist() == ["truth 7 a", "B says 7", "P says 7", "truth 2 a", "B says 2", "P says 2"]


def test_case_positions_spread_over_the_test_set_unless_given(fig7_inputs):
    assert case_study.test_positions(10, 4, []) == [0, 3, 6, 9]
    assert case_study.test_positions(3, 4, []) == [0, 1, 2]
    assert case_study.test_positions(10, 4, [5]) == [5]
    with pytest.raises(case_study.CaseStudyError, match=r"figures.case_study.indices: \[10\].*0\.\.9"):
        case_study.test_positions(10, 4, [1, 10])


def test_case_study_missing_caption_names_the_file_and_key(fig7_inputs):
    tmp, _, paths = fig7_inputs
    paths[1].write_text(json.dumps({str(i): "x" for i in range(9)}))
    with pytest.raises(case_study.CaseStudyError, match=r"P\.json: no caption for test position '9'"):
        case_study.case_table(tmp / "subj01.h5", tmp / "refs.json", paths, ["B", "P"], 4, [])


def test_case_study_figure_shows_each_stimulus_beside_its_captions(fig7_inputs, tmp_path):
    tmp, ids, paths = fig7_inputs
    png, csv = tmp_path / "fig7.png", tmp_path / "fig7.csv"
    figures_main(["case-study", "--voxels", str(tmp / "subj01.h5"), "--stimuli", str(tmp / "stimuli.hdf5"),
                  "--references", str(tmp / "refs.json"), "--captions", *map(str, paths), "--regions", "B", "P",
                  "--cfg", '{"n_images": 2, "indices": [], "regions": ["B", "P"]}',
                  "--out-png", str(png), "--out-csv", str(csv)])
    table = pd.read_csv(csv)
    assert table["test_index"].unique().tolist() == [0, 9]
    images = case_study.read_stimuli(tmp / "stimuli.hdf5", [int(i) for i in table["nsd_id"].unique()])
    assert [int(img[0, 0, 0]) for img in images] == [ids[0], ids[9]]
    fig, axes = case_study.plot(table, images)
    assert axes.shape == (2, 2)
    for row, pos in zip(axes, (0, 9)):
        assert int(row[0].images[0].get_array()[0, 0, 0]) == ids[pos]
        text = row[1].texts[0].get_text()
        assert text.index(f"Ground truth: truth {pos} a") < text.index(f"B (Body): B says {pos}") \
            < text.index(f"P (Place): P says {pos}")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.height > 300


# ------------------------------------------------------------------------------------------- config
def test_schema_fills_figure_defaults_and_rejects_unknown_metrics(sim_cfg):
    cfg = bcfg.validate({"rois": sim_cfg["rois"]})
    assert cfg["figures"]["correlation"] == {"n_images": 32, "pooling": "mean", "center": True}
    assert cfg["figures"]["lambda"]["metrics"] == ["CIDEr", "METEOR", "ROUGE"]
    with pytest.raises(bcfg.ConfigError, match=r"figures.lambda.metrics\[0\]: 'CIDER' is not one of"):
        bcfg.validate({"rois": sim_cfg["rois"], "figures": {"lambda": {"metrics": ["CIDER"]}}})


def test_workflow_stops_on_a_case_study_region_that_is_not_configured(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("figures:\n  case_study:\n    regions: [B, Face]\n")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "1",
                          "--configfile", str(REPO / "demo" / "config.yaml"), str(bad)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "figures.case_study.regions[1]: 'Face' is not a region set of rois.regions" in out.stdout + out.stderr


def test_cli_help_names_every_figure():
    out = subprocess.run([sys.executable, "-m", "brainot.figures", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for name in ("correlation", "roi-maps", "lambda", "case-study"):
        assert name in out.stdout
