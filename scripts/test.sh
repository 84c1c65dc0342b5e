#!/usr/bin/env bash
# Runs the test suite (builds first if needed), then the Python package's pytest and mypy
# (plain mode only; .venv from scripts/setup.sh). The default run excludes tests tagged
# [.slow]; `--sanitize` builds and runs everything under AddressSanitizer + UBSan in
# build-asan/ instead; `--tsan` builds and runs the [concurrency] tests under ThreadSanitizer in
# build-tsan/.
set -euo pipefail
cd "$(dirname "$0")/.."
# Sanitizer builds: line tables only (-g1): the reports keep file:line, and the build (the longest
# step of CI) spends less time writing debug information. ThreadSanitizer builds -O2 (few targets);
# the ASan/UBSan build -O1: UBSan's checks make -O2 compile 1.4-1.6x slower than -O1 with the same
# checks (validate/model.cpp 157 s vs 110 s, tests/test_attention_integral.cpp 85 s vs 54 s).
SAN_FLAGS="-O2 -g1 -DNDEBUG"
if [ "${1:-}" = "--tsan" ]; then
  # ThreadSanitizer on the [concurrency] tests only (tests/test_concurrency.cpp): engines and the
  # public API called from several threads at once. A race report fails the run.
  BUILD_DIR=build-tsan
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$SAN_FLAGS" -DSIGPROP_SANITIZE_THREAD=ON \
        -DSIGPROP_BUILD_BENCH=OFF -DSIGPROP_ENABLE_CUDA=OFF -DSIGPROP_ENABLE_MPI=OFF > /dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target sigprop_concurrency_tests
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
    "$BUILD_DIR/tests/sigprop_concurrency_tests" "[concurrency]"
  exit 0
fi
if [ "${1:-}" = "--sanitize" ]; then
  BUILD_DIR=build-asan
  SAN_FLAGS="-O1 -g1 -DNDEBUG"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$SAN_FLAGS" -DSIGPROP_SANITIZE=ON \
        -DSIGPROP_BUILD_BENCH=OFF > /dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  BUILD_DIR=${SIGPROP_BUILD_DIR:-build}
  [ -f "$BUILD_DIR/build.ninja" ] || cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
if [ "${1:-}" != "--sanitize" ]; then
  # The Python package (docs/python.md), installed in .venv by scripts/setup.sh: pytest (a few
  # seconds; compares with this build's command line) and mypy on the example against the stubs.
  if [ ! -x .venv/bin/python ]; then
    echo "test.sh: no .venv: run scripts/setup.sh first (it installs the Python package)" >&2
    exit 1
  fi
  installed=$(.venv/bin/python -c 'import sigprop, os; print(os.path.dirname(sigprop.__file__))' 2>/dev/null || true)
  if [ -z "$installed" ] || [ -n "$(find "$BUILD_DIR/lib" python pyproject.toml -newer "$installed/__init__.py" -type f -not -path "*/__pycache__/*" 2>/dev/null | head -1)" ]; then
    scripts/python_install.sh "$BUILD_DIR"  # missing, or older than this build or python/
  fi
  SIGPROP_CLI="$PWD/$BUILD_DIR/cli/sigprop" .venv/bin/python -m pytest -q -p no:cacheprovider python/tests
  .venv/bin/python -m mypy --strict --no-incremental examples/python/depth_curves.py
fi
