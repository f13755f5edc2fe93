r"""Fused entropic partial OT for the GPU: :func:`brainot.model.ot.sinkhorn_partial` with its iterations fused.

Same problem, same iterations, same stopping rule and same log dict as :func:`brainot.model.ot.sinkhorn_partial`
(the capped log-domain Sinkhorn of :mod:`brainot.model.ot`'s docstring, from ``v = 0``):

.. math::
    u \leftarrow \min\big(\sigma,\ \log a - \operatorname{LSE}_j(\log K_{ij} + v_j)\big), \qquad
    v \leftarrow \min\big(\tau,\ \log b - \operatorname{LSE}_i(\log K_{ij} + u_i)\big)

with :math:`\sigma` (:math:`\tau`) the one scalar per problem that makes the plan's mass m. Only how an iteration
is computed changes. The plain solver launches dozens of small kernels per iteration (two log-sum-exps over
(B, n, m) temporaries, two sorts, gathers, cumulative sums); at the paper's sizes it is launch-bound.

The capped scaling without a sort
---------------------------------
The scalar solves :math:`F(\sigma) = \sum_i \min(e^{\sigma + R_i}, c_i) = m` (:math:`R` the row log-sum-exps,
:math:`c = a` the capacities), F increasing, with thresholds :math:`t_i = \log c_i - R_i` above which row i is
saturated. :func:`brainot.model.ot.log_capped_scaling` sorts the thresholds to find the saturated set. Here a
*multisection* finds it: on the bracket :math:`[\min t, \max t]` F is evaluated at ``CAP_PROBES`` (16) points at
once and the bracket shrinks to the sub-interval where F crosses m, 17-fold per step; 8 steps reach float32's
resolution (:math:`17^8 > 2^{32}`), 16 float64's. Rows whose threshold lies at or below the bracket's low end
(where :math:`F \le m`) are the saturated set, and sigma follows in the same closed form as the sort's,
:math:`\sigma = \log(m - \sum_{\mathrm{sat}} c_i) - \operatorname{LSE}_{\mathrm{unsat}} R_i`, clipped to its
segment :math:`[\max_{\mathrm{sat}} t, \min_{\mathrm{unsat}} t]` (everything saturated when
:math:`F(\max t) \le m`: :math:`\sigma = \max t`). It is the sort's sigma: a threshold left inside the final
bracket (a near-tie with the solution) can only be misclassified by less than the bracket's width, and the clip
then moves sigma by less than that (test ``test_multisection_is_the_sorted_capped_scaling``). It needs no sort,
gather or scan, so a GPU program does it in registers with a few block-wide sums per step.

Backends (``backend=``)
-----------------------
- ``triton``: one Triton kernel runs ``check_every`` iterations, one program per problem. The column potential v
  stays in registers; the cost (as ``logK = -M / reg``, 16 MiB at 64 x 256 x 256 float32, L2-resident) is read
  tile by tile (``BLOCK_N`` rows x all columns) twice per iteration: the row pass gives R (written to the
  program's slice of the output u, its scratch), the capped scaling gives u, then the column pass accumulates the
  column log-sum-exps online (a running maximum per column, as flash attention) and the capped scaling gives v.
  One ``exp`` per entry and pass. Float32 only, at most ``TRITON_MAX_SIZE`` rows and columns; tile height, warps
  and stages autotuned per (n, m) on the first solve (its time is in the first call). CUDA, or Triton's
  interpreter (``TRITON_INTERPRET=1``, CPU tensors) for checks off the GPU (``scripts/check_triton_interpreter.sh``).
- ``graph``: :func:`brainot.model.ot.partial_sinkhorn_iterations` (the plain iterations, host-sync free) captured in a
  CUDA graph, ``check_every`` iterations per graph, replayed on static buffers (one graph per shape and block
  length). CUDA only. The plain solver's iterates exactly; its launches cost one graph launch per block.
- ``compile``: one plain iteration through ``torch.compile`` (``COMPILE_MODE``: ``reduce-overhead``, i.e.
  inductor's fused kernels replayed from a CUDA graph, on CUDA), called ``check_every`` times per block. One
  iteration, not a block: inductor unrolls the loop, and a block of 10 unrolled iterations takes minutes to compile
  (144 s on an H200 for an earlier form of the iteration, in an earlier measurement; on a CPU, cold, 66 s against 21 s
  for one iteration); the price is one graph replay per iteration instead of one per block.
- ``torch``: the multisection iterations in plain PyTorch, any device and dtype: the statement of what the
  Triton kernel computes, which the CPU tests pin against :func:`brainot.model.ot.sinkhorn_partial`.
- ``auto``: ``triton`` where :func:`triton_usable` (CUDA, Triton importable, float32, sizes within bounds),
  else ``torch``.

References
----------
- Benamou, J.-D., Carlier, G., Cuturi, M., Nenna, L., & Peyré, G. (2015). Iterative Bregman projections for
  regularized transportation problems. SIAM J. Sci. Comput. 37(2), A1111-A1138.
- Chapel, L., Alaya, M. Z., & Gasso, G. (2020). Partial optimal transport with applications on positive-unlabeled
  learning. NeurIPS 33.
"""

