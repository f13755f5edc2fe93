"""Region importance (the paper's Fig. 4): how much each ROI family drives a trained encoder.

    python -m brainot.analysis.importance --cfg '{"gradient": "saliency", "loss": "objective"}' \\
        --model results/models/subj01/all/ot0.5/seed0/model.pt --voxels results/voxels/subj01.h5 \\
        --region results/rois/subj01/all.h5 --labels results/rois/subj01.parquet \\
        --embeddings results/embeddings/clip-vit-l14/shared.h5 --subject subj01 --families V P F W B \\
        --out results/tables/importance.csv --figure results/figures/importance.png

Two scores per input voxel of the model (``--cfg`` is the config's ``analysis.importance``), each then
averaged over the voxels of a region:

- ``gradient`` (the paper's "gradient perturbation"): the mean over the test images (repeat-averaged test voxels)
  of ``|dL_i / dx_iv|``, the first-order change of image i's loss when voxel v is perturbed
  (``gradient: saliency``). Not ``|x * dL/dx|`` by default: the betas are z-scored, so gradient x input also
  weighs a voxel by how far it happens to sit from its mean on that image, which is the image's doing, not the
  region's; ``gradient: grad_x_input`` gives it (the first-order effect of silencing the voxel) at no extra
  cost. ``L_i`` is the model's own training objective (``loss: objective``: ``config.json``'s objective and
  loss settings; partial OT at token granularity is one small problem per image, solved batched, so there is
  no reason to fall back to MSE) against the image's true tokens; ``loss: mse`` uses MSE instead. The loss of
  a batch is the sum over its images, so an image's gradient does not depend on the batch size (with the OT
  objective at ``batch`` granularity the plan couples the images of a batch; the gradient is then the one of
  that batch's problem).
- ``weight`` (the paper's "voxel weighting"): the L2 norm of the voxel's column of the subject's first layer
  ``Linear(V -> H)`` (``embed.<subject>.lin2.weight[:, v]``; ``Linear(1 -> L)`` is shared by all voxels, so
  this column is all the encoder sees of one voxel).

Regions: the ROI families (``--families``, the config's ``rois.families``; the labels of
``results/rois/{subject}.parquet``), a voxel of two families counting in both (as in the region sets), and
``other`` = the voxels in no family. A region's ``importance`` is the mean of its voxels' scores (the sum
normalised by its voxel count, so large regions are not favoured); ``importance_normalised`` divides by the
method's sum over regions, so each method's column sums to 1 and the two methods compare; ``rank`` 1 = most
important. Regions with no voxel among the model's input columns (e.g. ``other`` for a VPFWB model) get no row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from brainot.data.rois import OTHER
from brainot.io import DataError, average_repeats, n_voxels, read_region, read_split, read_tokens
from brainot.tables.build import write_numeric

# torch is imported inside the functions that compute: reading the module (its --help, its constants) stays cheap.
if TYPE_CHECKING:
    import torch

METHODS = ("gradient", "weight")
# Fig. 4's method names.
METHOD_NAMES = {"gradient": "gradient perturbation", "weight": "voxel weighting"}
GRADIENTS = ("saliency", "grad_x_input")
LOSSES = ("objective", "mse")
# The paper's region names (section 1) for the figure's axis.
REGION_NAMES = {"V": "vision", "P": "place", "F": "face", "W": "word", "B": "body", OTHER: "no family"}
COLUMNS = ["method", "region", "n_voxels", "importance", "importance_normalised", "rank"]


class ImportanceError(ValueError):
    """The model, the labels or the voxels do not fit together; the message names the file and what was expected."""


# ---------------------------------------------------------------------------------------------- regions


def region_masks(labels: pd.DataFrame, families: list[str], columns: np.ndarray, labels_path: str | Path = "labels"
                 ) -> dict[str, np.ndarray]:
    """Each family (and ``other``) -> a boolean mask over the model's input columns.

    labels: the rois parquet (one row per voxel column: ``column``, one column per family holding the area or
    null). columns: (C,) the voxel-matrix columns the model reads (its region set), in the model's input order.
    """
    missing = [f for f in families if f not in labels.columns]
    if missing:
        raise ImportanceError(f"{labels_path}: no column {missing[0]!r}; expected one column per ROI family "
                              f"({', '.join(families)}), as brainot.data.rois writes it")
    if "column" not in labels.columns or not np.array_equal(labels["column"].to_numpy(), np.arange(len(labels))):
        raise ImportanceError(f"{labels_path}: column 'column' must number the rows 0..{len(labels) - 1} "
                              "(one row per voxel column, in the voxel matrix's order)")
    if len(columns) and (columns.min() < 0 or columns.max() >= len(labels)):
        raise ImportanceError(f"{labels_path}: {len(labels)} labelled voxel columns, but the model reads column "
                              f"{int(columns.max())}; labels and model come from different voxel files")
    member = {f: labels[f].notna().to_numpy()[columns] for f in families}
    in_any = np.logical_or.reduce(list(member.values())) if member else np.zeros(len(columns), bool)
    return {**member, OTHER: ~in_any}


# ---------------------------------------------------------------------------------------------- voxel scores


def input_width(model: torch.nn.Module, subject: str) -> int:
    """V of the subject's first layer ``Linear(V -> H)``."""
    if subject not in model.embed:
        raise ImportanceError(f"the model has no input layer for {subject} (it has {', '.join(model.embed)})")
    return int(model.embed[subject].lin2.in_features)


