"""Embedding visualisation (the paper's Fig. 6 and Table 3): do single-region encoders' predictions separate?

    python -m brainot.analysis.embedding_viz --cfg '{"groupings": {"5 regions": ["V", "P", "F", "W", "B"],
                                                          "V-PFBW": ["V", "PFWB"]}, "pooling": "mean", "seed": 0}' \\
        --predictions results/predictions/subj01/{V,P,F,W,B,PFWB}/ot0.5/seed0/subj01.h5 \\
        --out results/tables/viz.csv --figure results/figures/embedding_viz.png

How Table 3 is read here (the paper gives no more than its row names):

- a grouping (config ``analysis.viz.groupings``) names a row of the table ("5 regions", "V-PFBW") and the
  region sets whose encoders' test predictions it pools; every point is one test image's predicted embedding
  from one of those encoders, labelled by the encoder's region set. "5 regions" = the five single-family
  encoders V, P, F, W, B (five labels); "V-PFBW" = the V encoder against one encoder trained on P, F, W and B
  together (two labels): the paper's "single region" vs "multi-region synergy" contrast.
- a predicted embedding (T, D) becomes one vector by the mean over its tokens (``pooling: mean``, the pooled
  image embedding CLIP-style retrieval uses; T x D = 262,144 values per image at the paper's sizes would make
  the projections' input 10 GB of float64 for 5 x 982 points) or by flattening (``pooling: flat``).
- each grouping's points are projected to 2-D by PCA (``sklearn.decomposition.PCA``) and by UMAP
  (``umap.UMAP``, its default 15 neighbours, found exactly by ``sklearn.neighbors.NearestNeighbors``, and
  min_dist 0.1; ``random_state`` = ``analysis.viz.seed``, so deterministic), each fitted on that grouping's
  points; S-Score is ``sklearn.metrics.silhouette_score`` (higher
  = labels better separated) and D-B Index ``davies_bouldin_score`` (lower = better separated) of the labels on
  the 2-D projection.

Output: the table (columns ``source``, ``Region``, ``Methods``, ``S-Score``, ``D-B Index``; the paper's row
order: every grouping under PCA, then under UMAP; this run's rows, then the paper's of the groupings it names)
as CSV and Parquet, and one figure: a row of panels per grouping (PCA,
UMAP), points coloured by region set.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from brainot import io as data
from brainot.tables.build import PAPER, with_paper_rows, write_numeric

METHODS = ("PCA", "UMAP")
POOLINGS = ("mean", "flat")
UMAP_NEIGHBORS = 15   # umap-learn's default n_neighbors
CFG_KEYS = ("groupings", "pooling", "seed")
COLUMNS = ["Region", "Methods", "S-Score", "D-B Index"]
# The paper's Table 3: (row, method) -> (S-Score, D-B Index).
PAPER_TABLE3 = {("5 regions", "PCA"): (-0.0936, 12.7383), ("V-PFBW", "PCA"): (0.0261, 5.7202),
                ("5 regions", "UMAP"): (-0.0784, 9.1067), ("V-PFBW", "UMAP"): (0.1344, 3.6206)}


class VizError(ValueError):
    """An input of the visualisation is malformed; the message names the file or key and what was expected."""


# ---------------------------------------------------------------------------------------------- inputs


def predictions_by_region(paths: list[str | Path]) -> dict[str, np.ndarray]:
    """Region set -> its predicted tokens, checking that every file holds the same test images in the same order."""
    out, first = {}, None
    for path in paths:
        predictions = data.read_predictions(path)
        region, tokens, nsd_id = predictions.region, predictions.tokens, predictions.nsd_id
        if region in out:
            raise VizError(f"{path}: a second predictions file of region set {region!r}")
        if first is None:
            first = (path, nsd_id, tokens.shape[1:])
        elif not np.array_equal(nsd_id, first[1]) or tokens.shape[1:] != first[2]:
            raise VizError(f"{path}: its test images (nsd_id) or token shape {tokens.shape[1:]} differ from "
                           f"{first[0]}'s {first[2]}; expected predictions of one subject's test set")
        out[region] = tokens
    return out


def check_cfg(cfg: dict) -> dict:
    """The ``analysis.viz`` section: keys, pooling, and groupings of at least two distinct region sets."""
    missing = [k for k in CFG_KEYS if k not in cfg]
    if missing:
        raise VizError(f"analysis.viz: missing {', '.join(missing)}; expected the validated config section")
    if cfg["pooling"] not in POOLINGS:
        raise VizError(f"analysis.viz.pooling: {cfg['pooling']!r}; expected one of {', '.join(POOLINGS)}")
    for name, regions in cfg["groupings"].items():
        if len(set(regions)) < 2 or len(set(regions)) != len(regions):
            raise VizError(f"analysis.viz.groupings.{name}: {regions}; expected at least two distinct region sets "
                           "(the silhouette compares labels)")
    return cfg


# ---------------------------------------------------------------------------------------------- numbers


def pool(tokens: np.ndarray, pooling: str) -> np.ndarray:
    """(N, T, D) -> (N, D) mean over tokens, or (N, T * D) flattened; float64."""
    if pooling == "mean":
        return tokens.astype(np.float64).mean(axis=1)
    if pooling == "flat":
        return tokens.reshape(tokens.shape[0], -1).astype(np.float64)
    raise VizError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")


def stack(embeddings: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Label -> (N_label, F) points, as all points (N, F) and their labels (N,) in the dict's order."""
    points = np.concatenate(list(embeddings.values()))
    labels = np.concatenate([np.full(len(v), k, dtype=object) for k, v in embeddings.items()])
    return points, labels