from __future__ import annotations

import math
import os
import weakref
from collections import OrderedDict

import torch

from brainot.model import ot as bot

BACKENDS = ("auto", "triton", "graph", "compile", "torch")
# Points evaluated per multisection step (a power of two: a Triton block dimension).
CAP_PROBES = 16
# Rows and columns the Triton kernel takes: it holds (BLOCK_N x all columns) tiles and (probes x n) mass
# evaluations in registers.
TRITON_MAX_SIZE = 4096
# Register budget (elements per program) of one tile and of one multisection step.
TRITON_MAX_TILE = 16384
# (rows per tile, warps, pipeline stages) tried by the autotuner on the first solve of each (n, m); 64-row tiles
# spill registers at 256 columns (ptxas, sm_90) and are left out.
TRITON_CONFIGS = ((4, 4, 1), (8, 4, 1), (8, 8, 1), (16, 4, 1), (16, 8, 1), (16, 16, 1), (32, 8, 1))
# Rows per tile in Triton's interpreter (the autotuner picks on a GPU).
INTERPRETER_BLOCK_N = 8
# CUDA graphs (and the compiled function's graphs) kept: one per shape and block length.
GRAPH_CACHE_SIZE = 4

try:  # Triton ships with CUDA builds of PyTorch only.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installed torch
    triton = None


# ------------------------------------------------------------------------------------------ capped scaling
def multisection_steps(probes: int, dtype: torch.dtype) -> int:
    """Steps for ``probes`` points per step to shrink a bracket below ``dtype``'s resolution (2^-32 relative
    to the bracket for float32 and lower precisions, 2^-64 for float64)."""
    bits = 64 if dtype == torch.float64 else 32
    return math.ceil(bits / math.log2(probes + 1))


def log_capped_scaling_multisection(log_cap: torch.Tensor, R: torch.Tensor, log_m: torch.Tensor,
                                    probes: int = CAP_PROBES, steps: int | None = None) -> torch.Tensor:
    r""":func:`brainot.model.ot.log_capped_scaling` without a sort (module docstring): min(sigma, log_cap - R).

    log_cap (B, n) log capacities, R (B, n) log row masses, log_m (B,); requires m <= sum(cap). ``steps``
    defaults to :func:`multisection_steps` of the dtype. The Triton kernel's ``_capped_scaling`` is this, per
    problem.
    """
    steps = multisection_steps(probes, R.dtype) if steps is None else steps
    t = log_cap - R
    cap = log_cap.exp()
    m = log_m.exp()[:, None]

    def mass(s):  # total mass F at each scaling s (B, P) -> (B, P)
        saturated = t[:, None, :] <= s[:, :, None]
        return torch.where(saturated, cap[:, None, :], torch.exp(s[:, :, None] + R[:, None, :])).sum(2)

    t_min, t_max = t.amin(1, keepdim=True), t.amax(1, keepdim=True)
    ends = mass(torch.cat([t_min, t_max], 1))
    some_saturated, all_saturated = ends[:, :1] <= m, ends[:, 1:] <= m
    frac = torch.arange(1, probes + 1, dtype=t.dtype, device=t.device) / (probes + 1)
    lo, hi = t_min, t_max
    for _ in range(steps):
        s = lo + (hi - lo) * frac
        below = mass(s) <= m
        lo, hi = torch.where(below, s, lo).amax(1, keepdim=True), torch.where(below, hi, s).amin(1, keepdim=True)
    # No threshold has F(t) <= m when F(min t) > m: nothing saturates.
    lo = torch.where(some_saturated, lo, torch.full_like(lo, -torch.inf))
    sat = t <= lo
    sat_mass = torch.where(sat, cap, torch.zeros_like(cap)).sum(1, keepdim=True)
    tail = torch.logsumexp(torch.where(sat, torch.full_like(R, -torch.inf), R), 1, keepdim=True)
    sigma = torch.log((m - sat_mass).clamp_min(torch.finfo(t.dtype).tiny)) - tail
    seg_lo = torch.where(sat, t, torch.full_like(t, -torch.inf)).amax(1, keepdim=True)
    seg_hi = torch.where(sat, torch.full_like(t, torch.inf), t).amin(1, keepdim=True)
    sigma = torch.maximum(torch.minimum(sigma, seg_hi), seg_lo)
    sigma = torch.where(all_saturated, t_max, sigma)
    return torch.minimum(sigma, t)