def weight_scores(model: torch.nn.Module, subject: str) -> np.ndarray:
    """(V,) L2 norm of each voxel's column of the subject's ``Linear(V -> H)`` weight."""
    import torch

    with torch.no_grad():
        return model.embed[subject].lin2.weight.detach().float().norm(dim=0).cpu().numpy().astype(np.float64)


def gradient_scores(predict: Callable[[torch.Tensor], torch.Tensor], voxels: np.ndarray, tokens: np.ndarray,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], gradient: str = "saliency",
                    batch_size: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """(C,) mean over images of ``|dL_i/dx_iv|`` (``saliency``) or ``|x_iv dL_i/dx_iv|`` (``grad_x_input``).

    predict: (B, C) voxels -> (B, T, D) tokens. voxels (N, C), tokens (N, T, D): the test images' repeat-averaged
    voxels and true tokens. loss_fn(pred, target) is a batch mean; times B it is the sum of the images' losses.
    """
    import torch

    if gradient not in GRADIENTS:
        raise ValueError(f"gradient {gradient!r}: expected one of {', '.join(GRADIENTS)}")
    if len(voxels) != len(tokens) or len(voxels) == 0:
        raise ValueError(f"expected as many token rows as voxel rows, at least one; got {len(voxels)} and "
                         f"{len(tokens)}")
    total = torch.zeros(voxels.shape[1], dtype=torch.float64)
    for start in range(0, len(voxels), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(voxels[start:start + batch_size], dtype=np.float32)).to(device)
        y = torch.from_numpy(np.asarray(tokens[start:start + batch_size], dtype=np.float32)).to(device)
        x.requires_grad_(True)
        loss = loss_fn(predict(x), y) * x.shape[0]
        (grad,) = torch.autograd.grad(loss, x)
        score = grad.abs() if gradient == "saliency" else (grad * x).abs()
        total += score.detach().double().sum(dim=0).cpu()
    return (total / len(voxels)).numpy()


# ---------------------------------------------------------------------------------------------- aggregation


def aggregate(scores: np.ndarray, masks: dict[str, np.ndarray], method: str) -> pd.DataFrame:
    """Per region: mean of its voxels' scores, the share of the method's total, rank (1 = highest).

    Regions whose mask is empty are left out.
    """
    rows = [{"method": method, "region": region, "n_voxels": int(mask.sum()), "importance": float(scores[mask].mean())}
            for region, mask in masks.items() if mask.any()]
    table = pd.DataFrame(rows, columns=COLUMNS[:4])
    total = table["importance"].sum()
    table["importance_normalised"] = table["importance"] / total if total > 0 else np.nan
    # Exact ties (a dead first layer) take the regions' order, so ranks stay 1..n without gaps.
    table["rank"] = table["importance"].rank(ascending=False, method="first").astype(int)
    return table


