r"""Training losses between predicted tokens x and image tokens y, both (B, T, D): MSE and partial OT.

- ``mse``: ``mean((x - y) ** 2)`` over every element (UMBRAE's baseline).
- ``ot<lambda>``: partial optimal transport (the paper's eqs. 9-14) with uniform weights and mass
  :math:`m = \lambda \min(\sum a, \sum b) = \lambda`, cost :math:`C_{ij} = \|x_i - y_j\|^2` (``loss.cost:
  sqeuclidean``, the paper's eq. 9) or :math:`C_{ij} = \|x_i - y_j\|` (``euclidean``, the authors' ``torch.cdist``,
  :func:`authors_ot_loss`) and loss
  :math:`L = \sum_{ij} \gamma^\star_{ij} C_{ij}`. The plan :math:`\gamma^\star` is solved without gradient on the
  detached (optionally normalised) cost; the gradient flows through C only, which by the envelope theorem is
  the gradient of the optimal transport cost (the paper's eq. 19), as in the authors' code.

  Granularity ``token``: one problem per sample, between its T predicted and T image tokens (weights 1/T), and
  the loss is the batch mean (the authors' code). Granularity ``batch``: one problem between the B samples of
  the batch (weights 1/B), each sample's tokens flattened into one (T*D)-vector (flattening keeps the paper's
  MSE-as-special-case identity exact, which pooling would not).

  With the identity plan (mass 1, :math:`\gamma = I/T` resp. :math:`I/B`) and the squared cost the loss is
  ``D * mse_loss`` (token) resp. ``T * D * mse_loss`` (batch): both equal the paper's eq. 2,
  :math:`\frac{1}{N}\sum_i \|x_i - y_i\|^2`, with :math:`x_i` a token resp. a whole sample (the Euclidean cost
  gives the mean distance instead, and a different plan wherever the two costs rank matchings differently).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from brainot.config import ConfigError, parse_objective
from brainot.model import ot as bot

GRANULARITIES = ("token", "batch")
COSTS = ("sqeuclidean", "euclidean")
SOLVERS = ("exact", "sinkhorn")
# How the sinkhorn solver runs (loss.backend): plain = brainot.model.ot.sinkhorn_partial; the others are
# brainot.model.ot_fast's fused backends (same iterations); auto = the Triton kernel where it can run, else plain.
BACKENDS = ("auto", "plain", "torch", "triton", "graph", "compile")
# loss: keys that ot_loss takes as settings (loss.mass is the tables' default lambda, not a solver setting:
# the mass of a run comes from its objective wildcard).
PLAN_SETTINGS = ("solver", "epsilon", "cost_normalisation", "max_iter", "tol", "check_every", "backend")
OT_SETTINGS = PLAN_SETTINGS + ("granularity", "cost")


def mse_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element of x, y (B, T, D)."""
    _check_tokens(x, y)
    return torch.mean((x - y) ** 2)


