"""Embedding visualisation (brainot.analysis.embedding_viz): separation scores on clusters built to be separated or
interwoven, the numbers against sklearn on the same projections, the table's rows, determinism, input checks.

UMAP's first fit in a process compiles its numba kernels (15-25 s on a busy machine); every test here shares it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import davies_bouldin_score, silhouette_score

from brainot import io as bio
from brainot.analysis import embedding_viz as viz

N, T, D = 40, 4, 12   # test images per encoder, tokens, width


def clusters(labels: list[str], spread: float, seed: int) -> dict[str, np.ndarray]:
    """Per label, N predictions (N, T, D): a label-specific centre (at distance ~10 from the others) + noise.

    spread = 0.5: tight, well-separated clusters; spread = 50: the centres drown in the noise (interwoven).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for k, label in enumerate(labels):
        centre = np.zeros(D)
        centre[k] = 10.0
        out[label] = (centre + spread * rng.standard_normal((N, T, D))).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def separated_and_interwoven():
    groupings = {"separated": clusters(list("VPFWB"), 0.5, 0), "interwoven": clusters(list("VPFWB"), 50.0, 1)}
    return groupings, viz.viz_table(groupings, "mean", seed=0)


def test_separated_clusters_score_high_interwoven_ones_near_zero(separated_and_interwoven):
    _, (table, _) = separated_and_interwoven
    scores = table.set_index(["Region", "Methods"])
    for method in viz.METHODS:
        good, bad = scores.loc[("separated", method)], scores.loc[("interwoven", method)]
        assert good["S-Score"] > 0.7 and good["D-B Index"] < 0.5, (method, good)
        assert abs(bad["S-Score"]) < 0.15 and bad["D-B Index"] > 3, (method, bad)


def test_scores_are_sklearns_on_pca_of_the_mean_pooled_predictions(separated_and_interwoven):
    groupings, (table, projections) = separated_and_interwoven
    for name, embeddings in groupings.items():
        points = np.concatenate([tokens.astype(np.float64).mean(axis=1) for tokens in embeddings.values()])
        labels = np.repeat(list(embeddings), N)
        pca = PCA(n_components=2, svd_solver="full").fit_transform(points)
        projected, got_labels = projections[name, "PCA"]
        np.testing.assert_allclose(projected, pca, rtol=1e-9, atol=1e-9)
        assert list(got_labels) == list(labels)
        for method in viz.METHODS:
            row = table[(table["Region"] == name) & (table["Methods"] == method)].iloc[0]
            projected, _ = projections[name, method]
            assert row["S-Score"] == pytest.approx(silhouette_score(projected, labels), abs=1e-12)
            assert row["D-B Index"] == pytest.approx(davies_bouldin_score(projected, labels), abs=1e-12)


def test_pooling_mean_averages_tokens_flat_keeps_them():
    tokens = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(viz.pool(tokens, "mean"), [[2, 3], [8, 9]])
    np.testing.assert_array_equal(viz.pool(tokens, "flat"), tokens.reshape(2, 6))


# ------------------------------------------------------------------------------------------------ CLI


def write_predictions(directory, predictions: dict[str, np.ndarray], nsd_id=None) -> list[str]:
    """One predictions file per region set, as brainot.predict writes them."""
    paths = []
    for region, tokens in predictions.items():
        path = directory / f"{region}.h5"
        ids = np.arange(len(tokens), dtype=np.int64) if nsd_id is None else nsd_id
        bio.write_predictions(path, tokens, ids, subject="subj01", region=region, objective="ot0.5",
                              model=f"results/models/subj01/{region}/ot0.5/seed0/model.pt", embedding="clip")
        paths.append(str(path))
    return paths


def run_cli(cfg: dict, predictions: list[str], out) -> pd.DataFrame:
    with contextlib.redirect_stdout(io.StringIO()):
        return viz.main(["--cfg", json.dumps(cfg), "--predictions", *predictions, "--out", str(out),
                         "--figure", str(out.with_suffix(".png"))])


@pytest.fixture
def paper_predictions(tmp_path, sim_cfg):
    """The config's groupings (5 regions; V-PFBW) and a predictions file for each of their region sets."""
    regions = list(dict.fromkeys(r for rs in sim_cfg["analysis"]["viz"]["groupings"].values() for r in rs))
    return sim_cfg["analysis"]["viz"], write_predictions(tmp_path, clusters(regions, 2.0, 2))


def test_table_has_the_papers_rows_and_two_runs_agree(paper_predictions, tmp_path):
    cfg, paths = paper_predictions
    first, second = tmp_path / "a" / "viz.csv", tmp_path / "b" / "viz.csv"
    table = run_cli(cfg, paths, first)
    run_cli(cfg, paths, second)
    written = pd.read_csv(first, keep_default_na=False)
    assert list(written.columns) == ["source", "Region", "Methods", "S-Score", "D-B Index"]
    order = [("5 regions", "PCA"), ("V-PFBW", "PCA"), ("5 regions", "UMAP"), ("V-PFBW", "UMAP")]
    assert list(zip(written["source"], written["Region"], written["Methods"])) == [
        *(("this run", *row) for row in order), *(("paper (reported)", *row) for row in order)]
    ours = written[written["source"] == "this run"]
    np.testing.assert_allclose(ours[["S-Score", "D-B Index"]], table[["S-Score", "D-B Index"]], atol=5e-5)
    paper = written[written["source"] == "paper (reported)"].set_index(["Region", "Methods"])
    assert paper.loc[("V-PFBW", "UMAP"), "S-Score"] == pytest.approx(0.1344)   # Table 3 of the paper
    assert paper.loc[("5 regions", "PCA"), "D-B Index"] == pytest.approx(12.7383)
    assert first.read_bytes() == second.read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(first.with_suffix(".parquet")),
                                  pd.read_parquet(second.with_suffix(".parquet")))


def test_missing_or_mismatched_predictions_are_rejected(paper_predictions, tmp_path):
    cfg, paths = paper_predictions
    with pytest.raises(viz.VizError, match=r"analysis\.viz\.groupings\.V-PFBW: no --predictions file of region set "
                                           r"'PFWB'"):
        run_cli(cfg, [p for p in paths if not p.endswith("PFWB.h5")], tmp_path / "x.csv")
    other = tmp_path / "other"
    other.mkdir()
    shifted = write_predictions(other, {"PFWB": np.zeros((N, T, D), np.float32)}, nsd_id=np.arange(1, N + 1))
    with pytest.raises(viz.VizError, match=r"PFWB\.h5: its test images \(nsd_id\) or token shape .* differ from"):
        run_cli(cfg, [p for p in paths if not p.endswith("PFWB.h5")] + shifted, tmp_path / "x.csv")
    with h5py.File(paths[0], "a") as fh:
        del fh.attrs["region"]
    with pytest.raises(bio.DataError, match=rf"{re.escape(paths[0])}: missing attribute 'region'; expected a file "
                                            r"written by brainot\.predict .* rebuild it"):
        run_cli(cfg, paths, tmp_path / "x.csv")
    with pytest.raises(viz.VizError, match=r"analysis\.viz\.groupings\.one: \['V'\]; expected at least two"):
        viz.check_cfg({"groupings": {"one": ["V"]}, "pooling": "mean", "seed": 0})

