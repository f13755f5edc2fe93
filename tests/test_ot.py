"""The partial-OT solvers of brainot.model.ot, pinned against POT (the exact LP, emd2 and POT's entropic solver)."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from benchmarks.ot import make_problem, relative_cost_error
from brainot.model import ot as bot

MASSES = (0.1, 0.3, 0.5, 0.9)
STRUCTURED = ("random", "permuted", "permuted-noisy", "clustered")


def uniform(B: int, n: int, dtype=torch.float32) -> torch.Tensor:
    return torch.full((B, n), 1.0 / n, dtype=dtype)


def solve_default(M: torch.Tensor, mass, loss_cfg: dict, **overrides):
    """sinkhorn_partial at the config's loss settings, uniform weights."""
    B, n, k = M.shape
    settings = {"numItermax": loss_cfg["max_iter"], "stopThr": loss_cfg["tol"],
                "check_every": loss_cfg["check_every"], "log": True, **overrides}
    return bot.sinkhorn_partial(uniform(B, n, M.dtype), uniform(B, k, M.dtype),
                                bot.normalise_cost(M, loss_cfg["cost_normalisation"]), mass,
                                loss_cfg["epsilon"], **settings)


@pytest.fixture
def loss_cfg(sim_cfg) -> dict:
    return sim_cfg["loss"]


def test_dist_sqeuclidean_matches_pot_dist():
    x, y = make_problem("random", 2, 7, 5, dtype=torch.float64)
    y = y[:, :6]
    M = bot.dist_sqeuclidean(x, y)
    assert M.shape == (2, 7, 6)
    for k in range(2):
        np.testing.assert_allclose(M[k].numpy(), ot.dist(x[k].numpy(), y[k].numpy()), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=r"expected x \(B, n, d\) and y \(B, m, d\)"):
        bot.dist_sqeuclidean(x, y[:, :, :4])


def test_normalise_cost_scales():
    x, y = make_problem("permuted", 2, 9, 4, dtype=torch.float64)
    M = bot.dist_sqeuclidean(x, y)
    nearest = torch.minimum(M.amin(2).mean(1), M.amin(1).mean(1))
    torch.testing.assert_close(bot.normalise_cost(M, "nearest"), M / nearest[:, None, None])
    assert torch.allclose(bot.normalise_cost(M, "max").amax((1, 2)), torch.ones(2, dtype=M.dtype))
    assert torch.allclose(bot.normalise_cost(M, "mean").mean((1, 2)), torch.ones(2, dtype=M.dtype))
    assert torch.equal(bot.normalise_cost(M, "none"), M)
    zero = torch.zeros(1, 3, 3)
    assert torch.equal(bot.normalise_cost(zero, "nearest"), zero)  # x == y: no division by zero
    with pytest.raises(ValueError, match="none, max, mean, nearest"):
        bot.normalise_cost(M, "median")


def test_log_capped_scaling_is_the_kl_projection():
    """min(sigma, log cap - R) is the KL projection of exp(R) onto {r <= cap, sum r = m}: r = min(cap, s exp(R))."""
    g = torch.Generator().manual_seed(1)
    R = 3 * torch.randn(4, 30, generator=g, dtype=torch.float64)
    cap = torch.rand(4, 30, generator=g, dtype=torch.float64) / 15
    for m in (0.05, 0.3, 0.9 * float(cap.sum(1).min()), cap.sum(1)):
        m = torch.as_tensor(m, dtype=torch.float64).expand(4)
        r = (bot.log_capped_scaling(cap.log(), R, m.log()) + R).exp()
        for k in range(4):
            # the projection's scalar s by bisection on the monotone total mass
            p, lo, hi = R[k].exp().numpy(), 0.0, 1e30
            for _ in range(400):
                s = np.sqrt(lo * hi) if lo > 0 else hi / 1e10
                lo, hi = (s, hi) if np.minimum(cap[k].numpy(), s * p).sum() < m[k].item() else (lo, s)
            np.testing.assert_allclose(r[k].numpy(), np.minimum(cap[k].numpy(), hi * p), rtol=1e-8, atol=1e-15)
        torch.testing.assert_close(r.sum(1), m)


