"""The training losses of brainot.model.losses: MSE, and partial OT pinned against POT and the authors' per-sample loop."""

from __future__ import annotations

import ot
import pytest
import torch

from benchmarks.ot import make_problem
from brainot.config import ConfigError
from brainot.model import losses
from brainot.model import ot as bot

MASSES = (0.1, 0.3, 0.5, 0.9)


@pytest.fixture
def loss_cfg(sim_cfg) -> dict:
    """The real config's loss settings (the demo overlay picks the exact LP, these tests are about Sinkhorn)."""
    return {**sim_cfg["loss"], "solver": "sinkhorn"}


def settings(loss_cfg: dict, **overrides) -> dict:
    """ot_loss's keyword arguments from the config's loss: section."""
    return {**{key: loss_cfg[key] for key in losses.OT_SETTINGS}, **overrides}


def plan_settings(loss_cfg: dict, **overrides) -> dict:
    """transport_plan's keyword arguments from the config's loss: section."""
    return {**{key: loss_cfg[key] for key in losses.PLAN_SETTINGS}, **overrides}


def near_pairs(B: int, T: int, D: int, noise: float = 1e-2, seed: int = 0):
    """Image tokens y and predictions x = y + small noise, float64: the optimal plan at full mass is the identity."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    return y + noise * torch.randn(B, T, D, generator=g, dtype=torch.float64), y


def test_mse_loss_is_the_mean_over_elements():
    x, y = make_problem("random", 3, 5, 7)
    expected = ((x - y) ** 2).sum(-1).mean() / 7  # the paper's eq. 2 over tokens, divided by D
    torch.testing.assert_close(losses.mse_loss(x, y), expected)
    with pytest.raises(ValueError, match=r"same shape \(B, T, D\)"):
        losses.mse_loss(x, y[:, :4])


def test_identity_plan_gives_mse_times_D_per_token(loss_cfg):
    """Token granularity, mass 1: the optimal plan is I / T and L_OT = D * mse_loss = (1/BT) sum ||x_bt - y_bt||^2."""
    x, y = near_pairs(2, 12, 8)
    C = bot.dist_sqeuclidean(x, y)
    plan, _ = losses.transport_plan(C, 1.0, **plan_settings(loss_cfg, solver="exact"))
    torch.testing.assert_close(plan, torch.eye(12, dtype=x.dtype).expand(2, 12, 12) / 12)
    mse = losses.mse_loss(x, y)
    exact = losses.ot_loss(x, y, 1.0, **settings(loss_cfg, solver="exact", granularity="token"))
    torch.testing.assert_close(exact, 8 * mse, rtol=1e-10, atol=0)
    entropic = losses.ot_loss(x, y, 1.0, **settings(loss_cfg, granularity="token"))
    assert abs(float(entropic / (8 * mse)) - 1) <= 0.01


def test_identity_plan_gives_mse_times_TD_per_batch(loss_cfg):
    """Batch granularity (samples flattened), mass 1: the plan is I / B and L_OT = T * D * mse_loss."""
    x, y = near_pairs(6, 4, 5, noise=0.1)
    flat = bot.dist_sqeuclidean(x.flatten(1)[None], y.flatten(1)[None])
    plan, _ = losses.transport_plan(flat, 1.0, **plan_settings(loss_cfg, solver="exact"))
    torch.testing.assert_close(plan[0], torch.eye(6, dtype=x.dtype) / 6)
    exact = losses.ot_loss(x, y, 1.0, **settings(loss_cfg, solver="exact", granularity="batch"))
    torch.testing.assert_close(exact, 4 * 5 * losses.mse_loss(x, y), rtol=1e-10, atol=0)


def test_exact_euclidean_loss_is_the_authors_loop(loss_cfg):
    """loss.cost euclidean: value and gradient equal the authors' code (cdist, POT's partial_wasserstein per sample,
    batch mean)."""
    x, y = make_problem("permuted-noisy", 3, 16, 8, dtype=torch.float64)
    for mass in (0.3, 0.5):
        ours_x = x.clone().requires_grad_(True)
        ours = losses.ot_loss(ours_x, y, mass,
                              **settings(loss_cfg, solver="exact", granularity="token", cost="euclidean"))
        ours.backward()
        theirs_x = x.clone().requires_grad_(True)
        theirs = losses.authors_ot_loss(theirs_x, y, mass)
        theirs.backward()
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=0)
        torch.testing.assert_close(ours_x.grad, theirs_x.grad, rtol=1e-8, atol=1e-12)


def test_authors_loss_is_pot_on_euclidean_costs_and_differs_from_the_squared_one(loss_cfg):
    """The reference itself, against POT on numpy: sum(gamma * C) with C = ot.dist(metric='euclidean'), the plan of
    POT's partial_wasserstein on it; the gradient sum_j gamma_ij (x_i - y_j) / |x_i - y_j|. The squared cost
    (the paper's eq. 9, our default) gives another value and, here, another plan."""
    x, y = make_problem("random", 3, 7, 5, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    loss = losses.authors_ot_loss(xg, y, 0.5)
    loss.backward()
    expected, grad = 0.0, torch.zeros(3, 7, 5, dtype=torch.float64)
    plans_differ = False
    for k in range(3):
        xk, yk = x[k].numpy(), y[k].numpy()
        C = ot.dist(xk, yk, metric="euclidean")
        gamma = ot.partial.partial_wasserstein(ot.unif(7), ot.unif(7), C, m=0.5)
        expected += (gamma * C).sum() / 3
        diff = xk[:, None, :] - yk[None, :, :]
        grad[k] = torch.from_numpy((gamma[:, :, None] * diff / C[:, :, None]).sum(1) / 3)
        squared = ot.partial.partial_wasserstein(ot.unif(7), ot.unif(7), C ** 2, m=0.5)
        plans_differ |= bool(abs(squared - gamma).max() > 1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    torch.testing.assert_close(xg.grad, grad, rtol=1e-8, atol=1e-12)
    assert plans_differ
    squared_loss = losses.ot_loss(x, y, 0.5, **settings(loss_cfg, solver="exact", granularity="token",
                                                         cost="sqeuclidean"))
    assert abs(squared_loss.item() - loss.item()) > 0.1 * loss.item()


def test_cost_setting_is_checked_and_reaches_the_loss(loss_cfg):
    x, y = near_pairs(2, 6, 4, noise=0.5)
    with pytest.raises(ValueError, match="loss.cost 'cosine'"):
        losses.ot_loss(x, y, 1.0, **settings(loss_cfg, solver="exact", cost="cosine"))
    for cost, dist in (("sqeuclidean", ((x - y) ** 2).sum(-1)), ("euclidean", ((x - y) ** 2).sum(-1).sqrt())):
        # noise 0.5 on N(0, 1) tokens: the identity is still the optimal full-mass plan for both costs here
        full = losses.make_loss({**loss_cfg, "solver": "exact", "granularity": "token", "cost": cost}, "ot1")(x, y)
        torch.testing.assert_close(full, dist.mean(), rtol=1e-10, atol=0)


def test_gradient_is_the_envelope_of_the_exact_cost(loss_cfg):
    """d/dx of the exact partial-OT cost (finite differences of POT's partial_wasserstein2) = the loss gradient."""
    x, y = make_problem("random", 1, 10, 3, dtype=torch.float64)
    mass, h = 0.6, 1e-6

    def exact_cost(xx):
        return ot.partial.partial_wasserstein2(ot.unif(10), ot.unif(10), ot.dist(xx[0].numpy(), y[0].numpy()), m=mass)

    xg = x.clone().requires_grad_(True)
    losses.ot_loss(xg, y, mass, **settings(loss_cfg, solver="exact", granularity="token")).backward()
    for i, d in [(0, 0), (3, 1), (7, 2), (9, 0)]:
        step = torch.zeros_like(x)
        step[0, i, d] = h
        numeric = (exact_cost(x + step) - exact_cost(x - step)) / (2 * h)
        assert xg.grad[0, i, d].item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_sinkhorn_gradient_is_the_papers_eq19(loss_cfg):
    """The plan is a constant: grad_x L = (2 / B) sum_j P_ij (x_i - y_j) (the paper's eq. 19, batch-averaged)."""
    x, y = make_problem("clustered", 2, 16, 8, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    loss, info = losses.ot_loss(xg, y, 0.5, **settings(loss_cfg, granularity="token"), log=True)
    loss.backward()
    plan, _ = losses.transport_plan(bot.dist_sqeuclidean(x, y), 0.5, **plan_settings(loss_cfg))
    expected = 2 * (plan.sum(2, keepdim=True) * x - plan @ y) / 2
    torch.testing.assert_close(xg.grad, expected, rtol=1e-10, atol=1e-12)
    assert info["n_iter"] >= 1 and info["err"].shape == (2,)


@pytest.mark.parametrize("granularity", ["token", "batch"])
def test_sinkhorn_loss_within_one_percent_of_exact(granularity, loss_cfg):
    B, T, D = (4, 32, 256) if granularity == "token" else (32, 4, 64)
    x, y = make_problem("permuted-noisy", B, T, D)
    for mass in MASSES:
        entropic = losses.ot_loss(x, y, mass, **settings(loss_cfg, granularity=granularity))
        exact = losses.ot_loss(x, y, mass, **settings(loss_cfg, solver="exact", granularity=granularity))
        assert abs(float(entropic / exact) - 1) <= 0.01, (granularity, mass)


def test_partial_loss_grows_with_mass_below_the_linear_bound(loss_cfg):
    """The exact partial cost is convex in m and 0 at m = 0: L(l) <= l * L(1) <= l * D * mse, increasing in l."""
    x, y = make_problem("clustered", 2, 20, 6, dtype=torch.float64)
    exact = {m: float(losses.ot_loss(x, y, m, **settings(loss_cfg, solver="exact", granularity="token")))
             for m in (*MASSES, 1.0)}
    bound = 6 * float(losses.mse_loss(x, y))
    assert exact[1.0] <= bound
    for m in MASSES:
        assert exact[m] <= m * exact[1.0] + 1e-12
    values = [exact[m] for m in (*MASSES, 1.0)]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_make_loss_reads_the_objective_and_the_config(loss_cfg):
    x, y = make_problem("permuted-noisy", 2, 16, 32)
    assert losses.make_loss(loss_cfg, "mse") is losses.mse_loss
    fn = losses.make_loss(loss_cfg, "ot0.3")
    torch.testing.assert_close(fn(x, y), losses.ot_loss(x, y, 0.3, **settings(loss_cfg)))
    assert float(fn(x, y)) < float(losses.make_loss(loss_cfg, "ot0.9")(x, y))
    for bad in ("ot", "kl", "ot1.5", "ot0"):
        with pytest.raises((ConfigError, ValueError)):
            losses.make_loss(loss_cfg, bad)
    partial_cfg = {k: v for k, v in loss_cfg.items() if k != "epsilon"}
    with pytest.raises(ConfigError, match=r"loss: missing loss\.epsilon"):
        losses.make_loss(partial_cfg, "ot0.5")


def test_bad_arguments_are_named(loss_cfg):
    x, y = make_problem("random", 2, 4, 3)
    with pytest.raises(ValueError, match="granularity 'pooled': expected one of token, batch"):
        losses.ot_loss(x, y, 0.5, **settings(loss_cfg, granularity="pooled"))
    with pytest.raises(ValueError, match="solver 'lp': expected one of exact, sinkhorn"):
        losses.ot_loss(x, y, 0.5, **settings(loss_cfg, solver="lp"))
    with pytest.raises(ValueError, match=r"mass: lambda must be in \(0, 1\]"):
        losses.ot_loss(x, y, 0.0, **settings(loss_cfg))


def test_half_precision_tokens(loss_cfg):
    """bf16 tokens (autocast): the plan is solved in float32, the loss keeps the input dtype and its gradient."""
    x, y = make_problem("permuted-noisy", 2, 16, 64)
    full = losses.ot_loss(x, y, 0.5, **settings(loss_cfg))
    xh = x.bfloat16().requires_grad_(True)
    half = losses.ot_loss(xh, y.bfloat16(), 0.5, **settings(loss_cfg))
    half.backward()
    assert half.dtype == torch.bfloat16 and bool(torch.isfinite(xh.grad).all())
    assert abs(float(half.detach()) / float(full) - 1) <= 0.02


def test_ot_loss_trains_a_linear_encoder(loss_cfg):
    """Adam steps on the sinkhorn loss fit a linear map from 'voxels' to tokens: the loss falls 10x.

    (The MSE need not fall: the loss is invariant to which half of the tokens is matched to which.)
    """
    g = torch.Generator().manual_seed(0)
    voxels = torch.randn(8, 6, 20, generator=g)
    target = voxels @ torch.randn(20, 16, generator=g)
    encoder = torch.nn.Linear(20, 16, bias=False)
    torch.manual_seed(0)
    torch.nn.init.normal_(encoder.weight, std=0.01)
    fn = losses.make_loss(loss_cfg, "ot0.5")
    opt = torch.optim.Adam(encoder.parameters(), lr=0.1)
    first = None
    for _ in range(100):
        opt.zero_grad()
        loss = fn(encoder(voxels), target)
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    with torch.no_grad():
        assert float(fn(encoder(voxels), target)) < first / 10
