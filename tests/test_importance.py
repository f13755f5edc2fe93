"""Region importance (brainot.analysis.importance): per-region aggregation, the gradient against a closed form, input
checks, and the planted truth on an encoder trained on the simulated NSD (P, the place region, comes first)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainot.analysis import importance
from brainot.model.encoder import BrainX
from brainot.model.losses import mse_loss
from conftest import build_simulated_subj01, train_mse_encoder

FAMILIES = ["V", "P", "F", "W", "B"]

# Seven voxel columns: 0, 1 in V; 2 in P; 3 in F and B (a border voxel counts in both); 4 in W; 5 in B; 6 in none.
_ = None
LABELS = pd.DataFrame({"column": np.arange(7), "V": ["V1v", "V2d", _, _, _, _, _], "P": [_, _, "PPA", _, _, _, _],
                       "F": [_, _, _, "FFA-1", _, _, _], "W": [_, _, _, _, "VWFA-1", _, _],
                       "B": [_, _, _, "EBA", _, "FBA-1", _]})
REGION_VOXELS = {"V": [0, 1], "P": [2], "F": [3], "W": [4], "B": [3, 5], "other": [6]}


def expected_rows(per_voxel: np.ndarray) -> pd.DataFrame:
    """The contract written out: a region's mean voxel score, its share of the sum over regions, its rank."""
    mean = {r: per_voxel[v].mean() for r, v in REGION_VOXELS.items()}
    total = sum(mean.values())
    order = sorted(mean, key=lambda r: -mean[r])
    return pd.DataFrame([{"region": r, "n_voxels": len(REGION_VOXELS[r]), "importance": mean[r],
                          "importance_normalised": mean[r] / total, "rank": order.index(r) + 1} for r in mean])


def tiny_encoder(n_voxels: int) -> BrainX:
    torch.manual_seed(0)
    return BrainX({"subj01": n_voxels}, latents=2, hidden=4, out_dim=3, depth=1, heads=1, head_dim=4)


def test_voxel_weighting_is_the_mean_first_layer_column_norm_per_region():
    model = tiny_encoder(7)
    norms = np.array([3.0, 1.0, 5.0, 0.5, 1.5, 4.5, 0.25])   # per region: V 2, P 5, F 0.5, W 1.5, B 2.5, other 0.25
    with torch.no_grad():   # column v = norms[v] * a unit vector, so its L2 norm is norms[v]
        direction = torch.tensor([0.6, 0.0, -0.8, 0.0])
        model.embed["subj01"].lin2.weight.copy_(direction[:, None] * torch.tensor(norms, dtype=torch.float32))
    table = importance.importance_table(model, "subj01", np.zeros((2, 7), np.float32),
                                        np.zeros((2, 2, 3), np.float16), LABELS, np.arange(7), FAMILIES, mse_loss)
    weight = table[table["method"] == "weight"].reset_index(drop=True)
    want = expected_rows(norms)
    assert list(weight["region"]) == FAMILIES + ["other"]
    assert list(weight["rank"]) == [3, 1, 5, 4, 2, 6]
    pd.testing.assert_frame_equal(weight[["region", "n_voxels", "rank"]], want[["region", "n_voxels", "rank"]],
                                  check_dtype=False)
    np.testing.assert_allclose(weight["importance"], want["importance"], rtol=1e-6)
    np.testing.assert_allclose(weight["importance_normalised"], want["importance_normalised"], rtol=1e-6)
    assert weight["importance_normalised"].sum() == pytest.approx(1.0)
    assert set(table["method"]) == {"gradient", "weight"}


def test_gradient_perturbation_of_a_linear_model_matches_its_closed_form():
    # pred_i = reshape(x_i A), L_i = mean over T*D of (pred_i - y_i)^2, so dL_i/dx_i = 2 / (T D) A (x_i A - y_i).
    rng = np.random.default_rng(0)
    n, c, t, d = 9, 7, 2, 3
    A = rng.standard_normal((c, t * d))
    x = rng.standard_normal((n, c)).astype(np.float32)
    y = rng.standard_normal((n, t, d)).astype(np.float32)
    grad = 2 / (t * d) * ((x @ A - y.reshape(n, -1)) @ A.T)
    A_t = torch.tensor(A, dtype=torch.float32)

    def predict(v):
        return (v @ A_t).reshape(-1, t, d)

    saliency = importance.gradient_scores(predict, x, y, mse_loss, "saliency", batch_size=3)
    np.testing.assert_allclose(saliency, np.abs(grad).mean(0), rtol=1e-5)
    # An image's gradient is its own loss's: the batch size does not change it.
    np.testing.assert_allclose(importance.gradient_scores(predict, x, y, mse_loss, "saliency", batch_size=n),
                               saliency, rtol=1e-5)
    times_input = importance.gradient_scores(predict, x, y, mse_loss, "grad_x_input", batch_size=4)
    np.testing.assert_allclose(times_input, np.abs(grad * x).mean(0), rtol=1e-5)

    got = importance.aggregate(saliency, importance.region_masks(LABELS, FAMILIES, np.arange(7)), "gradient")
    want = expected_rows(np.abs(grad).mean(0))
    np.testing.assert_allclose(got["importance_normalised"], want["importance_normalised"], rtol=1e-5)
    assert list(got["rank"]) == list(want["rank"])


def test_regions_follow_the_model_columns_and_empty_ones_are_left_out():
    # A model reading columns 2..4 only (P, F+B, W): V and other have no voxel among its inputs, B only column 3.
    masks = importance.region_masks(LABELS, FAMILIES, np.array([2, 3, 4]))
    table = importance.aggregate(np.array([4.0, 1.0, 3.0]), masks, "weight")
    assert list(table["region"]) == ["P", "F", "W", "B"]
    assert list(table["n_voxels"]) == [1, 1, 1, 1]
    assert list(table["importance"]) == [4.0, 1.0, 3.0, 1.0]
    assert list(table["rank"]) == [1, 3, 2, 4]   # F and B tie: the regions' order breaks it


