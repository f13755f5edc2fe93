r"""Partial optimal transport solvers, batched over a leading dimension, in POT's function style.

The problem (Chapel et al. 2020, eq. 1; the paper's eqs. 12-13), for each problem of a batch:

.. math::
    \gamma^\star = \arg\min_{\gamma \ge 0} \langle \gamma, M \rangle_F
    \quad \text{s.t.} \quad \gamma \mathbf{1} \le a, \quad \gamma^\top \mathbf{1} \le b,
    \quad \mathbf{1}^\top \gamma \mathbf{1} = m \le \min(\|a\|_1, \|b\|_1)

Two solvers:

- :func:`partial_wasserstein_exact`: the exact linear programme of POT's ``ot.partial.partial_wasserstein``
  (network simplex on the problem extended by a dummy point, Chapel et al. 2020 prop. 1) on CPU float64 copies,
  one problem at a time. The reference, and what the paper's authors ran.
- :func:`sinkhorn_partial`: the entropic problem (objective :math:`+ \varepsilon \sum \gamma (\log \gamma - 1)`,
  POT's ``ot.partial.entropic_partial_wasserstein``), solved by Dykstra's algorithm of iterated KL projections
  (Benamou et al. 2015, sec. 5), in the log domain and on a whole batch at once, on CPU or GPU.

Splitting. Benamou et al. (and POT) project in turn onto three sets, rows <= a, columns <= b and total = m. That
converges very slowly whenever the mass constraint fights a saturated marginal (the mass projection rescales
every entry, the next capacity projection clips them back): e.g. 800 iterations where the rows are nearly alike.
Here the constraints are grouped into two sets, :math:`\mathcal{A} = \{\gamma\mathbf{1} \le a,\
\mathbf{1}^\top\gamma\mathbf{1} = m\}` and :math:`\mathcal{B} = \{\gamma^\top\mathbf{1} \le b,\
\mathbf{1}^\top\gamma\mathbf{1} = m\}`, whose KL projections are exact and cheap: a row scaling
:math:`\min(e^\sigma, a_i / r_i)` with the one scalar :math:`\sigma` that gives mass m, found by sorting the n
thresholds (:func:`log_capped_scaling`). Dykstra's corrections for scaling projections are the inverse scalings, so
the iterates are :math:`\log\gamma_{ij} = -M_{ij}/\varepsilon + u_i + v_j` with

.. math::
    u &\leftarrow \min\big(\sigma,\ \log a - \operatorname{LSE}_j(-M_{ij}/\varepsilon + v_j)\big),
        \quad \sigma: \textstyle\sum_{ij}\gamma_{ij} = m \\
    v &\leftarrow \min\big(\tau,\ \log b - \operatorname{LSE}_i(-M_{ij}/\varepsilon + u_i)\big),
        \quad \tau: \textstyle\sum_{ij}\gamma_{ij} = m

from :math:`v = 0`: a Sinkhorn iteration whose scalings are capped. Its fixed point is the unique entropic
partial-OT plan, POT's ``entropic_partial_wasserstein`` (checked in the tests); state is O(n + m) per problem and
each iteration is two log-sum-exp passes over the cost plus two sorts of n and m numbers.

Known limit (every Sinkhorn scheme shares it): well-separated clusters whose sizes differ between the two sides, at a
mass above what the clusters can match among themselves, need mass moved across a gap much larger than epsilon; the
potentials then creep at a rate of about exp(-gap / epsilon) and 100 iterations leave the plan a few percent
infeasible (see ``docs/ot.md``). ``log=True`` returns the constraint violation to watch for it.

References
----------
- Chapel, L., Alaya, M. Z., & Gasso, G. (2020). Partial optimal transport with applications on positive-unlabeled
  learning. NeurIPS 33.
- Benamou, J.-D., Carlier, G., Cuturi, M., Nenna, L., & Peyré, G. (2015). Iterative Bregman projections for
  regularized transportation problems. SIAM J. Sci. Comput. 37(2), A1111-A1138.
"""

from __future__ import annotations

import numpy as np
import torch

from brainot.model.pot_simplex import SimplexFailure, network_simplex

