"""The fused partial-OT solver (brainot.model.ot_fast) gives the plain solver's plans (brainot.model.ot.sinkhorn_partial).

Only the ``torch`` backend runs here (no GPU, no Triton in the test environment): it is the PyTorch statement of
the Triton kernel's algorithm (the multisection capped scaling). The kernel itself is checked against the
reference in Triton's interpreter by ``scripts/check_triton_interpreter.sh``, and on a GPU by the benchmark.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.ot import make_problem
from brainot import config as bcfg
from brainot.model import losses
from brainot.model import ot as bot
from brainot.model import ot_fast


def problem(B, n, m, d, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, n, d, generator=gen, dtype=dtype)
    y = torch.randn(B, m, d, generator=gen, dtype=dtype)
    M = bot.normalise_cost(bot.dist_sqeuclidean(x, y), "max")
    return torch.full((B, n), 1.0 / n, dtype=dtype), torch.full((B, m), 1.0 / m, dtype=dtype), M


def l1_over_mass(G, G_ref, mass) -> float:
    return float(((G - G_ref).abs().sum((1, 2)) / mass).max())


# (B, n, m, d, reg, mass): square and rectangular, masses 0.1 to 1, reg large and small. At d = 512 every
# max-normalised cost is above 0.6, so every kernel entry exp(-M / reg) is below e^-300 at reg = 0.002 (float32
# underflows) and below e^-1200 at reg = 0.0005 (float64 too): only log-domain sums survive that.
CASES = [(3, 20, 20, 4, 0.05, 0.5), (2, 30, 17, 8, 0.01, 0.9), (2, 17, 30, 8, 0.01, 0.1), (2, 24, 24, 512, 0.002, 1.0),
         (2, 24, 24, 512, 0.0005, 0.3), (2, 16, 16, 4, 0.02, 1.0)]


@pytest.mark.parametrize("B,n,m,d,reg,mass", CASES)
def test_torch_backend_plan_is_the_reference_plan(B, n, m, d, reg, mass):
    a, b, M = problem(B, n, m, d)
    settings = dict(numItermax=60, stopThr=0.0, check_every=10, log=True)
    G_ref, log_ref = bot.sinkhorn_partial(a, b, M, mass, reg, **settings)
    G, log = ot_fast.sinkhorn_partial_fast(a, b, M, mass, reg, backend="torch", **settings)
    assert G.dtype == torch.float64 and G.shape == (B, n, m) and torch.isfinite(G).all()
    assert l1_over_mass(G, G_ref, mass) < 1e-9
    assert log["n_iter"] == log_ref["n_iter"] == 60 and log["backend"] == "torch"
    torch.testing.assert_close(log["err"], log_ref["err"], rtol=0, atol=1e-9)
    torch.testing.assert_close(log["plan_change"], log_ref["plan_change"], rtol=0, atol=1e-9)


def test_per_problem_masses_and_unequal_weights():
    """Weights that are not uniform, capacities above the mass on one side, one mass per problem."""
    g = torch.Generator().manual_seed(7)
    _, _, M = problem(3, 14, 11, 6, seed=7)
    a = torch.rand(3, 14, generator=g, dtype=torch.float64) + 0.2
    b = torch.rand(3, 11, generator=g, dtype=torch.float64) + 0.2
    a, b = a / a.sum(1, keepdim=True), 1.3 * b / b.sum(1, keepdim=True)
    masses = torch.tensor([0.15, 0.6, 1.0], dtype=torch.float64)
    settings = dict(numItermax=40, stopThr=0.0, check_every=7)
    G_ref = bot.sinkhorn_partial(a, b, M, masses, 0.02, **settings)
    G = ot_fast.sinkhorn_partial_fast(a, b, M, masses, 0.02, backend="torch", **settings)
    assert float((G - G_ref).abs().sum((1, 2)).div(masses).max()) < 1e-9
    torch.testing.assert_close(G.sum((1, 2)), masses, rtol=1e-9, atol=0)


def test_stops_where_the_reference_stops():
    a, b, M = problem(2, 16, 16, 4, seed=4)
    settings = dict(numItermax=2000, stopThr=1e-8, check_every=7, log=True)
    _, log_ref = bot.sinkhorn_partial(a, b, M, 0.7, 0.05, **settings)
    _, log = ot_fast.sinkhorn_partial_fast(a, b, M, 0.7, 0.05, backend="torch", **settings)
    assert log["n_iter"] == log_ref["n_iter"] < 2000
    assert float(torch.maximum(log["err"], log["plan_change"]).max()) <= 1e-8


def test_float32_plan_is_the_float64_reference_up_to_rounding():
    """At the config's settings on a paper-like problem, the float32 plan is as close to the float64 reference as
    the plain float32 solver's."""
    x, y = make_problem("clustered", 2, 48, 64, dtype=torch.float64)
    M = bot.normalise_cost(bot.dist_sqeuclidean(x, y), "nearest")
    a = b = torch.full((2, 48), 1 / 48, dtype=torch.float64)
    settings = dict(numItermax=50, stopThr=0.0)
    G_ref = bot.sinkhorn_partial(a, b, M, 0.5, 0.005, **settings)
    G_plain32 = bot.sinkhorn_partial(a.float(), b.float(), M.float(), 0.5, 0.005, **settings)
    G = ot_fast.sinkhorn_partial_fast(a.float(), b.float(), M.float(), 0.5, 0.005, backend="torch", **settings)
    assert G.dtype == torch.float32
    rounding = l1_over_mass(G_plain32.double(), G_ref, 0.5)
    assert l1_over_mass(G.double(), G_ref, 0.5) < max(10 * rounding, 1e-5)


