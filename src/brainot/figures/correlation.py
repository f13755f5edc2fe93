"""Fig. 1: correlation between predicted and image embeddings on test images, the MSE model beside the OT model.

The paper (section 5.4) "calculate[s] the embeddings of the same data set based on two models for correlation
analysis": MSE shows strong correlations only along the diagonal, OT also beyond it. It does not say how the
matrix is made; ours is, for the first K test images (``figures.correlation.n_images``, clipped to the test set):

    r[i, j] = Pearson correlation over features between predicted embedding i and image embedding j

with the (T, D) tokens of an image pooled to one feature vector (``pooling``: ``mean`` over the T tokens, or
``flatten`` to T * D features). With ``center`` each side first has its mean over *all* test images subtracted
(per token and feature): every CLIP embedding shares a large common component that otherwise makes every pair
look alike (on the demo, r is about 0.6 on and off the diagonal alike); centering leaves the image-specific part.
Pooling and centering are both linear, so their order does not matter.

Outputs a figure of one K x K heatmap per model with one colour scale, and a table with, per model, the mean
diagonal r (matched pairs) and the mean off-diagonal r (unmatched pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainot import io as data

POOLINGS = ("mean", "flatten")
# Test images read at a time while averaging over the test set: bounded memory at the real sizes
# (64 x 256 x 1024 float64 = 128 MiB).
BLOCK = 64


@dataclass
class Correlation:
    """One model's K x K matrix: rows = predicted embeddings, columns = image embeddings, both in test order."""

    objective: str
    matrix: np.ndarray      # (K, K) float64
    nsd_id: np.ndarray      # (K,) int64

    @property
    def mean_diagonal(self) -> float:
        return float(np.mean(np.diag(self.matrix)))

    @property
    def mean_off_diagonal(self) -> float:
        off = ~np.eye(len(self.matrix), dtype=bool)
        return float(np.mean(self.matrix[off])) if off.any() else float("nan")


def read_prediction_ids(path: str | Path) -> np.ndarray:
    """``nsd_id`` (N,) of a predictions file (:func:`brainot.io.prediction_ids`), which must hold test images."""
    ids = data.prediction_ids(path)
    if ids.size == 0:
        raise data.DataError(f"{path}: tokens has no rows; expected the test images")
    return ids


def _prediction_rows(path: str | Path, start: int, stop: int) -> np.ndarray:
    return data.prediction_rows(path, start, stop).astype(np.float64)


def _image_rows(embeddings: str | Path, ids: np.ndarray, start: int, stop: int) -> np.ndarray:
    return data.read_tokens(embeddings, ids[start:stop]).astype(np.float64)


def first_rows_centered(read, n: int, k: int, center: bool) -> np.ndarray:
    """Rows 0..k-1 of an (n, T, D) source read by ``read(start, stop)``, minus the mean of all n rows if
    ``center``. Returns (k, T, D) float64."""
    first = read(0, k)
    if not center:
        return first
    total = np.zeros(first.shape[1:], dtype=np.float64)
    for start in range(0, n, BLOCK):
        total += read(start, min(n, start + BLOCK)).sum(axis=0)
    return first - total / n


def pool(tokens: np.ndarray, pooling: str) -> np.ndarray:
    """(K, T, D) -> (K, D) (``mean`` over tokens) or (K, T * D) (``flatten``)."""
    if pooling == "mean":
        return tokens.mean(axis=1)
    if pooling == "flatten":
        return tokens.reshape(len(tokens), -1)
    raise ValueError(f"figures.correlation.pooling: {pooling!r}; expected one of {POOLINGS}")


def cross_correlation(predicted: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(K, F) x (K, F) -> (K, K): Pearson r between predicted row i and image row j (numpy's corrcoef block)."""
    k = len(predicted)
    return np.corrcoef(predicted, image)[:k, k:]


def correlation(predictions: str | Path, embeddings: str | Path, objective: str, n_images: int,
                pooling: str, center: bool) -> Correlation:
    """One model's matrix over the first ``min(n_images, N)`` test images of ``predictions``."""
    ids = read_prediction_ids(predictions)
    k = min(n_images, len(ids))
    if k < 2:
        raise data.DataError(f"{predictions}: {len(ids)} test image(s); a correlation matrix needs at least 2")
    pred_shape = data.prediction_shape(predictions)[1:]
    img_shape = data.embedding_shape(embeddings)
    if tuple(pred_shape) != tuple(img_shape):
        raise data.DataError(f"{predictions}: predicted tokens are (T, D) = {tuple(pred_shape)} but {embeddings} "
                             f"holds {tuple(img_shape)}; expected the embeddings the model was trained on")
    pred = first_rows_centered(lambda a, b: _prediction_rows(predictions, a, b), len(ids), k, center)
    img = first_rows_centered(lambda a, b: _image_rows(embeddings, ids, a, b), len(ids), k, center)
    matrix = cross_correlation(pool(pred, pooling), pool(img, pooling))
    if not np.isfinite(matrix).all():
        raise data.DataError(f"{predictions}: an embedding is constant over its features, so its correlation is "
                             "undefined (try center: false, or pooling: flatten)")
    return Correlation(objective=objective, matrix=matrix, nsd_id=ids[:k])


def summary(results: list[Correlation], pooling: str, center: bool) -> pd.DataFrame:
    """One row per model: model, objective, n_images, pooling, center, mean diagonal r, mean off-diagonal r."""
    from brainot.figures.plotting import objective_label

    return pd.DataFrame([{
        "model": objective_label(r.objective), "objective": r.objective, "n_images": len(r.matrix),
        "pooling": pooling, "center": center,
        "mean_diagonal_r": round(r.mean_diagonal, 4), "mean_off_diagonal_r": round(r.mean_off_diagonal, 4),
    } for r in results])


def plot(results: list[Correlation]):
    """One heatmap per model, side by side, on one symmetric colour scale with one colour bar."""
    from brainot.figures.plotting import objective_label, plt

    vmax = max(float(np.abs(r.matrix).max()) for r in results)
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results) + 1, 5), squeeze=False,
                             layout="constrained")
    image = None
    for ax, result in zip(axes[0], results):
        k = len(result.matrix)
        image = ax.imshow(result.matrix, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{objective_label(result.objective)}\nmean r: diagonal {result.mean_diagonal:.2f}, "
                     f"off-diagonal {result.mean_off_diagonal:.2f}")
        ax.set_xlabel("image embedding (test index)")
        ax.set_ylabel("predicted embedding (test index)")
        ticks = np.arange(0, k, max(1, k // 8))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Pearson r")
    fig.suptitle(f"Fig. 1: correlation of predicted and image embeddings, first {len(results[0].matrix)} test images")
    return fig, axes[0]