@pytest.mark.parametrize("fraction", [0.3, 0.7, 1.0])
def test_sinkhorn_converges_to_pots_entropic_plan(fraction):
    """Same fixed point as ot.partial.entropic_partial_wasserstein_logscale (unequal weights, n != m)."""
    g = torch.Generator().manual_seed(2)
    x, y = make_problem("random", 2, 20, 5, dtype=torch.float64)
    y = y[:, :15]
    M = bot.normalise_cost(bot.dist_sqeuclidean(x, y), "max")
    a = torch.rand(2, 20, generator=g, dtype=torch.float64) + 0.5
    b = torch.rand(2, 15, generator=g, dtype=torch.float64) + 0.5
    a, b = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True) * 1.2
    # numpy's sums, as POT checks m <= min(sum a, sum b) with them
    m = torch.tensor([fraction * min(a[k].numpy().sum(), b[k].numpy().sum()) for k in range(2)], dtype=a.dtype)
    G, info = bot.sinkhorn_partial(a, b, M, m, 0.2, numItermax=2000, stopThr=1e-13, log=True)
    assert info["n_iter"] < 2000
    for k in range(2):
        ref = ot.partial.entropic_partial_wasserstein_logscale(a[k].numpy(), b[k].numpy(), M[k].numpy(), 0.2,
                                                               m=float(m[k]), numItermax=3000, stopThr=1e-15)
        np.testing.assert_allclose(G[k].numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("kind", STRUCTURED)
def test_sinkhorn_cost_within_one_percent_of_exact_lp(kind, loss_cfg):
    """At the config's epsilon and normalisation, sum(G * M) is within 1% of the exact partial LP.

    48 tokens of d = 1024: small problems converge more slowly than the paper's 256 (fewer, less concentrated
    distances), so here 100 iterations may leave up to ~0.2% of the mass off its marginals; the paper-size test
    below checks convergence to the config's tol.
    """
    x, y = make_problem(kind, 2, 48, 1024)
    M = bot.dist_sqeuclidean(x, y)
    for mass in MASSES:
        G, info = solve_default(M, mass, loss_cfg)
        exact = bot.partial_wasserstein_exact(uniform(2, 48), uniform(2, 48), M, mass)
        ref = np.array([ot.partial.partial_wasserstein2(ot.unif(48), ot.unif(48), M[k].double().numpy(), m=mass)
                        for k in range(2)])
        np.testing.assert_allclose((exact.double() * M.double()).sum((1, 2)).numpy(), ref, rtol=1e-6)
        assert float(relative_cost_error(G, exact, M).max()) <= 0.01, (kind, mass)
        assert float(info["err"].max()) <= 0.01, (kind, mass, info)


def test_full_mass_is_the_wasserstein_cost(loss_cfg):
    """m = 1: the exact partial LP is ot.emd2; the entropic plan's cost is within 1% of it."""
    x, y = make_problem("permuted-noisy", 2, 40, 32, dtype=torch.float64)
    M = bot.dist_sqeuclidean(x, y)
    emd2 = np.array([ot.emd2(ot.unif(40), ot.unif(40), M[k].numpy()) for k in range(2)])
    exact = bot.partial_wasserstein_exact(uniform(2, 40, M.dtype), uniform(2, 40, M.dtype), M, 1.0)
    np.testing.assert_allclose((exact * M).sum((1, 2)).numpy(), emd2, rtol=1e-9)
    G, _ = solve_default(M, 1.0, loss_cfg)
    np.testing.assert_array_less(np.abs((G * M).sum((1, 2)).numpy() / emd2 - 1), 0.01)


@pytest.mark.parametrize("mass", MASSES)
def test_plans_respect_the_constraints(mass, loss_cfg):
    """Total mass m and columns <= b exactly (the last projection); rows <= a up to the reported violation."""
    x, y = make_problem("clustered", 3, 32, 256)
    M = bot.dist_sqeuclidean(x, y)
    a, b = uniform(3, 32), uniform(3, 32)
    G, info = solve_default(M, mass, loss_cfg)
    exact = bot.partial_wasserstein_exact(a, b, M, mass)
    for plan in (G, exact):
        assert plan.shape == (3, 32, 32) and bool((plan >= 0).all())
        torch.testing.assert_close(plan.sum((1, 2)), torch.full((3,), mass), rtol=1e-5, atol=0)
        assert bool((plan.sum(1) <= b * (1 + 1e-5)).all())
    assert bool((exact.sum(2) <= a * (1 + 1e-6)).all())
    row_excess = (G.sum(2) - a).clamp_min(0).sum(1) / mass
    torch.testing.assert_close(row_excess, info["err"], rtol=1e-3, atol=1e-6)
    assert float(row_excess.max()) <= 0.01


def test_batched_equals_per_sample():
    """Problems of a batch (masses given per problem) are solved as they would be alone."""
    x, y = make_problem("permuted-noisy", 3, 24, 8, dtype=torch.float64)
    M = bot.normalise_cost(bot.dist_sqeuclidean(x, y), "nearest")
    a, b = uniform(3, 24, M.dtype), uniform(3, 24, M.dtype)
    masses = torch.tensor([0.2, 0.6, 1.0], dtype=M.dtype)
    G = bot.sinkhorn_partial(a, b, M, masses, 0.01, numItermax=60, stopThr=0.0)
    exact = bot.partial_wasserstein_exact(a, b, M, masses)
    for k in range(3):
        alone = bot.sinkhorn_partial(a[k:k + 1], b[k:k + 1], M[k:k + 1], float(masses[k]), 0.01, numItermax=60,
                                     stopThr=0.0)
        torch.testing.assert_close(G[k:k + 1], alone, rtol=1e-10, atol=1e-14)
        ref = ot.partial.partial_wasserstein(a[k].numpy(), b[k].numpy(), M[k].numpy(), m=float(masses[k]))
        np.testing.assert_allclose(exact[k].numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("kind", ["random", "ties", "unbalanced"])
def test_exact_plans_are_pots(kind):
    """The exact solver builds POT's extended LP and calls POT's network simplex directly: the plans of
    ot.partial.partial_wasserstein, including degenerate costs (ties), full mass (an empty dummy), and
    marginals of different totals and shapes."""
    rng = np.random.default_rng(["random", "ties", "unbalanced"].index(kind))
    B, n, m = 6, 16, 16 if kind != "unbalanced" else 11
    a, b = np.full((B, n), 1 / n), np.full((B, m), 1 / m)
    M = rng.random((B, n, m))
    if kind == "ties":
        M = np.round(4 * M) / 4   # many equal costs: many optimal plans, so the pivots must be POT's
    if kind == "unbalanced":
        a, b = rng.random((B, n)) * 0.1, rng.random((B, m)) * 0.15
    cap = np.minimum(a.sum(1), b.sum(1))
    masses = cap * np.array([0.1, 0.3, 0.5, 0.9, 1.0, 1.0])
    exact = bot.partial_wasserstein_exact(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(M),
                                          torch.from_numpy(masses))
    for k in range(B):
        ref = ot.partial.partial_wasserstein(a[k], b[k], M[k], m=min(masses[k], cap[k]), numItermax=10_000_000)
        np.testing.assert_array_equal(exact[k].numpy(), ref)


def test_cpu_results_are_deterministic(loss_cfg):
    x, y = make_problem("clustered", 4, 32, 16)
    M = bot.dist_sqeuclidean(x, y)
    first, _ = solve_default(M, 0.5, loss_cfg)
    second, _ = solve_default(M.clone(), 0.5, loss_cfg)
    assert torch.equal(first, second)


def test_permutation_is_recovered():
    """y = x shuffled (small noise): the plan at full mass puts each token's mass on its own image token."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 32, 16, generator=g)
    order = torch.stack([torch.randperm(32, generator=g) for _ in range(2)])
    y = torch.gather(x, 1, order[:, :, None].expand(-1, -1, 16)) + 0.05 * torch.randn(2, 32, 16, generator=g)
    M = bot.normalise_cost(bot.dist_sqeuclidean(x, y), "nearest")
    G = bot.sinkhorn_partial(uniform(2, 32), uniform(2, 32), M, 1.0, 0.005, numItermax=100, stopThr=1e-4)
    # y[j] = x[order[j]], so the mass of x[i] goes to the j with order[j] == i
    assert torch.equal(G.argmax(2), torch.argsort(order, dim=1))


def test_bad_inputs_are_named():
    M = torch.rand(2, 4, 5)
    a, b = uniform(2, 4), uniform(2, 5)
    with pytest.raises(ValueError, match=r"a: expected shape \(B, n\) = \(2, 4\)"):
        bot.sinkhorn_partial(a[:, :3], b, M, 0.5, 0.1)
    with pytest.raises(ValueError, match=r"b: expected shape \(B, m\) = \(2, 5\)"):
        bot.partial_wasserstein_exact(a, b[:1], M, 0.5)
    with pytest.raises(ValueError, match=r"M: expected a batch of cost matrices"):
        bot.sinkhorn_partial(a, b, M[0], 0.5, 0.1)
    with pytest.raises(ValueError, match=r"m: the transported mass must be in \(0, min\(sum a, sum b\)\]"):
        bot.sinkhorn_partial(a, b, M, 1.5, 0.1)
    with pytest.raises(ValueError, match=r"m: expected a scalar or shape \(B,\)"):
        bot.sinkhorn_partial(a, b, M, torch.tensor([0.5, 0.5, 0.5]), 0.1)
    with pytest.raises(ValueError, match="reg: the entropic regularisation must be > 0"):
        bot.sinkhorn_partial(a, b, M, 0.5, 0.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_cost_gives_a_nan_plan_and_a_nan_loss(bad, loss_cfg):
    # what a diverged encoder hands the loss: the exact LP used to call it "infeasible" instead
    from brainot.model import losses

    M = torch.rand(3, 4, 5, dtype=torch.float64)
    M[1, 2, 3] = bad
    a, b = uniform(3, 4).double(), uniform(3, 5).double()
    exact = bot.partial_wasserstein_exact(a, b, M, 0.5)
    assert torch.isnan(exact[1]).all()
    keep = [0, 2]
    torch.testing.assert_close(exact[keep], bot.partial_wasserstein_exact(a[keep], b[keep], M[keep], 0.5))
    x, y = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    x[1, 0, 0] = bad
    settings = {k: loss_cfg[k] for k in losses.OT_SETTINGS if k != "solver"}
    for solver in ("exact", "sinkhorn"):   # the same outcome, which training reports as a non-finite loss
        assert torch.isnan(losses.ot_loss(x, y, 0.5, solver=solver, **settings))


@pytest.mark.parametrize("kind", STRUCTURED)
def test_paper_size_problems(kind, loss_cfg):
    """256 x 256 tokens, d = 1024 (the paper's CLIP ViT-L/14 tokens): <= 1% and converged within max_iter."""
    x, y = make_problem(kind, 2, 256, 1024)
    M = bot.dist_sqeuclidean(x, y)
    for mass in MASSES:
        G, info = solve_default(M, mass, loss_cfg)
        exact = bot.partial_wasserstein_exact(uniform(2, 256), uniform(2, 256), M, mass)
        assert float(relative_cost_error(G, exact, M).max()) <= 0.01, (kind, mass)
        assert float(torch.maximum(info["err"], info["plan_change"]).max()) <= loss_cfg["tol"], (kind, mass, info)