def importance_table(model: torch.nn.Module, subject: str, voxels: np.ndarray, tokens: np.ndarray,
                     labels: pd.DataFrame, columns: np.ndarray, families: list[str],
                     loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, gradient: str = "saliency",
                     batch_size: int = 64, device: str | torch.device = "cpu",
                     model_path: str | Path = "model", labels_path: str | Path = "labels") -> pd.DataFrame:
    """Both methods' per-region table (:data:`COLUMNS`) for one subject of a trained encoder.

    voxels (N, C) repeat-averaged test voxels of the model's region columns ``columns`` (C,); tokens (N, T, D).
    """
    width = input_width(model, subject)
    if width != len(columns) or voxels.shape[1] != len(columns):
        raise ImportanceError(f"{model_path}: the model reads {width} voxels of {subject}, but its region set has "
                              f"{len(columns)} columns and the test voxels {voxels.shape[1]}; expected the region "
                              "file and voxel file the model was trained on")
    masks = region_masks(labels, families, columns, labels_path)
    model = model.to(device).eval()
    scores = {"gradient": gradient_scores(lambda x: model(x, subject), voxels, tokens, loss_fn, gradient,
                                          batch_size, device),
              "weight": weight_scores(model, subject)}
    return pd.concat([aggregate(scores[m], masks, m) for m in METHODS], ignore_index=True)


# ---------------------------------------------------------------------------------------------- outputs


def plot(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Grouped bars: per region, each method's normalised importance (PNG, dpi 150)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = list(dict.fromkeys(table["region"]))
    methods = [m for m in METHODS if m in set(table["method"])]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.1 * len(regions) + 2.5, 3.8))
    x = np.arange(len(regions))
    for k, method in enumerate(methods):
        part = table[table["method"] == method].set_index("region").reindex(regions)
        bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, part["importance_normalised"], width,
                      label=METHOD_NAMES[method])
        ax.bar_label(bars, labels=[f"#{int(r)}" if pd.notna(r) else "" for r in part["rank"]], fontsize=7)
    ax.set_xticks(x, [f"{r}\n({REGION_NAMES[r]})" if r in REGION_NAMES else r for r in regions])
    ax.set_xlabel("region")
    ax.set_ylabel("importance per voxel\n(share of the method's total)")
    ax.set_title(title)
    ax.legend(title="method", fontsize=8)
    ax.margins(y=0.15)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI


def read_labels(path: str | Path, n_vox: int, voxels_path: str | Path) -> pd.DataFrame:
    labels = pd.read_parquet(path)
    if len(labels) != n_vox:
        raise ImportanceError(f"{path}: {len(labels)} labelled voxel columns, but {voxels_path} has {n_vox}; "
                              "expected the labels written from that voxel file")
    return labels


def check_cfg(cfg: dict) -> tuple[str, str]:
    """``(gradient, loss)`` of the ``analysis.importance`` section, checked."""
    for key, allowed in (("gradient", GRADIENTS), ("loss", LOSSES)):
        if cfg.get(key) not in allowed:
            raise ImportanceError(f"analysis.importance.{key}: {cfg.get(key)!r}; expected one of {', '.join(allowed)}")
    return cfg["gradient"], cfg["loss"]