def _check_tokens(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(f"expected predicted and image tokens of the same shape (B, T, D), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str) -> torch.Tensor:
    r"""Costs (B, n, k) between x (B, n, d) and y (B, k, d): :math:`\|x_i - y_j\|^2` (``sqeuclidean``, the paper's
    eq. 9) or :math:`\|x_i - y_j\|` (``euclidean``: ``torch.cdist``, as the authors' code, whose gradient is 0,
    not NaN, where a distance is 0)."""
    if cost == "sqeuclidean":
        return bot.dist_sqeuclidean(x, y)
    if cost == "euclidean":
        return torch.cdist(x, y)
    raise ValueError(f"loss.cost {cost!r}: expected one of {', '.join(COSTS)}")


def authors_ot_loss(x: torch.Tensor, y: torch.Tensor, mass: float) -> torch.Tensor:
    r"""The paper authors' partial-OT loss, the reference of :func:`ot_loss` (and of the benchmarks): one sample at
    a time, :math:`C = \text{cdist}(x_b, y_b)` (Euclidean, not squared), POT's exact ``partial_wasserstein``
    (uniform weights, m = ``mass``) on a detached CPU float64 copy, :math:`\sum_{ij} \gamma_{ij} C_{ij}`, averaged
    over the batch. x, y (B, T, D); equals ``ot_loss(..., solver="exact", granularity="token", cost="euclidean")``.
    """
    import ot

    _check_tokens(x, y)
    a, b = ot.unif(x.shape[1]), ot.unif(y.shape[1])
    total = x.new_zeros(())
    for xi, yi in zip(x, y):
        C = torch.cdist(xi, yi)
        gamma = ot.partial.partial_wasserstein(a, b, C.detach().cpu().double().numpy(), m=mass)
        total = total + (C * torch.from_numpy(gamma).to(C)).sum()
    return total / x.shape[0]


def sinkhorn_solver(backend: str, M: torch.Tensor) -> Callable:
    """The entropic solver that ``loss.backend`` names for costs M: :func:`brainot.model.ot.sinkhorn_partial` (plain,
    and ``auto`` where the Triton kernel cannot run) or :func:`brainot.model.ot_fast.sinkhorn_partial_fast`."""
    if backend not in BACKENDS:
        raise ValueError(f"loss.backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "plain":
        return bot.sinkhorn_partial
    from brainot.model import ot_fast  # imports Triton where installed: only when a fused backend may be used

    if backend == "auto" and not ot_fast.triton_usable(M):
        return bot.sinkhorn_partial
    return partial(ot_fast.sinkhorn_partial_fast, backend=backend)


def transport_plan(C: torch.Tensor, mass: float, *, solver: str, epsilon: float, cost_normalisation: str,
                   max_iter: int, tol: float, check_every: int, backend: str) -> tuple[torch.Tensor, dict]:
    """Partial-OT plans (B, n, k) for costs C (B, n, k), uniform weights, mass ``mass`` (1 = all of it).

    No gradient: the plan is a constant of the loss. Returns (plan, log) where log has ``n_iter`` and the
    relative constraint violation ``err`` (B,) of the plan (and, for sinkhorn, the ``backend`` that ran).
    """
    with torch.no_grad():
        # Half-precision costs (autocast) would lose the small differences the plan depends on.
        M = C.detach().to(torch.promote_types(C.dtype, torch.float32))
        B, n, k = M.shape
        a = torch.full((B, n), 1.0 / n, dtype=M.dtype, device=M.device)
        b = torch.full((B, k), 1.0 / k, dtype=M.dtype, device=M.device)
        m = float(mass)  # lambda * min(sum a, sum b), both sums being 1
        if solver == "sinkhorn":
            M = bot.normalise_cost(M, cost_normalisation)
            G, log = sinkhorn_solver(backend, M)(a, b, M, m, epsilon, numItermax=max_iter, stopThr=tol,
                                                 check_every=check_every, log=True)
            log.setdefault("backend", "plain")
        elif solver == "exact":
            G = bot.partial_wasserstein_exact(a, b, M, m)
            log = {"n_iter": 0, "err": bot.partial_marginal_error(G, a, b, torch.full_like(M[:, 0, 0], m))}
        else:
            raise ValueError(f"solver {solver!r}: expected one of {', '.join(SOLVERS)}")
    return G.to(C.dtype), log


def ot_loss(x: torch.Tensor, y: torch.Tensor, mass: float, *, solver: str, granularity: str, epsilon: float,
            cost_normalisation: str, max_iter: int, tol: float, check_every: int, backend: str, cost: str,
            log: bool = False):
    r"""Partial-OT loss :math:`\sum_{ij} \gamma^\star_{ij} C_{ij}` (the paper's eq. 14), x, y (B, T, D), with
    ``cost`` (:func:`cost_matrix`) squared Euclidean (the paper) or Euclidean (the authors' code).

    ``mass`` is lambda in (0, 1] (the paper's eq. 11); ``granularity`` ``token`` (B problems of T x T, loss
    averaged over the batch) or ``batch`` (one B x B problem between flattened samples). The other arguments
    are the ``loss:`` settings of the config (:func:`transport_plan`). Returns a scalar tensor carrying the
    gradient of the cost with the plan held fixed, and with ``log`` also the solver's log dict.
    """
    _check_tokens(x, y)
    if not 0 < mass <= 1:
        raise ValueError(f"mass: lambda must be in (0, 1], got {mass}")
    if granularity == "token":
        C = cost_matrix(x, y, cost)
    elif granularity == "batch":
        C = cost_matrix(x.flatten(1)[None], y.flatten(1)[None], cost)
    else:
        raise ValueError(f"granularity {granularity!r}: expected one of {', '.join(GRANULARITIES)}")
    plan, info = transport_plan(C, mass, solver=solver, epsilon=epsilon, cost_normalisation=cost_normalisation,
                                max_iter=max_iter, tol=tol, check_every=check_every, backend=backend)
    loss = (plan * C).sum((1, 2)).mean()
    return (loss, info) if log else loss


def make_loss(loss_cfg: dict, objective: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of an objective wildcard: ``'mse'`` or ``'ot<lambda>'`` (e.g. ``'ot0.5'``).

    ``loss_cfg`` is the validated ``loss:`` section of the config; the mass comes from the objective.
    """
    kind, mass = parse_objective(objective)
    if kind == "mse":
        return mse_loss
    missing = [key for key in OT_SETTINGS if key not in loss_cfg]
    if missing:
        raise ConfigError(f"loss: missing {', '.join('loss.' + k for k in missing)} (expected the validated "
                          "loss section of the config)")
    return partial(ot_loss, mass=mass, **{key: loss_cfg[key] for key in OT_SETTINGS})
