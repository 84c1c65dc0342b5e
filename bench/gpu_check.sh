#!/usr/bin/env bash
# The one device check of the GPU backend (docs/cuda.md). On a machine with an sm_90 GPU
# (H100/H200), the CUDA toolkit and, for the comparison, PyTorch with CUDA:
#   bash bench/gpu_check.sh            # ~4-6 min on one H100; everything under build-gpu/ and out/gpu_check/
# Steps, each printed with its time; the script stops at the first failure:
#   1. configure + build sigprop, the plug-in build-gpu/lib/libsigprop_cuda.so (the only file that
#      links the CUDA libraries; sigprop and bench_cuda load it at run time), sigprop_tests and
#      bench_cuda with CUDA (Release, build-gpu/)
#   2. the [cuda] tests: parity with the reference on identical streams, gradcheck, tf32, batching
#   3. compute-sanitizer memcheck on a small `sigprop simulate --backend cuda` (attn+mlp and dense)
#   4. the bias of float and tf32 against float64 on identical streams (tools/cuda_bias.py)
#   5. the table: sigprop CUDA vs PyTorch eager, d in {256, 1024}, T in {32, 128}, L = 32,
#      256 samples, forward + backward + metrics, model TFLOP/s and % of the FP32 peak
# Environment: SIGPROP_GPU_BUILD_DIR (default build-gpu), SIGPROP_GPU_SKIP_BUILD=1 (reuse it),
# SIGPROP_GPU_PRECISION (float|tf32, for the table; default float).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${SIGPROP_GPU_BUILD_DIR:-build-gpu}
OUT=out/gpu_check
mkdir -p "$OUT"
T0=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - T0 )) s] $*"; }

NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] || { echo "gpu_check: no nvcc (install the CUDA toolkit or put nvcc on PATH)"; exit 1; }
export PATH="$(dirname "$NVCC"):$PATH"

step "device"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || true

if [ -z "${SIGPROP_GPU_SKIP_BUILD:-}" ]; then
  step "configure + build ($BUILD, CUDA $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
  LAUNCHER=()
  command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSIGPROP_ENABLE_CUDA=ON \
        -DCMAKE_CUDA_COMPILER="$NVCC" "${LAUNCHER[@]}" > "$OUT/configure.log"
  cmake --build "$BUILD" -j "$(nproc)" --target sigprop sigprop_cuda sigprop_tests bench_cuda > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; exit 1; }
fi
[ -f "$BUILD/lib/libsigprop_cuda.so" ] || { echo "gpu_check: no plug-in $BUILD/lib/libsigprop_cuda.so"; exit 1; }

step "[cuda] tests (and [cuda-emu], [hd]: the same checks through the host emulation)"
set +e
"$BUILD/tests/sigprop_tests" "[cuda],[cuda-emu],[hd]" --durations yes > "$OUT/tests.log" 2>&1
rc=$?
set -e
grep -vE "^[0-9.]+ s: " "$OUT/tests.log" | tail -40
grep -E "^[0-9.]+ s: " "$OUT/tests.log" | sort -rn | head -8 || true
if grep -q "skipped: no usable CUDA device" "$OUT/tests.log"; then
  echo "gpu_check: the tests found no usable device; stopping"; exit 1
fi
[ "$rc" -eq 0 ] || { echo "gpu_check: [cuda] tests failed (exit $rc; see $OUT/tests.log)"; exit 1; }

step "compute-sanitizer memcheck (small simulate, attn+mlp and dense)"
SAN=$(command -v compute-sanitizer || echo "$(dirname "$NVCC")/compute-sanitizer")
SMALL=(simulate --set stack.depth=3 --set stack.width=64 --set stack.heads=4 --set stack.tokens=8
       --samples 5 --seed 3 --backend cuda -q --json "$OUT/memcheck.json")
"$SAN" --tool memcheck --leak-check full --error-exitcode 9 "$BUILD/cli/sigprop" "${SMALL[@]}" \
  > "$OUT/memcheck.log" 2>&1 || { tail -30 "$OUT/memcheck.log"; echo "gpu_check: memcheck found errors"; exit 1; }
"$SAN" --tool memcheck --error-exitcode 9 "$BUILD/cli/sigprop" "${SMALL[@]}" --set stack.blocks=dense \
  --set stack.norm=post --precision tf32 >> "$OUT/memcheck.log" 2>&1 \
  || { tail -30 "$OUT/memcheck.log"; echo "gpu_check: memcheck found errors"; exit 1; }
grep -E "ERROR SUMMARY|LEAK SUMMARY" "$OUT/memcheck.log" || true

step "bias of --precision float and tf32 against float64 (cpu/double) on the same streams"
python3 tools/cuda_bias.py --sigprop "$BUILD/cli/sigprop" --json "$OUT/bias.json" | tee "$OUT/bias.txt"

step "sigprop CUDA vs PyTorch eager (L = 32, 256 samples, forward + backward + metrics)"
python3 tools/torch_gpu_bench.py --bench "$BUILD/bench/bench_cuda" --precision "${SIGPROP_GPU_PRECISION:-float}" \
  --json "$OUT/bench.json" | tee "$OUT/bench.txt"

step "done: logs and bench.json in $OUT"