def test_a_model_of_another_voxel_count_is_rejected_naming_the_file():
    model = tiny_encoder(8)
    with pytest.raises(importance.ImportanceError, match=r"runs/m\.pt: the model reads 8 voxels of subj01, but its "
                                                         r"region set has 7 columns"):
        importance.importance_table(model, "subj01", np.zeros((2, 7), np.float32), np.zeros((2, 2, 3)), LABELS,
                                    np.arange(7), FAMILIES, mse_loss, model_path="runs/m.pt")
    with pytest.raises(importance.ImportanceError, match=r"labels\.parquet: 7 labelled voxel columns, but the "
                                                         r"model reads column 7"):
        importance.region_masks(LABELS, FAMILIES, np.arange(8), "labels.parquet")
    with pytest.raises(importance.ImportanceError, match=r"labels\.parquet: no column 'B'; expected one column per "
                                                         r"ROI family"):
        importance.region_masks(LABELS.drop(columns="B"), FAMILIES, np.arange(7), "labels.parquet")


def test_config_section_is_checked():
    with pytest.raises(importance.ImportanceError, match=r"analysis\.importance\.gradient: 'grad'; expected one of "
                                                         r"saliency, grad_x_input"):
        importance.check_cfg({"gradient": "grad", "loss": "mse"})


# ------------------------------------------------------------------------------------------------ planted truth
#
# The simulator plants the place in P, with the largest amplitude, and every caption names the place
# (brainot_demo.simulate, "Planted ground truth" 3), so an encoder of all regions should lean on P most: the paper's
# Fig. 4. The chain is that of tests/test_planted_truth.py (simulate -> extract -> rois -> the demo CLIP trained
# on the simulated images -> embed -> an encoder), with one all-regions MSE encoder. Measured with synthetic
# seeds 0, 1, 2 (300 images) and the OT objective on seed 1: P first by both methods, its gradient share
# 0.33-0.43 (next 0.14-0.17), its weight share 0.21-0.25 (next 0.16). V, which sees the scenes' colour
# layout, came second each time, not last as in the paper.

SYNTHETIC = {"seed": 1, "n_shared": 60, "images_per_subject": 300, "repeats": 3, "trials_per_session": 150,
             "image_size": 32, "volume_scale": 0.15, "noise": 1.0}
CLIP = {"hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 2, "projection_dim": 32, "lr": 2e-3,
        "epochs": 4}
ENCODER = {"hidden": 64, "latents": 16, "depth": 1, "heads": 2, "head_dim": 16}   # the demo's
TRAIN = {"epochs": 30, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.01}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """An all-regions encoder trained on a simulated subj01, and the files importance's CLI reads."""
    root = tmp_path_factory.mktemp("importance")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            files = build_simulated_subj01(root, SYNTHETIC, CLIP)
            model = train_mse_encoder(files, "all", root / "models" / "all", ENCODER, TRAIN)
    finally:
        torch.set_num_threads(before)
    return {"root": root, "voxels": files["voxels"], "embeddings": files["embeddings"], "labels": files["labels"],
            "region": files["regions"] / "all.h5", "model": model}


def run_cli(planted: dict, out: Path, **override) -> pd.DataFrame:
    files = {**planted, **override}
    argv = ["--cfg", json.dumps({"gradient": "saliency", "loss": "objective"}), "--device", "cpu",
            "--subject", "subj01", "--families", *FAMILIES, "--out", str(out), "--figure", str(out.with_suffix(".png"))]
    for key in ("model", "voxels", "region", "labels", "embeddings"):
        argv += [f"--{key}", str(files[key])]
    with contextlib.redirect_stdout(io.StringIO()):
        return importance.main(argv)


@pytest.mark.slow   # the fixture: 20-45 s on a busy 2-core machine (simulate, the demo CLIP, embed, one encoder)
def test_place_region_ranks_first_by_both_methods(planted, tmp_path):
    out = tmp_path / "tables" / "importance.csv"
    table = run_cli(planted, out)
    written = pd.read_csv(out)
    pd.testing.assert_frame_equal(written, pd.read_parquet(out.with_suffix(".parquet")), check_exact=False, rtol=1e-5)
    assert list(written.columns) == importance.COLUMNS
    for method in importance.METHODS:
        part = table[table["method"] == method].set_index("region")
        assert list(part.index) == FAMILIES + ["other"]
        assert part["importance_normalised"].sum() == pytest.approx(1.0)
        assert sorted(part["rank"]) == list(range(1, 7))
        assert part["rank"]["P"] == 1, (method, part)
    gradient = table[table["method"] == "gradient"].set_index("region")["importance_normalised"]
    assert gradient["P"] >= 1.5 * gradient.drop("P").max(), gradient
    # The same model, labels and test voxels give the same numbers.
    pd.testing.assert_frame_equal(run_cli(planted, tmp_path / "again.csv"), table)


@pytest.mark.slow
def test_labels_of_another_voxel_file_are_rejected_naming_both_files(planted, tmp_path):
    labels = pd.read_parquet(planted["labels"]).iloc[:-1]
    short = tmp_path / "short.parquet"
    labels.to_parquet(short)
    with pytest.raises(importance.ImportanceError, match=rf"{short}: {len(labels)} labelled voxel columns, but "
                                                         rf"{planted['voxels']} has {len(labels) + 1}"):
        run_cli(planted, tmp_path / "x.csv", labels=short)