def capped_cases():
    """(log_cap, R, log_m) float64 batches: random, tied thresholds, and masses at the ends of their range."""
    g = torch.Generator().manual_seed(1)
    R = 3 * torch.randn(4, 30, generator=g, dtype=torch.float64)
    cap = torch.rand(4, 30, generator=g, dtype=torch.float64) / 15
    for m in (1e-6, 0.05, 0.3, 0.9 * float(cap.sum(1).min()), 0.999999 * cap.sum(1)):
        yield "random", cap.log(), R, torch.as_tensor(m, dtype=torch.float64).expand(4).log()
    # m = sum(cap): every row saturates (the reference's k == n branch)
    yield "all-saturated", cap.log(), R, cap.sum(1).log()
    # uniform capacities and equal row masses: every threshold tied, everything saturates at once
    flat = torch.full((2, 16), 1 / 16, dtype=torch.float64)
    masses = torch.tensor([0.4, 1.0], dtype=torch.float64)
    yield "all-tied", flat.log(), torch.full((2, 16), -2.0, dtype=torch.float64), masses.log()
    # groups of equal thresholds, the solution lying exactly on one group (m = the mass at that threshold)
    t = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    R = torch.tensor([[-3.0, -1.0, -2.0, -0.5, -4.0, -1.5, -2.5, -3.5]], dtype=torch.float64)
    log_cap = t + R
    at_one = (torch.minimum(log_cap.exp(), (1.0 + R).exp())).sum(1)
    for log_m in (at_one.log(), (0.5 * at_one).log(), (0.5 * (at_one + log_cap.exp().sum(1))).log()):
        yield "tied-groups", log_cap, R, log_m


@pytest.mark.parametrize("case", list(capped_cases()), ids=lambda c: c[0])
def test_multisection_is_the_sorted_capped_scaling(case):
    _, log_cap, R, log_m = case
    u_sorted = bot.log_capped_scaling(log_cap, R, log_m)
    u = ot_fast.log_capped_scaling_multisection(log_cap, R, log_m)
    torch.testing.assert_close(u, u_sorted, rtol=1e-12, atol=1e-12)
    # and it is the projection: rows <= cap, total mass m
    rows = (u + R).exp()
    assert bool((rows <= log_cap.exp() * (1 + 1e-12)).all())
    torch.testing.assert_close(rows.sum(1), log_m.exp(), rtol=1e-12, atol=0)


