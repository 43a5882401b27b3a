#!/usr/bin/env bash
# One-shot check of the CUDA kernels on a lent GPU machine (torch + nvcc preinstalled,
# no internet, no pip installs). From the repository root:
#
#     OUT=/some/dir bash benchmarks/device_check.sh
#
# 1. prints python / torch / nvcc / GPU versions;
# 2. builds zoo._C in place with the CUDA kernels (ZOO_FORCE_CUDA=1, sm_90);
# 3. runs the op tests (tests/ops; the CUDA ones must not skip: ZOO_REQUIRE_CUDA_OPS=1),
#    among them the CUDA-only checks: fp64 NMS against torchvision, the NMS mask size limits
#    (grid and device memory), the raw CUDA ops' ValueErrors, the t_wh cap, the SE
#    backward's output_mask, SE with act="silu" (tests/ops/test_se_cuda.py) and adder2d's
#    CUDA kernels (tests/ops/test_adder_cuda.py);
# 4. runs benchmarks/bench_ops.py (3 runs: median and range of each ratio) and
#    benchmarks/bench_se.py and benchmarks/bench_adder.py on cuda;
# 5. with the time left, runs the ctest smoke test of a CMake build with ZOO_WITH_CUDA=ON
#    (the same cases on the GPU), if cmake is there.
# Every step runs even when an earlier one failed; exit codes go to $OUT/summary.txt.
# The whole run is kept under ~8 minutes: each step gets at most its own limit and
# never more than what is left of the total.
set -u

cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/zoo_device_check}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"

export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
unset ZOO_OPS
# $PYTHON, else the first of python / python3 that imports torch.
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  PY=python
  for cand in python python3; do
    if "$cand" -c "import torch" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi

TOTAL_S=${ZOO_CHECK_TOTAL_S:-470}
START=$(date +%s)

# step NAME LIMIT_S LOGFILE CMD...: run CMD with stdout+stderr to LOGFILE, under
# min(LIMIT_S, time left), and record its exit code and duration.
step() {
  local name=$1 limit=$2 log=$3
  shift 3
  local left=$((TOTAL_S - ($(date +%s) - START)))
  if ((left < limit)); then limit=$left; fi
  if ((limit < 10)); then
    echo "$name: skipped (out of time)" | tee -a "$SUMMARY"
    return
  fi
  local t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local note=""
  if ((rc == 124 || rc == 137)); then note=" (timed out after ${limit}s)"; fi
  echo "$name: exit $rc in $(($(date +%s) - t0))s$note -> $(basename "$log")" | tee -a "$SUMMARY"
}

{
  echo "== versions"
  echo "python: $("$PY" --version 2>&1) ($(command -v "$PY"))"
  "$PY" -c "import torch; print('torch:', torch.__version__, 'cuda', torch.version.cuda, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')" 2>&1
  "$PY" -c "import torchvision; print('torchvision:', torchvision.__version__)" 2>&1
  echo "nvcc: $( (nvcc --version || /usr/local/cuda/bin/nvcc --version) 2>&1 | grep -i release)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 2
  echo "git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed paths"
  echo "== steps"
} | tee -a "$SUMMARY"

# 2. build (in place: zoo/_C.so)
export MAX_JOBS=${MAX_JOBS:-16}
step build 240 "$OUT/build.txt" \
  env ZOO_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 "$PY" setup.py build_ext --inplace
"$PY" -c "
import torch, zoo.ops._ext as e
ok = e.available()
print('extension loaded:', ok, e.load_error() or '')
if ok:
    for op in ('nms', 'batched_nms', 'yolo_decode', 'yolo_postprocess', 'squeeze_excite', 'squeeze_excite_backward',
               'adder2d', 'adder2d_backward'):
        print(' ', op, 'CUDA kernel:', torch._C._dispatch_has_kernel_for_dispatch_key('zoo::' + op, 'CUDA'))
" 2>&1 | tee -a "$SUMMARY"

# 3. op tests
step pytest_ops 240 "$OUT/pytest_ops.txt" \
  env ZOO_REQUIRE_CUDA_OPS=1 "$PY" -m pytest -q -p no:cacheprovider tests/ops
tail -n 3 "$OUT/pytest_ops.txt" | sed 's/^/  /' | tee -a "$SUMMARY"

# 4. benchmarks
if [[ -f benchmarks/bench_ops.py ]]; then
  step bench_ops 120 "$OUT/bench_ops_cuda.txt" "$PY" benchmarks/bench_ops.py --device cuda --runs 3
else
  echo "bench_ops: benchmarks/bench_ops.py not found, skipped" | tee -a "$SUMMARY"
fi
if [[ -f benchmarks/bench_se.py ]]; then
  step bench_se 60 "$OUT/bench_se_cuda.txt" "$PY" benchmarks/bench_se.py --device cuda
  step bench_se_silu 60 "$OUT/bench_se_silu_cuda.txt" "$PY" benchmarks/bench_se.py --device cuda --act silu
else
  echo "bench_se: benchmarks/bench_se.py not found, skipped" | tee -a "$SUMMARY"
fi

if [[ -f benchmarks/bench_adder.py ]]; then
  step bench_adder 90 "$OUT/bench_adder_cuda.txt" "$PY" benchmarks/bench_adder.py --device cuda --runs 5
else
  echo "bench_adder: benchmarks/bench_adder.py not found, skipped" | tee -a "$SUMMARY"
fi

# 5. C++ smoke test of a CMake build with the CUDA kernels, on the GPU (last: it only
#    gets the time that is left)
if command -v cmake >/dev/null 2>&1; then
  TORCH_CMAKE=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
  step ctest_cuda 150 "$OUT/ctest_cuda.txt" bash -c "
    cmake -S . -B build/cmake-device -DZOO_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_PREFIX_PATH='$TORCH_CMAKE' -DCMAKE_BUILD_TYPE=Release &&
    cmake --build build/cmake-device -j $MAX_JOBS &&
    ctest --test-dir build/cmake-device --output-on-failure --no-tests=error"
else
  echo "ctest_cuda: no cmake, skipped" | tee -a "$SUMMARY"
fi

echo "total: $(($(date +%s) - START))s" | tee -a "$SUMMARY"
