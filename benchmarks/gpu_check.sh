#!/usr/bin/env bash
# The GPU proof of issue 14, in one command, everything under one output folder:
#
#   bash benchmarks/gpu_check.sh [OUT]            # on a machine with CuPy and a CUDA GPU (~8 min)
#   bash benchmarks/gpu_check.sh --dry-run [OUT]  # on a CPU: the same plumbing at tiny sizes (~1 min)
#
# Runs from the repository root WITHOUT `pip install -e`: PYTHONPATH=. and the packages already
# installed (on the lent H200s: CuPy 14, PyTorch 2.11, transformers, pytest, hypothesis; nothing can
# be downloaded there). Missing packages are reported in OUT/deps.txt and OUT/summary.md; wheels
# carried in a folder named by $GPU_CHECK_WHEELS (e.g. made here with `pip download -d wheels
# scipy matplotlib ml_dtypes jupytext nbclient ipykernel`) are installed into OUT/_deps first.
#
# Stages, most valuable first (each stage's limit is cut to what is left of GPU_CHECK_BUDGET_S,
# default 480 s; a failing stage does not stop the next; OUT/summary.md lists each stage's exit
# status and time, the benchmark tables and the pretraining run's first and last records):
#   1. deps           versions of everything, nvidia-smi                         (OUT/deps.txt)
#   2. gpu-precision  pytest -m gpu on tests/test_precision.py, tests/test_fused.py: the batched
#                     GEMM, fp16 attention not in fp32, every fused kernel against its NumPy layer
#   3. bench          benchmarks/gpu_bench.py: minialbert-CuPy vs HF AlbertForPreTraining (eager,
#                     and torch.compile for base), fp16, ALBERT-base B=32 T=128 and xxlarge B=8
#                     T=512: tokens/s, MFU, peak memory                   (OUT/bench/results.md)
#   4. pretrain       a 2-minute fp16 pretraining run of ALBERT-base shape on the GPU (OUT/pretrain/)
#   5. gpu-tests      pytest -m gpu on the rest: the CuPy parameters of the whole suite
#   6. notebook       notebooks/10_gpu.py at GPU scale, run as a script          (OUT/notebook.log)
#   7. bench-bf16, suite   bf16 benchmark of base; the rest of the default suite (-m "not gpu")
set -u
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
PY=${PYTHON:-python}
T0=$(date +%s)
SUMMARY="$OUT/summary.md"
echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) (dry run: $DRY), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" > "$SUMMARY"
echo "" >> "$SUMMARY"
echo "| stage | exit | seconds | output |" >> "$SUMMARY"
echo "|---|---|---|---|" >> "$SUMMARY"

BUDGET=${GPU_CHECK_BUDGET_S:-480}   # the whole run; a stage gets min(its limit, what is left), >= 30 s
left() {
  local rest=$(( BUDGET - ($(date +%s) - T0) ))
  [ $rest -lt 30 ] && rest=30
  [ $rest -lt $1 ] && echo $rest || echo $1
}

stage() {  # stage NAME LIMIT_S OUTPUT_NOTE -- command...
  local name=$1 limit=$2 note=$3; shift 4
  local s=$(date +%s)
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/stages.log"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >> "$OUT/$name.log" 2>&1
  local rc=$?
  local d=$(( $(date +%s) - s ))
  echo "| $name | $rc$( [ $rc -eq 124 ] && echo ' (time limit)') | $d | $note |" >> "$SUMMARY"
  echo "   -> exit $rc in ${d}s" | tee -a "$OUT/stages.log"
  return 0
}