def multisection_iterations(logK: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, log_m: torch.Tensor,
                            v: torch.Tensor, n_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`brainot.model.ot.partial_sinkhorn_iterations` with :func:`log_capped_scaling_multisection`: what the
    Triton kernel computes, in PyTorch. Returns (u (B, n), v (B, m))."""
    for _ in range(n_iter):
        u = log_capped_scaling_multisection(log_a, torch.logsumexp(logK + v[:, None, :], dim=2), log_m)
        v = log_capped_scaling_multisection(log_b, torch.logsumexp(logK + u[:, :, None], dim=1), log_m)
    return u, v


# ------------------------------------------------------------------------------------------ Triton
def triton_available() -> bool:
    return triton is not None


def triton_problem(M: torch.Tensor) -> str | None:
    """Why the Triton kernel cannot solve costs M (B, n, m) here, or None when it can."""
    if triton is None:
        return "Triton is not installed (it ships with CUDA builds of PyTorch)"
    interpreted = os.environ.get("TRITON_INTERPRET") == "1" and M.device.type == "cpu"
    if M.device.type != "cuda" and not interpreted:
        return f"it needs a CUDA device (or TRITON_INTERPRET=1 with CPU tensors), the cost is on {M.device}"
    if M.dtype != torch.float32:
        return f"it computes in float32, the cost is {M.dtype}"
    if max(M.shape[1:]) > TRITON_MAX_SIZE:
        return f"it takes at most {TRITON_MAX_SIZE} rows and columns, the cost is {tuple(M.shape[1:])}"
    return None


def triton_usable(M: torch.Tensor) -> bool:
    """Whether ``auto`` picks the Triton kernel for costs M: a float32 CUDA tensor of bounded size, and Triton."""
    return M.device.type == "cuda" and triton_problem(M) is None


def _kernel_sizes(n: int, m: int) -> dict:
    """Block sizes of the kernel for n x m problems: all columns, all rows (for the capped scaling), and as many
    multisection probes as the register budget allows."""
    block_m, block_rows = triton.next_power_of_2(m), triton.next_power_of_2(n)
    probes = max(1, min(CAP_PROBES, TRITON_MAX_TILE // max(block_m, block_rows)))
    return {"BLOCK_M": block_m, "BLOCK_ROWS": block_rows, "PROBES": probes,
            "STEPS": multisection_steps(probes, torch.float32)}


if triton is not None:
    @triton.jit
    def _capped_scaling(log_cap, cap, R, valid, log_m, PROBES: tl.constexpr, STEPS: tl.constexpr):
        # log_capped_scaling_multisection for one problem; entries outside `valid` are padding.
        t = tl.where(valid, log_cap - R, 0.0)
        m = tl.exp(log_m)
        t_min = tl.min(tl.where(valid, t, float("inf")), axis=0)
        t_max = tl.max(tl.where(valid, t, float("-inf")), axis=0)
        mass_min = tl.sum(tl.where(valid, tl.where(t <= t_min, cap, tl.exp(t_min + R)), 0.0), axis=0)
        mass_max = tl.sum(tl.where(valid, tl.where(t <= t_max, cap, tl.exp(t_max + R)), 0.0), axis=0)
        frac = (tl.arange(0, PROBES) + 1).to(tl.float32) / (PROBES + 1)
        lo = t_min
        hi = t_max
        for _ in tl.static_range(STEPS):
            s = lo + (hi - lo) * frac
            mass = tl.sum(tl.where(valid[None, :], tl.where(t[None, :] <= s[:, None], cap[None, :],
                                                            tl.exp(s[:, None] + R[None, :])), 0.0), axis=1)
            below = mass <= m
            lo_new = tl.max(tl.where(below, s, lo), axis=0)
            hi = tl.min(tl.where(below, hi, s), axis=0)
            lo = lo_new
        lo = tl.where(mass_min <= m, lo, float("-inf"))
        sat = valid & (t <= lo)
        unsat = valid & (t > lo)
        sat_mass = tl.sum(tl.where(sat, cap, 0.0), axis=0)
        r_max = tl.max(tl.where(unsat, R, float("-inf")), axis=0)
        r_shift = tl.where(r_max == float("-inf"), 0.0, r_max)
        tail = r_shift + tl.log(tl.sum(tl.where(unsat, tl.exp(R - r_shift), 0.0), axis=0))
        sigma = tl.log(tl.maximum(m - sat_mass, 1.1754943508222875e-38)) - tail
        seg_lo = tl.max(tl.where(sat, t, float("-inf")), axis=0)
        seg_hi = tl.min(tl.where(unsat, t, float("inf")), axis=0)
        sigma = tl.maximum(tl.minimum(sigma, seg_hi), seg_lo)
        sigma = tl.where(mass_max <= m, t_max, sigma)
        return tl.minimum(sigma, t)

    @triton.jit
    def _capped_sinkhorn_kernel(logK_ptr, log_a_ptr, log_b_ptr, log_m_ptr, v_in_ptr, u_ptr, v_ptr, n, m, n_iter,
                                BLOCK_N: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr,
                                PROBES: tl.constexpr, STEPS: tl.constexpr):
        # One program per problem. u_ptr's slice is the program's scratch: the row pass writes R there tile by
        # tile, the capped scaling reads it whole and writes u over it, the column pass reads u tile by tile.
        pid = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK_M)
        col_ok = cols < m
        all_rows = tl.arange(0, BLOCK_ROWS)
        all_rows_ok = all_rows < n
        K_base = logK_ptr + pid * n * m
        u_base = u_ptr + pid * n
        log_a = tl.load(log_a_ptr + pid * n + all_rows, mask=all_rows_ok, other=0.0)
        log_b = tl.load(log_b_ptr + pid * m + cols, mask=col_ok, other=0.0)
        cap_a = tl.exp(log_a)
        cap_b = tl.exp(log_b)
        log_m = tl.load(log_m_ptr + pid)
        v = tl.load(v_in_ptr + pid * m + cols, mask=col_ok, other=0.0)
        for _ in range(n_iter):
            # rows: R_i = LSE_j(logK_ij + v_j), each tile holding whole rows
            for start in range(0, n, BLOCK_N):
                rows = start + tl.arange(0, BLOCK_N)
                row_ok = rows < n
                S = tl.load(K_base + rows[:, None] * m + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                            other=float("-inf")) + v[None, :]
                rho = tl.where(row_ok, tl.max(S, axis=1), 0.0)
                R = rho + tl.log(tl.where(row_ok, tl.sum(tl.exp(S - rho[:, None]), axis=1), 1.0))
                tl.store(u_base + rows, R, mask=row_ok)
            tl.debug_barrier()  # R written by every thread before any reads it whole
            R_all = tl.load(u_base + all_rows, mask=all_rows_ok, other=0.0)
            u = _capped_scaling(log_a, cap_a, R_all, all_rows_ok, log_m, PROBES, STEPS)
            tl.debug_barrier()  # R read by every thread before u overwrites it
            tl.store(u_base + all_rows, u, mask=all_rows_ok)
            tl.debug_barrier()
            # columns: LSE_i(logK_ij + u_i), accumulated over row tiles with a running maximum per column
            col_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
            col_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
            for start in range(0, n, BLOCK_N):
                rows = start + tl.arange(0, BLOCK_N)
                row_ok = rows < n
                u_tile = tl.load(u_base + rows, mask=row_ok, other=0.0)
                S = tl.load(K_base + rows[:, None] * m + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                            other=float("-inf")) + u_tile[:, None]
                new_max = tl.maximum(col_max, tl.max(S, axis=0))
                shift = tl.where(new_max == float("-inf"), 0.0, new_max)
                col_sum = col_sum * tl.exp(col_max - shift) + tl.sum(tl.exp(S - shift[None, :]), axis=0)
                col_max = new_max
            R_col = tl.where(col_ok, col_max + tl.log(tl.where(col_ok, col_sum, 1.0)), 0.0)
            v = tl.where(col_ok, _capped_scaling(log_b, cap_b, R_col, col_ok, log_m, PROBES, STEPS), 0.0)
            tl.debug_barrier()  # u read by every thread before the next row pass writes R over it
        tl.store(v_ptr + pid * m + cols, v, mask=col_ok)

    def _prune(configs, named_args, **kwargs):
        # Tiles beyond TRITON_MAX_TILE entries would spill registers; keep at least the smallest one.
        fits = [c for c in configs if c.kwargs["BLOCK_N"] * kwargs["BLOCK_M"] <= TRITON_MAX_TILE]
        return fits or [min(configs, key=lambda c: c.kwargs["BLOCK_N"])]

    # Every output is written whole by each run, so the autotuner's repeated trial runs need no restoring.
    _capped_sinkhorn_autotuned = triton.autotune(
        configs=[triton.Config({"BLOCK_N": rows}, num_warps=warps, num_stages=stages)
                 for rows, warps, stages in TRITON_CONFIGS],
        key=["n", "m"], prune_configs_by={"early_config_prune": _prune},
    )(_capped_sinkhorn_kernel)


def triton_iterations(logK: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, log_m: torch.Tensor,
                      v: torch.Tensor, n_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_iter`` capped iterations of every problem in one launch of the Triton kernel (one program per
    problem); arguments and result as :func:`multisection_iterations`."""
    B, n, m = logK.shape
    u, v_out = torch.empty_like(log_a), torch.empty_like(v)
    args = (logK, log_a, log_b, log_m, v.contiguous(), u, v_out, n, m, n_iter)
    sizes = _kernel_sizes(n, m)
    if logK.device.type == "cuda":
        _capped_sinkhorn_autotuned[(B,)](*args, **sizes)
    else:  # Triton's interpreter (TRITON_INTERPRET=1): nothing to time; short tiles, so that checks at small
        # sizes go through several of them, the last one partly masked
        _capped_sinkhorn_kernel[(B,)](*args, BLOCK_N=INTERPRETER_BLOCK_N, **sizes)
    return u, v_out


def triton_config() -> str | None:
    """The kernel configuration the autotuner chose last (None before any CUDA solve)."""
    best = getattr(_capped_sinkhorn_autotuned, "best_config", None) if triton is not None else None
    return str(best) if best is not None else None


# ------------------------------------------------------------------------------------------ CUDA graphs, compile
class _GraphedIterations:
    """:func:`brainot.model.ot.partial_sinkhorn_iterations` (``n_iter`` of them) captured in a CUDA graph over static
    input buffers."""

    def __init__(self, logK, log_a, log_b, log_m, v, n_iter: int):
        self.inputs = [t.clone() for t in (logK, log_a, log_b, log_m, v)]
        self.cost = weakref.ref(logK)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # a warm-up run outside the capture, as CUDA graphs require
            bot.partial_sinkhorn_iterations(*self.inputs, n_iter)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = bot.partial_sinkhorn_iterations(*self.inputs, n_iter)

    def __call__(self, logK, log_a, log_b, log_m, v):
        # The cost is the same tensor for every block of a solve: copy it once per solve, not once per block.
        first = 0 if self.cost() is not logK else 1
        for static, value in zip(self.inputs[first:], (logK, log_a, log_b, log_m, v)[first:]):
            static.copy_(value)
        self.cost = weakref.ref(logK)
        self.graph.replay()
        return tuple(t.clone() for t in self.outputs)


_GRAPHS: OrderedDict = OrderedDict()
_COMPILED: dict = {}
# reduce-overhead: inductor's kernels replayed in a CUDA graph (launch-bound iterations); no graphs on a CPU.
COMPILE_MODE = {"cuda": "reduce-overhead", "cpu": "default"}


def graph_iterations(logK, log_a, log_b, log_m, v, n_iter: int):
    """:func:`brainot.model.ot.partial_sinkhorn_iterations` replayed from a CUDA graph (captured on first use of a
    shape and block length; the last ``GRAPH_CACHE_SIZE`` are kept)."""
    key = (tuple(logK.shape), logK.dtype, logK.device, n_iter)
    if key not in _GRAPHS:
        _GRAPHS[key] = _GraphedIterations(logK, log_a, log_b, log_m, v, n_iter)
        while len(_GRAPHS) > GRAPH_CACHE_SIZE:
            _GRAPHS.popitem(last=False)
    _GRAPHS.move_to_end(key)
    return _GRAPHS[key](logK, log_a, log_b, log_m, v)


def compiled_iterations(logK, log_a, log_b, log_m, v, n_iter: int):
    """``n_iter`` calls of one :func:`brainot.model.ot.partial_sinkhorn_iterations` iteration compiled by
    ``torch.compile`` (one specialisation per shape; module docstring)."""
    mode = COMPILE_MODE.get(logK.device.type, "default")
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(bot.partial_sinkhorn_iterations, fullgraph=True, dynamic=False, mode=mode)
    for _ in range(n_iter):
        u, v = _COMPILED[mode](logK, log_a, log_b, log_m, v, 1)
        # A CUDA-graphed function's outputs are overwritten by its next replay.
        u, v = u.clone(), v.clone()
    return u, v


ITERATIONS = {"triton": triton_iterations, "graph": graph_iterations, "compile": compiled_iterations,
              "torch": multisection_iterations}


def resolve_backend(backend: str, M: torch.Tensor) -> str:
    """The backend ``auto`` stands for on costs M; raises ValueError naming why a backend cannot run them."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if triton_usable(M) else "torch"
    if backend == "graph" and M.device.type != "cuda":
        raise ValueError(f"backend 'graph' needs a CUDA device, the cost is on {M.device}")
    if backend == "triton" and (reason := triton_problem(M)):
        raise ValueError(f"backend 'triton': {reason}")
    return backend


def sinkhorn_partial_fast(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, m, reg: float,
                          numItermax: int = 1000, stopThr: float = 1e-9, check_every: int = 10, log: bool = False,
                          backend: str = "auto"):
    r"""Entropic partial OT plans of a batch of problems: :func:`brainot.model.ot.sinkhorn_partial`, fused.

    .. math::
        \gamma = \arg\min_{\gamma \ge 0} \langle \gamma, M \rangle_F
                 + \mathrm{reg} \sum_{ij} \gamma_{ij} (\log \gamma_{ij} - 1)
        \quad \text{s.t.} \quad \gamma \mathbf{1} \le a,\ \gamma^\top \mathbf{1} \le b,\
        \mathbf{1}^\top \gamma \mathbf{1} = m

    Parameters, returns, iterations and stopping rule are those of :func:`brainot.model.ot.sinkhorn_partial`
    (Benamou et al. 2015; Chapel et al. 2020): a (B, n), b (B, m), M (B, n, m), m a float or (B,), reg > 0;
    the ``check_every`` iterations between two convergence checks (each one host sync) run fused, by
    ``backend`` (module docstring). Computes in M's dtype. The log dict also names the backend that ran (and the
    Triton kernel's autotuned configuration).
    """
    bot.check_solver_settings(reg, numItermax, check_every)
    with torch.no_grad():
        M = M.detach()
        a, b = a.to(M), b.to(M)
        m = bot._check_problem(a, b, M, m)
        backend = resolve_backend(backend, M)
        G, info = bot.checked_iterations(ITERATIONS[backend], -M / reg, a, b, m, numItermax, stopThr, check_every)
    if log:
        info["backend"] = backend
        if backend == "triton" and M.device.type == "cuda":
            info["triton_config"] = triton_config()
        return G, info
    return G