def loss_for(cfg: dict, choice: str, model_path: str | Path) -> Callable:
    """The gradient's loss: the run's training objective (``config.json``) or MSE."""
    from brainot.model.losses import make_loss, mse_loss

    if choice == "mse":
        return mse_loss
    if "objective" not in cfg or "loss" not in cfg:
        raise ImportanceError(f"{Path(model_path).with_name('config.json')}: keys 'objective' and 'loss' missing; "
                              "expected the config.json that brainot.train writes")
    return make_loss(cfg["loss"], cfg["objective"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m brainot.analysis.importance",
        description="Region importance of a trained encoder (the paper's Fig. 4): per ROI family and 'other', "
                    "the mean per-voxel gradient of the loss on the test images (gradient perturbation) and the "
                    "mean first-layer weight norm (voxel weighting). Writes a CSV + Parquet table and a bar plot.")
    p.add_argument("--model", required=True, help="results/models/{run}/model.pt (config.json next to it)")
    p.add_argument("--voxels", required=True, help="results/voxels/{subject}.h5 (the test split is used)")
    p.add_argument("--region", required=True, help="results/rois/{subject}/{region}.h5, the model's region set")
    p.add_argument("--labels", required=True, help="results/rois/{subject}.parquet, the voxel columns' ROI labels")
    p.add_argument("--embeddings", required=True, nargs="+",
                   help="caches holding the true tokens of the test images (results/embeddings/{name}/shared.h5)")
    p.add_argument("--subject", required=True, help="subject name, e.g. subj01 (one the model was trained on)")
    p.add_argument("--families", nargs="+", required=True,
                   help="ROI family letters to score (the config's rois.families keys, e.g. V P F W B); "
                        "'other' (voxels in none of them) is added")
    p.add_argument("--cfg", required=True, type=json.loads,
                   help="the config's analysis.importance section as JSON: gradient (saliency = |dL/dx|, "
                        "grad_x_input = |x dL/dx|) and loss (objective = the model's training objective, or mse)")
    p.add_argument("--batch-size", type=int, default=64, help="test images per backward pass")
    p.add_argument("--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda', ...")
    p.add_argument("--out", required=True,
                   help="output CSV (results/tables/importance.csv); .parquet written next to it")
    p.add_argument("--figure", required=True, help="output PNG bar plot (results/figures/importance.png)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from brainot.predict import check_compatible, load_model
    from brainot.devices import pick_device

    args = parse_args(argv)
    cfg_gradient, cfg_loss = check_cfg(args.cfg)
    t0 = time.perf_counter()
    device = pick_device(args.device)
    model, cfg = load_model(args.model, device)
    n_vox = n_voxels(args.voxels)
    columns = read_region(args.region, n_vox)
    check_compatible(cfg, args.subject, args.region, columns.size, args.model)
    labels = read_labels(args.labels, n_vox, args.voxels)
    vox, nsd_id, n_reps = read_split(args.voxels, "test", columns)
    if len(nsd_id) == 0:
        raise DataError(f"{args.voxels}: test/voxels has no rows; the gradient needs test images")
    tokens = read_tokens(args.embeddings, nsd_id)
    table = importance_table(model, args.subject, average_repeats(vox, n_reps), tokens, labels, columns,
                             args.families, loss_for(cfg, cfg_loss, args.model), gradient=cfg_gradient,
                             batch_size=args.batch_size, device=device, model_path=args.model,
                             labels_path=args.labels)
    parquet = write_numeric(table, args.out, "%.6g")
    loss_name = cfg["objective"] if cfg_loss == "objective" else "mse"
    plot(table, args.figure, f"Region importance: {args.subject}, region set {cfg['region']!r}, {loss_name} "
                             f"({len(nsd_id)} test images)")
    print(f"{args.subject}, model {args.model} (region {cfg['region']!r}, {columns.size} voxels), "
          f"gradient {cfg_gradient} of the {loss_name} loss over {len(nsd_id)} test images:")
    for method in METHODS:
        part = table[table["method"] == method].sort_values("rank")
        print(f"  {METHOD_NAMES[method]:22s} " + "  ".join(
            f"{r.region} {r.importance_normalised:.3f} (n={r.n_voxels})" for r in part.itertuples()))
    print(f"wrote {args.out}, {parquet} and {args.figure} in {time.perf_counter() - t0:.1f} s on {device}")
    return table


if __name__ == "__main__":
    main()
