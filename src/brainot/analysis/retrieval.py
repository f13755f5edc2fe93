"""Image retrieval from predicted tokens: does a prediction pick out its own image among the test images?"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLS = ("mean", "flat")


def similarity(pred, target, pool: str = "mean") -> torch.Tensor:
    """Cosine similarity of every prediction with every target: (N, T, D), (M, T, D) -> (N, M).

    ``S[i, j] = <u_i, v_j> / (|u_i| |v_j|)`` with ``u_i = f(pred[i])`` and ``v_j = f(target[j])``, where ``f`` is the
    mean over tokens (``pool='mean'``, as in MindEye's and UMBRAE's retrieval on pooled CLIP embeddings) or the
    flattened ``T * D`` vector (``pool='flat'``).
    """
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
    pred, target = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    if pred.ndim != 3 or target.ndim != 3 or pred.shape[1:] != target.shape[1:]:
        raise ValueError(f"expected pred (N, T, D) and target (M, T, D) with the same T, D; "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    u = pred.mean(1) if pool == "mean" else pred.flatten(1)
    v = target.mean(1) if pool == "mean" else target.flatten(1)
    return F.normalize(u, dim=1) @ F.normalize(v, dim=1).T


def top1(pred, target, pool: str = "mean") -> float:
    """Top-1 retrieval accuracy: the fraction of ``i`` with ``argmax_j S[i, j] == i`` (:func:`similarity`).

    ``pred`` and ``target`` (N, T, D) are paired row by row; chance is ``1 / N``.
    """
    sim = similarity(pred, target, pool)
    if sim.shape[0] != sim.shape[1]:
        raise ValueError(f"top1 pairs predictions with targets row by row; got {sim.shape[0]} and {sim.shape[1]}")
    return float((sim.argmax(dim=1) == torch.arange(sim.shape[0], device=sim.device)).float().mean())


def two_way(pred, target, pool: str = "mean") -> float:
    """Pairwise (2-way) identification accuracy: ``mean_i mean_{j != i} [S[i, i] > S[i, j]]`` (:func:`similarity`).

    For each prediction, the fraction of other images it is closer to its own image than to; chance is 0.5
    whatever N, and it varies far less than top-1 on small test sets (Kay et al. 2008, Nature 452:352).
    """
    sim = similarity(pred, target, pool)
    n = sim.shape[0]
    if n != sim.shape[1] or n < 2:
        raise ValueError(f"two_way pairs at least 2 predictions with targets row by row; got {tuple(sim.shape)}")
    wins = (sim.diagonal()[:, None] > sim).sum(dim=1)   # the diagonal never beats itself
    return float(wins.sum()) / (n * (n - 1))