COST_NORMALISATIONS = ("none", "max", "mean", "nearest")
EXACT_MAX_ITER = 10_000_000   # network-simplex pivots; a 256 x 256 problem needs a few thousand


def dist_sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Squared Euclidean cost :math:`M_{ij} = \|x_i - y_j\|^2`, batched (the paper's eq. 9).

    x (B, n, d), y (B, m, d) -> M (B, n, m), differentiable in x and y. Computed as
    :math:`\|x_i\|^2 + \|y_j\|^2 - 2 x_i^\top y_j` (one batched matmul, as ``ot.dist``), clamped at 0 against
    rounding; equal to ``torch.cdist(x, y) ** 2`` (the authors' code) without the square root's round trip.
    """
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"dist_sqeuclidean: expected x (B, n, d) and y (B, m, d), got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    sq = (x * x).sum(-1)[:, :, None] + (y * y).sum(-1)[:, None, :] - 2 * torch.bmm(x, y.transpose(1, 2))
    return sq.clamp_min(0)


def normalise_cost(M: torch.Tensor, how: str) -> torch.Tensor:
    """M (B, n, m) divided per problem by a scale: ``none`` 1, ``max``, ``mean``, or ``nearest``.

    ``nearest`` is the mean nearest-neighbour cost, min(mean_i min_j M_ij, mean_j min_i M_ij) (the smaller side,
    so that an untrained encoder's near-constant rows do not inflate it): the scale of what an optimal plan pays
    per unit of mass. With it, epsilon bounds the relative error of the entropic transport cost whatever the
    embedding dimension, the training stage or the spread of the far pairs, which ``max`` and ``mean`` do not
    (both are set by the far pairs). Used on the detached cost before the entropic solve.
    """
    if how == "none":
        return M
    if how == "max":
        scale = M.amax(dim=(1, 2))
    elif how == "mean":
        scale = M.mean(dim=(1, 2))
    elif how == "nearest":
        scale = torch.minimum(M.amin(2).mean(1), M.amin(1).mean(1))
    else:
        raise ValueError(f"cost normalisation {how!r}: expected one of {', '.join(COST_NORMALISATIONS)}")
    # A zero scale (x == y exactly) leaves the cost as it is rather than dividing by zero.
    return M / torch.where(scale > 0, scale, torch.ones_like(scale))[:, None, None]


def _check_problem(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, m) -> torch.Tensor:
    """Shapes, and ``m`` as a (B,) tensor in M's dtype; raises ValueError naming what is wrong."""
    if M.ndim != 3:
        raise ValueError(f"M: expected a batch of cost matrices (B, n, m), got shape {tuple(M.shape)}")
    B, n, k = M.shape
    if tuple(a.shape) != (B, n):
        raise ValueError(f"a: expected shape (B, n) = {(B, n)} to match M {tuple(M.shape)}, got {tuple(a.shape)}")
    if tuple(b.shape) != (B, k):
        raise ValueError(f"b: expected shape (B, m) = {(B, k)} to match M {tuple(M.shape)}, got {tuple(b.shape)}")
    m = torch.as_tensor(m, dtype=M.dtype, device=M.device)
    if m.ndim == 0:
        m = m.expand(B)
    if tuple(m.shape) != (B,):
        raise ValueError(f"m: expected a scalar or shape (B,) = {(B,)}, got {tuple(m.shape)}")
    # One host sync per solve; it turns a silent NaN plan into a clear error.
    cap = torch.minimum(a.sum(1), b.sum(1))
    if bool(((m <= 0) | (m > cap * (1 + 1e-6))).any()):
        raise ValueError(f"m: the transported mass must be in (0, min(sum a, sum b)]; got m = {m.tolist()} "
                         f"with min(sum a, sum b) = {cap.tolist()}")
    return m


def log_capped_scaling(log_cap: torch.Tensor, R: torch.Tensor, log_m: torch.Tensor) -> torch.Tensor:
    r"""The log-scaling of the KL projection onto :math:`\{r \le \mathrm{cap},\ \sum r = m\}`, batched.

    log_cap (B, n) log capacities; R (B, n) log row (or column) masses of the current kernel; log_m (B,).
    Returns u (B, n) = min(sigma, log_cap - R) with :math:`\sum_i e^{u_i + R_i} = m`. The rows whose threshold
    :math:`t_i = \log\mathrm{cap}_i - R_i` lies below sigma are saturated; sorting the thresholds makes the total
    mass at each breakpoint a cumulative sum, and sigma follows in closed form on the bracketing segment.
    Requires m <= sum(cap) (all rows saturate at equality).
    """
    t = log_cap - R
    ts, order = torch.sort(t, dim=1)
    Rs = torch.gather(R, 1, order)
    caps = torch.gather(log_cap, 1, order).exp()
    saturated = torch.cumsum(caps, 1) - caps                     # mass of the rows before j, all saturated
    tail = torch.logcumsumexp(Rs.flip(1), 1).flip(1)            # log sum_{i >= j} exp(R_(i))
    mass_at = saturated + torch.exp(ts + tail)                  # total mass when sigma = t_(j)
    m = log_m.exp()[:, None]
    n = t.shape[1]
    k = (mass_at <= m).sum(1, keepdim=True)                     # rows saturated at the solution
    kc = k.clamp(max=n - 1)
    sigma = (torch.log((m - torch.gather(saturated, 1, kc)).clamp_min(torch.finfo(t.dtype).tiny))
             - torch.gather(tail, 1, kc))
    # Rounding can push sigma off its segment [t_(k-1), t_(k)]; clip it back. k == n: everything saturates.
    lo = torch.where(k > 0, torch.gather(ts, 1, (k - 1).clamp(min=0)), torch.full_like(sigma, -torch.inf))
    hi = torch.where(k < n, torch.gather(ts, 1, kc), ts[:, -1:])
    sigma = torch.where(k < n, torch.maximum(torch.minimum(sigma, hi), lo), hi)
    return torch.minimum(sigma, t)


def partial_sinkhorn_iterations(logK: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, log_m: torch.Tensor,
                                v: torch.Tensor, n_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n_iter`` capped Sinkhorn iterations of entropic partial OT (module docstring).

    logK (B, n, m) = -M / reg; log_a (B, n); log_b (B, m); log_m (B,); v (B, m) the current column
    log-scaling. Returns (u (B, n), v (B, m)); the plan is :math:`\exp(\log K_{ij} + u_i + v_j)`
    (:func:`partial_plan`).

    A pure tensor function with a fixed trip count and no host syncs, so ``torch.compile`` or a CUDA graph can
    capture it whole; the convergence check lives outside it (:func:`sinkhorn_partial`).
    """
    for _ in range(n_iter):
        u = log_capped_scaling(log_a, torch.logsumexp(logK + v[:, None, :], dim=2), log_m)
        v = log_capped_scaling(log_b, torch.logsumexp(logK + u[:, :, None], dim=1), log_m)
    return u, v


def partial_plan(logK: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The plan exp(logK_ij + u_i + v_j), (B, n, m), from :func:`partial_sinkhorn_iterations`."""
    return torch.exp(logK + u[:, :, None] + v[:, None, :])


def partial_marginal_error(G: torch.Tensor, a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    r"""Constraint violation of plans G (B, n, m), relative to the mass: (B,)

    .. math:: \big(\|(G\mathbf{1} - a)_+\|_1 + \|(G^\top\mathbf{1} - b)_+\|_1
              + |\mathbf{1}^\top G \mathbf{1} - m|\big) / m
    """
    excess_a = (G.sum(2) - a).clamp_min(0).sum(1)
    excess_b = (G.sum(1) - b).clamp_min(0).sum(1)
    return (excess_a + excess_b + (G.sum((1, 2)) - m).abs()) / m


def sinkhorn_partial(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, m, reg: float,
                     numItermax: int = 1000, stopThr: float = 1e-9, check_every: int = 10, log: bool = False):
    r"""Entropic partial OT plans of a batch of problems: capped log-domain Sinkhorn (Dykstra, Benamou et al. 2015).

    Solves, for every problem of the batch at once,

    .. math::
        \gamma = \arg\min_{\gamma \ge 0} \langle \gamma, M \rangle_F
                 + \mathrm{reg} \sum_{ij} \gamma_{ij} (\log \gamma_{ij} - 1)
        \quad \text{s.t.} \quad \gamma \mathbf{1} \le a,\ \gamma^\top \mathbf{1} \le b,\
        \mathbf{1}^\top \gamma \mathbf{1} = m

    (the problem of POT's ``ot.partial.entropic_partial_wasserstein``, Chapel et al. 2020) with the iterations of
    the module docstring. As reg -> 0 the plan tends to the exact partial-OT plan
    (:func:`partial_wasserstein_exact`).

    Parameters
    ----------
    a : (B, n) tensor, positive source weights.
    b : (B, m) tensor, positive target weights.
    M : (B, n, m) tensor, costs. Not differentiated through (the solve runs under ``torch.no_grad``).
    m : float or (B,) tensor, the mass to transport, 0 < m <= min(sum a, sum b) per problem.
    reg : float > 0, the entropic regularisation, in the units of M.
    numItermax : int, the most iterations.
    stopThr : float, stop when, for every problem, both the constraint violation
        (:func:`partial_marginal_error`) and the plan change since the previous check,
        ``sum |G_t - G_{t - check_every}| / m``, are <= stopThr.
    check_every : int, iterations between convergence checks (each check is one host sync).
    log : bool, also return a dict with ``n_iter`` (int), ``err`` (B,) the constraint violation and
        ``plan_change`` (B,) at the last check.

    Returns
    -------
    G : (B, n, m) tensor in M's dtype and device (and the log dict when ``log``).
    """
    check_solver_settings(reg, numItermax, check_every)
    with torch.no_grad():
        M = M.detach()
        a, b = a.to(M), b.to(M)
        m = _check_problem(a, b, M, m)
        G, info = checked_iterations(partial_sinkhorn_iterations, -M / reg, a, b, m, numItermax, stopThr,
                                     check_every)
    return (G, info) if log else G


def check_solver_settings(reg: float, numItermax: int, check_every: int) -> None:
    """Raise ValueError unless reg > 0 and numItermax, check_every >= 1."""
    if reg <= 0:
        raise ValueError(f"reg: the entropic regularisation must be > 0, got {reg}")
    if numItermax < 1 or check_every < 1:
        raise ValueError(f"numItermax ({numItermax}) and check_every ({check_every}) must be >= 1")


def checked_iterations(iterations, logK: torch.Tensor, a: torch.Tensor, b: torch.Tensor, m: torch.Tensor,
                       numItermax: int, stopThr: float, check_every: int) -> tuple[torch.Tensor, dict]:
    """Run ``iterations`` (e.g. :func:`partial_sinkhorn_iterations`) ``check_every`` at a time until converged.

    The stopping rule of :func:`sinkhorn_partial`, shared with the fused solvers of :mod:`brainot.model.ot_fast`
    (``iterations(logK, log_a, log_b, log_m, v, n_iter) -> (u, v)``, the same contract). logK (B, n, m) = -M / reg;
    a (B, n), b (B, m), m (B,) checked. Returns the plan (B, n, m) and the log dict of :func:`sinkhorn_partial`.
    """
    logK = logK.contiguous()
    log_a, log_b, log_m = a.log().contiguous(), b.log().contiguous(), m.log().contiguous()
    v = torch.zeros_like(log_b)
    G_prev, n_iter = None, 0
    while n_iter < numItermax:
        steps = min(check_every, numItermax - n_iter)
        u, v = iterations(logK, log_a, log_b, log_m, v, steps)
        n_iter += steps
        G = partial_plan(logK, u, v)
        err = partial_marginal_error(G, a, b, m)
        change = (G - G_prev).abs().sum((1, 2)) / m if G_prev is not None else torch.full_like(err, torch.inf)
        if float(torch.maximum(err, change).max()) <= stopThr:
            break
        G_prev = G
    return G, {"n_iter": n_iter, "err": err, "plan_change": change}


def partial_wasserstein_exact(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, m) -> torch.Tensor:
    """Exact partial-OT plans, one network-simplex LP per problem (Chapel et al. 2020, prop. 1).

    a (B, n), b (B, m), M (B, n, m) tensors, m a float or (B,) tensor with 0 < m <= min(sum a, sum b).
    Returns G (B, n, m) in M's dtype and device. Solved in float64 on CPU (no gradient): the reference for
    :func:`sinkhorn_partial`, and the authors' per-sample loop. A problem whose M, a or b holds inf or NaN gets
    an all-NaN plan, as from :func:`sinkhorn_partial`.

    Each problem is POT's ``ot.partial.partial_wasserstein`` LP, built as POT builds it (:func:`extended_problem`)
    and handed to the compiled network simplex that ``ot.emd`` calls (:mod:`brainot.model.pot_simplex`): POT's plans
    (test ``test_exact_plans_are_pots``) without the per-call backend dispatch and checks of
    ``partial_wasserstein`` and ``emd``, which are most of the time of a 16 x 16 problem (0.17 ms of 0.2 ms on the
    demo machine, where one encoder solves 17,920).
    """
    M = M.detach()
    m = _check_problem(a.to(M), b.to(M), M, m)
    a64 = a.detach().cpu().double().numpy()
    b64 = b.detach().cpu().double().numpy()
    M64 = M.cpu().double().numpy()
    m64 = m.cpu().double().numpy()
    cap = np.minimum(a64.sum(1), b64.sum(1))
    n_a, n_b = M64.shape[1:]
    plans = np.empty_like(M64)
    finite = np.isfinite(M64).all((1, 2)) & np.isfinite(a64).all(1) & np.isfinite(b64).all(1)
    for k in range(M64.shape[0]):
        if not finite[k]:
            # A diverged encoder (inf or NaN tokens) has no optimal plan; the simplex would call the problem
            # "infeasible". A NaN plan, as the Sinkhorn solvers give, makes the loss NaN, so training stops
            # with its non-finite-loss error naming the epoch and step, whichever solver runs.
            plans[k] = np.nan
            continue
        # POT refuses m above min(|a|, |b|) by a rounding hair; the check above already allowed for it.
        mk = min(float(m64[k]), float(cap[k]))
        a_ext, b_ext, M_ext = extended_problem(a64[k], b64[k], M64[k], mk)
        # Points without mass (a dummy when m is a marginal's total) leave the LP, as ot.emd drops them:
        # with ties among optimal plans, the simplex then pivots to POT's.
        rows, cols = np.flatnonzero(a_ext), np.flatnonzero(b_ext)
        try:
            G = network_simplex(a_ext[rows], b_ext[cols], M_ext[np.ix_(rows, cols)], EXACT_MAX_ITER)
        except SimplexFailure as exc:
            raise ValueError(f"exact partial OT, problem {k} of {M64.shape[0]}: {exc}") from None
        plan = np.zeros_like(M_ext)
        plan[np.ix_(rows, cols)] = G
        plans[k] = plan[:n_a, :n_b]
    return torch.from_numpy(plans).to(device=M.device, dtype=M.dtype)


def extended_problem(a: np.ndarray, b: np.ndarray, M: np.ndarray, m: float):
    """The balanced problem whose optimal plan, restricted to the real points, is an optimal partial plan of
    mass m (Chapel et al. 2020, prop. 1), exactly as ``ot.partial.partial_wasserstein`` (one dummy) and
    ``ot.emd`` give it to the network simplex: a dummy point on each side holding |b|_1 - m (rows) and
    |a|_1 - m (columns), with cost 0 to every real point and 2 max(M) to the other dummy; b then scaled to a's
    total.

    a (n,), b (m,), M (n, m) float64 -> a_ext (n + 1,), b_ext (m + 1,), M_ext (n + 1, m + 1), C-contiguous.
    """
    a_ext = np.append(a, b.sum() - m)
    b_ext = np.append(b, a.sum() - m)
    b_ext = b_ext * a_ext.sum() / b_ext.sum()
    M_ext = np.zeros((M.shape[0] + 1, M.shape[1] + 1))
    M_ext[:-1, :-1] = M
    M_ext[-1, -1] = 2 * M.max()
    return a_ext, b_ext, M_ext
