#!/usr/bin/env bash
# brainot.model.ot_fast's Triton kernel against the plain solver, run in Triton's interpreter on CPU tensors (no GPU):
#
#     bash scripts/check_triton_interpreter.sh          # a few minutes on 2 cores
#
# Triton is not a dependency of brainot (it ships with CUDA builds of PyTorch), so this check is not part of the
# test suite: it needs a Triton unpacked aside, TRITONPKG (default /tmp/tritonpkg, e.g. `pip install --target
# /tmp/tritonpkg triton==3.6.0`), put on PYTHONPATH with TRITON_INTERPRET=1. For each case (small sizes: the
# interpreter runs every program in numpy), it prints the worst plan difference sum|G - G_ref| / m of the Triton
# plan (float32) against the float64 plain solver, and the float32 scale it is judged by: the largest difference
# of the plain float32 solver from float64 on the same weights and on weights a perturbed by 3e-7 relative (how
# far float32 rounding of the inputs moves the plain solver: far, on degenerate problems where m is exactly the
# capacity of a set of rows); it exits 1 when the kernel is more than 10 times further off than that.
# With CHECK_AOT=1 it then compiles the kernel ahead of time for sm_90 (Triton's own ptxas, no GPU needed) in every
# autotuned configuration at n = m = 256 and prints registers and spill stack per thread.
# Variables: PYTHON (default .venv/bin/python, else python3), TRITONPKG, CHECK_AOT.
set -euo pipefail
cd "$(dirname "$0")/.."
TRITONPKG="${TRITONPKG:-/tmp/tritonpkg}"
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
if [ ! -d "$TRITONPKG/triton" ]; then
    echo "check_triton_interpreter: no Triton under $TRITONPKG (set TRITONPKG)" >&2
    exit 2
fi
# The kernel's masked lanes take exp/log of infinities by design (then discard them): numpy warns, harmlessly.
export PYTHONPATH="$TRITONPKG:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" TRITON_INTERPRET=1 OMP_NUM_THREADS=1 \
    PYTHONWARNINGS="ignore::RuntimeWarning"
status=0
"$PY" - <<'EOF' || status=$?
import sys
import time

import torch
import triton

from brainot.model import ot as bot
from brainot.model import ot_fast
from benchmarks.ot import make_problem

torch.set_num_threads(1)
print(f"triton {triton.__version__} (interpreter), torch {torch.__version__}")
# (kind, B, n, m, d, normalisation, reg, mass, iterations): square and rectangular (n, m not powers of two: the
# masked lanes), masses 0.1 to 1, the config's nearest/0.005, and reg = 0.002 on max-normalised costs at d = 512
# where every kernel entry underflows float32.
CASES = [("random", 2, 16, 16, 8, "max", 0.05, 0.5, 30),
         ("clustered", 2, 30, 17, 16, "nearest", 0.005, 0.9, 30),
         ("permuted-noisy", 2, 17, 30, 16, "nearest", 0.005, 0.1, 30),
         ("random", 2, 24, 24, 512, "max", 0.002, 1.0, 30),
         ("early", 2, 40, 40, 32, "nearest", 0.005, 0.3, 20),
         ("clustered", 1, 64, 64, 64, "nearest", 0.005, 0.5, 20),
         ("permuted-noisy", 1, 256, 256, 64, "nearest", 0.005, 0.5, 10)]
worst = 0.0
for kind, B, n, m, d, norm, reg, mass, iters in CASES:
    x, y = make_problem(kind, B, max(n, m), d, seed=1, dtype=torch.float64)
    M = bot.normalise_cost(bot.dist_sqeuclidean(x[:, :n], y[:, :m]), norm)
    a = torch.full((B, n), 1 / n, dtype=torch.float64)
    b = torch.full((B, m), 1 / m, dtype=torch.float64)
    settings = dict(numItermax=iters, stopThr=0.0, check_every=10, log=True)
    G_ref, log_ref = bot.sinkhorn_partial(a, b, M, mass, reg, **settings)
    G_32, _ = bot.sinkhorn_partial(a.float(), b.float(), M.float(), mass, reg, **settings)
    rounding = float(((G_32.double() - G_ref).abs().sum((1, 2)) / mass).max())
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        a_p = a * (1 + 3e-7 * torch.randn(a.shape, generator=gen, dtype=a.dtype))
        a_p = a_p / a_p.sum(1, keepdim=True)
        G_p64, _ = bot.sinkhorn_partial(a_p, b, M, mass, reg, **settings)
        G_p32, _ = bot.sinkhorn_partial(a_p.float(), b.float(), M.float(), mass, reg, **settings)
        rounding = max(rounding, float(((G_p32.double() - G_p64).abs().sum((1, 2)) / mass).max()))
    start = time.perf_counter()
    G, log = ot_fast.sinkhorn_partial_fast(a.float(), b.float(), M.float(), mass, reg, backend="triton", **settings)
    seconds = time.perf_counter() - start
    diff = float(((G.double() - G_ref).abs().sum((1, 2)) / mass).max())
    worst = max(worst, diff / max(rounding, 1e-6))
    print(f"{kind:<15} B={B} {n:>2}x{m:<2} d={d:<3} {norm:<7} reg={reg:<6} m={mass:<3}: "
          f"triton L1/m {diff:.2e}, plain float32 up to {rounding:.2e}, "
          f"iterations {log['n_iter']}/{log_ref['n_iter']}, "
          f"backend {log['backend']}, {seconds:.1f} s", flush=True)
ok = worst < 10
print(f"worst triton difference / max(plain float32 difference, 1e-6): {worst:.2f} -> {'OK' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
EOF
[ "${CHECK_AOT:-0}" = 1 ] || exit $status
env -u TRITON_INTERPRET "$PY" - <<'EOF' || exit 1
import os
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from brainot.model import ot_fast

pointers = ("logK_ptr", "log_a_ptr", "log_b_ptr", "log_m_ptr", "v_in_ptr", "u_ptr", "v_ptr")
signature = {name: "*fp32" for name in pointers}
signature.update(n="i32", m="i32", n_iter="i32")
sizes = ot_fast._kernel_sizes(256, 256)
cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
for rows, warps, stages in ot_fast.TRITON_CONFIGS:
    constants = {"BLOCK_N": rows, **sizes}
    source = ASTSource(fn=ot_fast._capped_sinkhorn_kernel, constexprs=constants,
                       signature={**signature, **{name: "constexpr" for name in constants}})
    kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": warps, "num_stages": stages})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(kernel.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([cuobjdump, "--dump-resource-usage", cubin.name], capture_output=True,
                               text=True, check=True).stdout
    fields = dict(f.split(":") for line in usage.splitlines() if "REG:" in line for f in line.split() if ":" in f)
    print(f"sm_90, n = m = 256, BLOCK_N {rows:>2}, {warps:>2} warps, {stages} stage(s): {fields['REG']} registers, "
          f"spill stack {fields['STACK']} bytes", flush=True)
EOF
exit $status