def test_multisection_needs_its_steps():
    """With too few steps the bracket is wide and sigma is off: the step count is what makes it exact."""
    log_cap, R, log_m = list(capped_cases())[2][1:]  # m = 0.3: some rows saturate, some do not
    exact = bot.log_capped_scaling(log_cap, R, log_m)
    assert ot_fast.multisection_steps(ot_fast.CAP_PROBES, torch.float64) == 16
    assert ot_fast.multisection_steps(ot_fast.CAP_PROBES, torch.float32) == 8
    coarse = ot_fast.log_capped_scaling_multisection(log_cap, R, log_m, probes=1, steps=2)
    fine = ot_fast.log_capped_scaling_multisection(log_cap, R, log_m, probes=1, steps=64)
    assert float((coarse - exact).abs().max()) > 1e-3
    torch.testing.assert_close(fine, exact, rtol=1e-12, atol=1e-12)


def test_backends_that_cannot_run_here_are_refused_by_name():
    a, b, M = problem(1, 4, 4, 2)
    assert ot_fast.resolve_backend("auto", M) == "torch"  # CPU: never the interpreter
    with pytest.raises(ValueError, match="'graph' needs a CUDA device"):
        ot_fast.sinkhorn_partial_fast(a, b, M, 0.5, 0.1, backend="graph")
    with pytest.raises(ValueError, match="backend 'triton': .*(not installed|CUDA device|float32)"):
        ot_fast.sinkhorn_partial_fast(a, b, M, 0.5, 0.1, backend="triton")
    with pytest.raises(ValueError, match="backend 'cuda-magic'"):
        ot_fast.sinkhorn_partial_fast(a, b, M, 0.5, 0.1, backend="cuda-magic")
    with pytest.raises(ValueError, match="m: the transported mass"):
        ot_fast.sinkhorn_partial_fast(a, b, M, 1.5, 0.1, backend="torch")
    with pytest.raises(ValueError, match="reg: the entropic regularisation"):
        ot_fast.sinkhorn_partial_fast(a, b, M, 0.5, 0.0, backend="torch")


# ------------------------------------------------------------------------------------------ loss.backend
@pytest.fixture
def loss_cfg(sim_cfg) -> dict:
    """The validated loss: section with the entropic solver (the demo overlay picks the exact LP)."""
    return {**sim_cfg["loss"], "solver": "sinkhorn"}


def test_loss_backend_defaults_to_auto_which_is_the_plain_solver_on_cpu(loss_cfg):
    assert loss_cfg["backend"] == "auto"
    x, y = make_problem("permuted-noisy", 2, 24, 16)
    C = bot.dist_sqeuclidean(x, y)
    settings = {key: loss_cfg[key] for key in losses.PLAN_SETTINGS}
    plan, info = losses.transport_plan(C, 0.5, **settings)
    plain, plain_info = losses.transport_plan(C, 0.5, **{**settings, "backend": "plain"})
    assert info["backend"] == plain_info["backend"] == "plain"
    assert torch.equal(plan, plain) and info["n_iter"] == plain_info["n_iter"]


def test_fused_loss_is_the_plain_loss(loss_cfg):
    """loss.backend torch: the same loss value and gradient as the plain solver (float64)."""
    x, y = make_problem("clustered", 3, 20, 16, seed=2, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    plain, info_plain = losses.make_loss({**loss_cfg, "backend": "plain"}, "ot0.5")(x1, y, log=True)
    fused, info = losses.make_loss({**loss_cfg, "backend": "torch"}, "ot0.5")(x2, y, log=True)
    plain.backward()
    fused.backward()
    assert info["backend"] == "torch" and info["n_iter"] == info_plain["n_iter"]
    assert fused.item() == pytest.approx(plain.item(), rel=1e-9)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-9)


def test_unknown_loss_backend_is_refused(loss_cfg, sim_cfg):
    x, y = make_problem("random", 1, 6, 4)
    with pytest.raises(ValueError, match="loss.backend 'cuda'"):
        losses.make_loss({**loss_cfg, "backend": "cuda"}, "ot0.5")(x, y)
    sim_cfg["loss"]["backend"] = "cuda"
    with pytest.raises(bcfg.ConfigError, match="backend"):
        bcfg.validate(sim_cfg)
