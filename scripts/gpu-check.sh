#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a GPU machine without network (an
# H100/H200 lent for minutes). Uses the machine's python3 and its torch; installs nothing.
#   1. builds tbfast in place with the CUDA module (TBFAST_CUDA=on; TBFAST_CUDA_ARCHS
#      defaults to the visible GPU's compute capability);
#   2. runs the GPU and distributed benchmark suites (each checks correctness first) and
#      writes JSON and Markdown naming the GPU: first, since the measured targets are what
#      a short lease is for;
#   3. runs every CUDA test in the time left: parity with the CPU native backend on the
#      battery (histograms, PR curves, image grids), every backend on the device axis,
#      determinism, many tensors, streams, no host sync in any writer method
#      (set_sync_debug_mode("error")), accelerate() on CUDA input, the Numba CUDA kernels
#      on the device.
# The whole run stays within GPU_CHECK_BUDGET_S seconds (default 540: one device call is
# capped at 600 s); what is under OUT_DIR when a step times out is kept.
# Usage: scripts/gpu-check.sh [OUT_DIR]   (default: $OUT, else benchmarks/out/gpu)
# Output (at most 8 files): env.txt, build.log, tests.log, bench.log, <date>-gpu-<gpu>.{json,md}
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-benchmarks/out/gpu}}
mkdir -p "$out"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
say() { echo "[gpu-check $(date +%T)] $*"; }
status=0
deadline=$((SECONDS + ${GPU_CHECK_BUDGET_S:-540}))
left() { local l=$((deadline - SECONDS - ${1:-0})); echo $((l > 30 ? l : 30)); }

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1
  "$PY" -c "import torch, numpy, numba; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'numpy', numpy.__version__, 'numba', numba.__version__)"
  nvcc --version | tail -1; nproc; } > "$out/env.txt" 2>&1
cat "$out/env.txt"

say "build (nvcc)"
archs=${TBFAST_CUDA_ARCHS:-$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')" 2>/dev/null || echo 90)}
if ! TBFAST_CUDA=on TBFAST_CUDA_ARCHS=$archs "$PY" setup.py -q build_ext --inplace -j "$(nproc)" > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"; say "BUILD FAILED"; exit 1
fi
"$PY" -m tbfast info | tee -a "$out/build.log" | head -8

say "GPU benchmarks"
timeout "$(left 150)" "$PY" -m benchmarks quick --only gpu,distributed --logdir /tmp/tbfast-gpu-runs \
  --out /tmp/tbfast-gpu-out --record --record-dir "$out" 2>&1 | tee "$out/bench.log" | tail -30
[ "${PIPESTATUS[0]}" -eq 0 ] || { status=1; say "BENCHMARKS FAILED OR TIMED OUT (see bench.log)"; }

say "CUDA tests ($(left 10) s left)"
TBFAST_TEST_NUMBA_CUDA=device timeout "$(left 10)" "$PY" -m pytest -q -p no:cacheprovider -rs --durations=10 \
  tests/test_gpu.py tests/test_device_contract.py tests/test_histogram.py tests/test_histogram_numba_cuda.py \
  tests/test_pr_curve_numba_cuda.py tests/test_image_grid_numba_cuda.py tests/test_accelerate.py \
  -k "cuda or gpu or stream or sync or writer" 2>&1 | tee "$out/tests.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || { status=1; say "TESTS FAILED OR TIMED OUT (see tests.log)"; }
say "done (status $status); files in $out"
exit $status