def project(points: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(N, F) -> (N, 2) by PCA or UMAP, deterministic for a seed."""
    if method == "PCA":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit_transform(points)
    if method == "UMAP":
        import umap
        from sklearn.neighbors import NearestNeighbors

        # Exact neighbours (each point's first neighbour is itself, as UMAP expects), handed to UMAP: what UMAP
        # does itself below 4096 points, but deterministic above (where it would switch to approximate
        # NN-descent), and it skips compiling UMAP's own neighbour search (about half its start-up time).
        k = min(UMAP_NEIGHBORS, len(points) - 1)
        dist, index = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(points)
        with warnings.catch_warnings():
            # Expected, not news for the log: random_state forces one thread (that is the point, determinism),
            # and without an NN-descent index UMAP could not transform new points (not needed here).
            warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
            reducer = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed, precomputed_knn=(index, dist))
            return reducer.fit_transform(points).astype(np.float64)
    raise VizError(f"method {method!r}: expected one of {', '.join(METHODS)}")


def separation(projected: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(silhouette score, Davies-Bouldin index) of ``labels`` on the 2-D points."""
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    return float(silhouette_score(projected, labels)), float(davies_bouldin_score(projected, labels))


def viz_table(groupings: dict[str, dict[str, np.ndarray]], pooling: str, seed: int
              ) -> tuple[pd.DataFrame, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]:
    """Table 3 and the projections behind it.

    groupings: row name -> (region set -> its predicted tokens (N, T, D)). Returns the table (:data:`COLUMNS`,
    rows method-major as in the paper) and (row name, method) -> (2-D points (N, 2), labels (N,)).
    """
    projections, rows = {}, []
    for method in METHODS:
        for name, embeddings in groupings.items():
            points, labels = stack({region: pool(tokens, pooling) for region, tokens in embeddings.items()})
            projected = project(points, method, seed)
            s_score, db_index = separation(projected, labels)
            projections[name, method] = (projected, labels)
            rows.append({"Region": name, "Methods": method, "S-Score": s_score, "D-B Index": db_index})
    return pd.DataFrame(rows, columns=COLUMNS), projections


def paper_table3(names: list[str]) -> pd.DataFrame:
    """The paper's Table 3 rows of the groupings ``names`` it reports (by row name), method-major as in the
    paper, marked ``source`` = the paper; a grouping the paper does not name has no row."""
    rows = [{"source": PAPER, "Region": name, "Methods": method, "S-Score": PAPER_TABLE3[name, method][0],
             "D-B Index": PAPER_TABLE3[name, method][1]}
            for method in METHODS for name in names if (name, method) in PAPER_TABLE3]
    return pd.DataFrame(rows, columns=["source", *COLUMNS])


# ---------------------------------------------------------------------------------------------- outputs


def plot(projections: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], table: pd.DataFrame,
         path: str | Path, title: str) -> None:
    """A row of panels per grouping, a column per method; points coloured by region set (PNG, dpi 150)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(name for name, _ in projections))
    fig, axes = plt.subplots(len(names), len(METHODS), figsize=(5 * len(METHODS), 4.2 * len(names)), squeeze=False)
    scores = table.set_index(["Region", "Methods"])
    for i, name in enumerate(names):
        for j, method in enumerate(METHODS):
            ax = axes[i, j]
            points, labels = projections[name, method]
            for label in dict.fromkeys(labels):
                mask = labels == label
                ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.6, label=label, linewidths=0)
            s_score, db_index = scores.loc[(name, method), ["S-Score", "D-B Index"]]
            ax.set_title(f"{name}, {method}: S-Score {s_score:.3f}, D-B Index {db_index:.2f}", fontsize=10)
            unit = "(embedding units)" if method == "PCA" else "(arbitrary units)"
            axis = "PC" if method == "PCA" else "UMAP "
            ax.set_xlabel(f"{axis}1 {unit}")
            ax.set_ylabel(f"{axis}2 {unit}")
            ax.legend(title="encoder's regions", fontsize=8, markerscale=2)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m brainot.analysis.embedding_viz",
        description="The paper's Table 3 and Fig. 6: pool the test predictions of the encoders of each grouping "
                    "of region sets, project them to 2-D with PCA and UMAP, and score how well the encoders' "
                    "points separate (silhouette S-Score, Davies-Bouldin index). Writes CSV + Parquet and a figure.")
    p.add_argument("--cfg", required=True, type=json.loads,
                   help="the config's analysis.viz section as JSON: groupings (row name -> region sets), "
                        "pooling (mean | flat), seed (UMAP's random_state)")
    p.add_argument("--predictions", nargs="+", required=True,
                   help="results/predictions/{run}/{subject}.h5 of every region set the groupings name (one "
                        "subject; each file's 'region' attribute says which)")
    p.add_argument("--out", required=True, help="output CSV (results/tables/viz.csv); .parquet written next to it")
    p.add_argument("--figure", required=True, help="output PNG (results/figures/embedding_viz.png)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    t0 = time.perf_counter()
    cfg = check_cfg(args.cfg)
    predictions = predictions_by_region(args.predictions)
    groupings = {}
    for name, regions in cfg["groupings"].items():
        absent = [r for r in regions if r not in predictions]
        if absent:
            raise VizError(f"analysis.viz.groupings.{name}: no --predictions file of region set {absent[0]!r} "
                           f"(given: {', '.join(predictions)})")
        groupings[name] = {r: predictions[r] for r in regions}
    table, projections = viz_table(groupings, cfg["pooling"], cfg["seed"])
    parquet = write_numeric(with_paper_rows(table, paper_table3(list(groupings))), args.out, "%.4f")
    n_images = len(next(iter(predictions.values())))
    plot(projections, table, args.figure, f"Predicted test embeddings ({n_images} images per encoder, "
                                          f"{cfg['pooling']}-pooled tokens)")
    print(f"{n_images} test images per encoder, tokens {cfg['pooling']}-pooled, UMAP seed {cfg['seed']}:")
    for row in table.itertuples(index=False):
        paper = PAPER_TABLE3.get((row[0], row[1]))
        print(f"  {row[0]:12s} {row[1]:5s} S-Score {row[2]:8.4f}  D-B Index {row[3]:8.4f}"
              + (f"   (paper: {paper[0]:.4f}, {paper[1]:.4f})" if paper else ""))
    print(f"wrote {args.out}, {parquet} and {args.figure} in {time.perf_counter() - t0:.1f} s")
    return table


if __name__ == "__main__":
    main()