# ---- 1. dependencies --------------------------------------------------------------------------
if [ -n "${GPU_CHECK_WHEELS:-}" ] && [ -d "$GPU_CHECK_WHEELS" ]; then
  $PY -m pip install --no-index --no-deps --quiet --target "$OUT/_deps" "$GPU_CHECK_WHEELS"/*.whl \
    > "$OUT/wheels.log" 2>&1 && export PYTHONPATH="$PYTHONPATH:$OUT/_deps"
fi
$PY - > "$OUT/deps.txt" 2>&1 <<'EOF'
import importlib, sys
groups = {
    "runtime (minialbert imports these)": ["numpy", "sentencepiece", "safetensors", "tqdm", "scipy", "matplotlib"],
    "GPU / precision": ["cupy", "ml_dtypes"],
    "tests": ["pytest", "hypothesis", "xdist"],
    "oracles and benchmarks": ["torch", "transformers"],
    "notebooks": ["jupytext", "nbclient", "ipykernel"],
}
print("python", sys.version.split()[0])
missing = []
for g, mods in groups.items():
    print(f"-- {g}")
    for m in mods:
        try:
            mod = importlib.import_module(m)
            print(f"   {m} {getattr(mod, '__version__', '?')}")
        except Exception as e:  # noqa: BLE001
            print(f"   {m} MISSING ({type(e).__name__}: {e})")
            missing.append(m)
try:
    import cupy
    print("cupy device:", cupy.cuda.runtime.getDeviceProperties(0)["name"], "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())
except Exception as e:  # noqa: BLE001
    print("cupy device: NONE", e)
print("MISSING:", " ".join(missing) if missing else "none")
EOF
MISSING=$(grep '^MISSING:' "$OUT/deps.txt" | cut -d' ' -f2-)
(command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1) || echo "no nvidia-smi" > "$OUT/nvidia-smi.txt"
echo "| deps | - | $(( $(date +%s) - T0 )) | deps.txt: missing: $MISSING |" >> "$SUMMARY"

XDIST=""
if $PY -c "import xdist" 2> /dev/null; then XDIST="-n 8"; fi

if [ $DRY -eq 1 ]; then
  # ---- the same stages on the CPU, tiny -------------------------------------------------------
  stage gpu-tests 120 "gpu-tests.log (collection only)" -- \
    $PY -m pytest -m gpu tests/test_precision.py tests/test_fused.py -q -p no:cacheprovider --collect-only
  stage bench 300 "bench/results.md" -- \
    $PY benchmarks/gpu_bench.py --dry-run --precision fp16 --configs base --out "$OUT/bench"
  $PY -c "from minialbert.data import load_default_corpus as c; import sys; \
open(sys.argv[1], 'w').write('\n\n'.join('\n'.join(d) for d in c()[:150]))" "$OUT/corpus.txt"
  stage pretrain 300 "pretrain/ (tiny, 4 steps, cpu)" -- \
    $PY -m minialbert pretrain --preset tiny --precision fp16 --corpus "$OUT/corpus.txt" --vocab-size 400 \
      --steps 4 --warmup 1 --batch-size 4 --seq-len 32 --log-every 1 --checkpoint-every 2 --eval-size 16 \
      --no-plots --no-progress --out "$OUT/pretrain" --overwrite
  # (notebook 10 runs in full at CPU scale in tests/test_notebooks.py; here only parsed)
  stage notebook 60 "notebook.log (parsed only)" -- \
    $PY -c "import ast; ast.parse(open('notebooks/10_gpu.py').read()); print('notebooks/10_gpu.py parses')"
else
  # ---- 2. GPU tests: mixed precision, batched GEMM, fused kernels first --------------------------
  stage gpu-precision $(left 100) "gpu-precision.log, gpu_precision.xml" -- \
    $PY -m pytest -m gpu tests/test_precision.py tests/test_fused.py -q -p no:cacheprovider -rs --continue-on-collection-errors \
      --junitxml="$OUT/gpu_precision.xml"
  # ---- 3. benchmarks --------------------------------------------------------------------------
  stage bench $(left 150) "bench/results.md" -- \
    $PY benchmarks/gpu_bench.py --precision fp16 --configs base,xxlarge --steps 5 --budget-s 110 \
      --out "$OUT/bench"
  # ---- 4. a 2-minute pretraining run (SIGINT at the limit saves a checkpoint) -------------------
  stage pretrain $(left 120) "pretrain/metrics.jsonl" -- \
    $PY -m minialbert pretrain --device gpu --precision fp16 --preset albert-base-v2 --dupe-factor 2 \
      --vocab-size 5000 --seq-len 128 --batch-size 64 --steps 3000 --warmup 100 --lr 5e-4 \
      --log-every 20 --checkpoint-every 500 --no-progress --no-plots --out "$OUT/pretrain" --overwrite
  # ---- 5. the other GPU tests: the CuPy parameters of the whole suite ---------------------------
  stage gpu-tests $(left 120) "gpu-tests.log, gpu_tests.xml" -- \
    $PY -m pytest -m gpu tests/ -q -p no:cacheprovider -rs --continue-on-collection-errors --deselect tests/test_precision.py \
      --deselect tests/test_fused.py --junitxml="$OUT/gpu_tests.xml"
  # ---- 6. notebook 10 at GPU scale --------------------------------------------------------------
  stage notebook $(left 60) "notebook.log" -- \
    env MINIALBERT_NB_SCALE=gpu $PY notebooks/10_gpu.py
  # ---- 7. bf16 benchmark of base, and the rest of the suite, with what is left --------------------
  if [ $(( $(date +%s) - T0 )) -lt 400 ]; then
    stage bench-bf16 $(left 50) "bench_bf16/results.md" -- \
      $PY benchmarks/gpu_bench.py --precision bf16 --configs base --impl minialbert,torch --steps 5 \
        --budget-s 35 --out "$OUT/bench_bf16"
  fi
  stage suite $(left 600) "suite.log, suite.xml" -- \
    $PY -m pytest -m "not gpu and not slow" tests/ -q -p no:cacheprovider --continue-on-collection-errors $XDIST --junitxml="$OUT/suite.xml"
fi

echo "" >> "$SUMMARY"
echo "Total: $(( $(date +%s) - T0 )) s. Missing packages: $MISSING" >> "$SUMMARY"
for f in "$OUT/bench/results.md" "$OUT/bench_bf16/results.md"; do
  [ -f "$f" ] && { echo ""; cat "$f"; } >> "$SUMMARY"
done
if [ -f "$OUT/pretrain/metrics.jsonl" ]; then
  { echo ""; echo "pretraining: first and last metrics records"; head -n 1 "$OUT/pretrain/metrics.jsonl"; tail -n 1 "$OUT/pretrain/metrics.jsonl"; } >> "$SUMMARY"
fi
for log in gpu-precision gpu-tests suite; do
  [ -f "$OUT/$log.log" ] && { echo ""; echo "$log: $(tail -n 1 "$OUT/$log.log")"; } >> "$SUMMARY"
done
cat "$SUMMARY"
