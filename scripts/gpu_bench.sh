#!/usr/bin/env bash
# One-shot performance benchmark on a GPU machine (docs/performance.md), from the repository root:
#
#     bash scripts/gpu_bench.sh                 # writes under $OUT (default ./gpu-out)
#
# Runs `python -m benchmarks.pipeline --size paper` one section per process, each under `timeout`, so that a hang
# or a crash in one section keeps the others' numbers; then merges them into bench-gpu.json / bench-gpu.txt.
# Each fused OT backend (brainot.model.ot_fast) gets its own process: a CUDA error in one (which poisons the process's
# CUDA context) or a hang cannot take the plain rows or the other backends with it. Order: ot (authors, MSE,
# plain solver, exact LP), ot-triton, ot-graph, train (MSE, plain OT, Triton OT), caption, embed, then the
# torch.compile backend (slowest to build, least needed) with what is left of the budget.
# The whole run stays under BENCH_BUDGET_S seconds (default 450): a step gets what is left, at most its own limit,
# and steps that no longer fit are skipped. A step that is skipped, times out or crashes gets an error row
# `step <name>` in the merged table, so the table alone says what was not measured.
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
commit_id() {  # -dirty: the working tree differs from the commit (what is measured is not exactly the commit)
    local head
    head=$(git rev-parse --short=12 HEAD 2>/dev/null) || { echo uncommitted; return; }
    git diff --quiet HEAD -- 2>/dev/null && echo "$head" || echo "$head-dirty"
}
export BRAINOT_COMMIT="${BRAINOT_COMMIT:-$(commit_id)}"
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
if ! "$PY" -c "import torch, transformers, ot, benchmarks.pipeline" ; then
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
        note_step "$name" "skipped: ${left} s of the budget left (BENCH_BUDGET_S=$BUDGET)"
        [ -s "$STEPS/$name.json" ] && done_jsons+=("$STEPS/$name.json")
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "gpu_bench: step $name (limit ${limit}s) at +$((SECONDS - START))s"
    timeout -k 10 "$limit" "$PY" -m benchmarks.pipeline --size "$SIZE" --out "$STEPS/$name.json" "$@" "${EXTRA[@]}"
    local rc=$?
    echo  # a killed step leaves its progress bar without a newline
    echo "gpu_bench: step $name exit $rc$([ $rc -eq 124 ] && echo ' (timed out)') at +$((SECONDS - START))s"
    # exit 1 with a report: the step ran and its failed rows are in it; anything else (a timeout, a crash, no
    # report) gets a row of its own, so that the merged table says which step stopped and why.
    if [ $rc -gt 1 ] || [ ! -s "$STEPS/$name.json" ]; then
        local why=crashed
        [ $rc -eq 124 ] && why="timed out after ${limit} s"
        [ $rc -eq 137 ] && why=killed
        if [ -s "$STEPS/$name.json" ]; then why="$why after the rows above"; else why="$why before its first row"; fi
        note_step "$name" "exit $rc ($why); see gpu_bench.log"
    fi
    [ -s "$STEPS/$name.json" ] && done_jsons+=("$STEPS/$name.json")
}
note_step() {  # note_step NAME TEXT: an error row for the step in its report (written if the step wrote none)
    "$PY" - "$STEPS/$1.json" "$1" "$2" "$SIZE" <<'EOF'
import json, os, sys
path, name, text, size = sys.argv[1:5]
if os.path.exists(path) and os.path.getsize(path):
    report = json.load(open(path))
else:  # a report holding the row alone (benchmarks.pipeline --merge takes the run's header from another one)
    report = {"stub": True, "size": size, "device": "unknown", "device_type": "unknown", "versions": {},
              "commit": os.environ.get("BRAINOT_COMMIT", "unknown"), "date": "", "max_cost_error": 0.005,
              "wall_s": 0.0, "results": []}
report["results"].append({"name": f"step {name}", "section": name, "error": text})
json.dump(report, open(path, "w"), indent=2)
EOF
}
step ot 120 --sections ot --fast-backends none
step ot-triton 150 --sections ot --no-reference --fast-backends triton
step ot-graph 90 --sections ot --no-reference --fast-backends graph
step train 120 --sections train --fast-backends triton
step caption 120 --sections caption
step embed 45 --sections embed
step compile 240 --sections ot --no-reference --fast-backends compile

tar -C "$STEPS" -czf "$OUT/steps.tar.gz" .
if [ ${#done_jsons[@]} -eq 0 ]; then
    echo "gpu_bench: FAILED: no step wrote its report"
    exit 1
fi
"$PY" -m benchmarks.pipeline --merge "${done_jsons[@]}" --out "$OUT/bench-gpu.json" --table "$OUT/bench-gpu.txt"
rc=$?
echo "gpu_bench: merge exit $rc (1 = some measurement failed, see the table); total $((SECONDS - START))s"
echo "gpu_bench: wrote $(ls "$OUT" | tr '\n' ' ')"
exit $rc
