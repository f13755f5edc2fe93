#!/usr/bin/env bash
# One-shot performance benchmark on a GPU machine (docs/performance.md), from the repository root:
#
#     bash scripts/gpu_bench.sh                 # writes under $OUT (default ./gpu-out)
#
# Runs `python -m brainot.bench --size paper` one section per process, each under `timeout`, so that a hang
# or a crash in one section keeps the others' numbers; then merges them into bench-gpu.json / bench-gpu.txt.
# Order: ot, train, caption, embed.
# The whole run stays under BENCH_BUDGET_S seconds (default 450): a step gets what is left, at most its own limit,
# and steps that no longer fit are skipped and said so.
#
# Environment: python3 with CUDA torch, transformers and POT. A missing package is installed from the wheels
# in $BRAINOT_WHEELS (default ./.whl, e.g. POT for cp312 carried to a machine without internet), else from the
# package index (`pip install -e .`), quietly. brainot itself is used from ./src when it is not installed.
# Variables: OUT, PYTHON (default python3), BRAINOT_WHEELS, BENCH_BUDGET_S, BENCH_SIZE (default paper; tiny to
# rehearse on a CPU), BENCH_ARGS (extra arguments for every step, word-split, e.g. '--set repeat=50'),
# BRAINOT_COMMIT (the commit to record when .git is not there).
#
# $OUT gets 5 files: bench-gpu.json and bench-gpu.txt (the merged report and table), gpu_bench.log (everything
# printed), environment.txt (versions, nvidia-smi) and steps.tar.gz (each step's own JSON).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-./gpu-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_bench.log") 2>&1
PY="${PYTHON:-python3}"
WHEELS="${BRAINOT_WHEELS:-.whl}"
BUDGET="${BENCH_BUDGET_S:-450}"
SIZE="${BENCH_SIZE:-paper}"
read -r -a EXTRA <<<"${BENCH_ARGS:-}"
STEPS="$(mktemp -d)"
START=$SECONDS
export PYTHONUNBUFFERED=1
# POT imports JAX, CuPy and TensorFlow when present (the GPU image has JAX and CuPy): only its numpy backend is
# used here, and JAX must never preallocate GPU memory under the LLaMA-7B-sized model.
export POT_BACKEND_DISABLE_JAX=1 POT_BACKEND_DISABLE_CUPY=1 POT_BACKEND_DISABLE_TENSORFLOW=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export BRAINOT_COMMIT="${BRAINOT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo uncommitted)}"
echo "gpu_bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $BRAINOT_COMMIT, out $OUT, budget ${BUDGET}s"

# ---- environment: brainot from ./src, missing packages from wheels or the index
if ! "$PY" -c "import brainot" 2>/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import torch, transformers, ot" 2>/dev/null; then
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "gpu_bench: installing $(ls "$WHEELS"/*.whl | xargs -n1 basename | tr '\n' ' ')into /tmp/brainot-site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/brainot-site "$WHEELS"/*.whl
        export PYTHONPATH="/tmp/brainot-site:$PYTHONPATH"
    else
        echo "gpu_bench: torch, transformers or POT missing and no wheels in $WHEELS; trying pip install -e ."
        timeout 120 "$PY" -m pip install -q -e . || echo "gpu_bench: pip install -e . failed"
    fi
fi
if ! "$PY" -c "import torch, transformers, ot, brainot.bench" ; then
    echo "gpu_bench: FAILED: cannot import torch, transformers, POT (ot) and brainot with $PY"
    exit 1
fi
"$PY" - <<'EOF' | tee "$OUT/environment.txt"
import platform, torch, transformers, ot
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "transformers", transformers.__version__, "pot", ot.__version__)
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton missing: the Triton backend is skipped")
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$OUT/environment.txt" 2>&1 || true

# ---- the steps
done_jsons=()
step() {  # step NAME LIMIT_S ARGS...: one bench process under timeout, within the remaining budget
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 30 ]; then
        echo "gpu_bench: step $name SKIPPED (${left}s of the budget left)"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "gpu_bench: step $name (limit ${limit}s) at +$((SECONDS - START))s"
    timeout -k 10 "$limit" "$PY" -m brainot.bench --size "$SIZE" --out "$STEPS/$name.json" "$@" "${EXTRA[@]}"
    local rc=$?
    echo  # a killed step leaves its progress bar without a newline
    echo "gpu_bench: step $name exit $rc$([ $rc -eq 124 ] && echo ' (timed out)') at +$((SECONDS - START))s"
    [ -s "$STEPS/$name.json" ] && done_jsons+=("$STEPS/$name.json")
}
step ot 120 --sections ot
step train 75 --sections train
step caption 120 --sections caption
step embed 45 --sections embed
# The fused solver (torch.compile, CUDA graphs, Triton) is being ported: branch wip/ot-fast, docs/performance.md.

tar -C "$STEPS" -czf "$OUT/steps.tar.gz" .
if [ ${#done_jsons[@]} -eq 0 ]; then
    echo "gpu_bench: FAILED: no step wrote its report"
    exit 1
fi
"$PY" -m brainot.bench --merge "${done_jsons[@]}" --out "$OUT/bench-gpu.json" --table "$OUT/bench-gpu.txt"
rc=$?
echo "gpu_bench: merge exit $rc (1 = some measurement failed, see the table); total $((SECONDS - START))s"
echo "gpu_bench: wrote $(ls "$OUT" | tr '\n' ' ')"
exit $rc
