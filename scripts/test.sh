#!/usr/bin/env bash
# Runs the test suite (builds first if needed). The default run excludes tests tagged
# [.slow]; `--sanitize` builds and runs everything under AddressSanitizer + UBSan in
# build-asan/ instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  BUILD_DIR=build-asan
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIGPROP_SANITIZE=ON \
        -DSIGPROP_BUILD_BENCH=OFF > /dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  BUILD_DIR=${SIGPROP_BUILD_DIR:-build}
  [ -f "$BUILD_DIR/build.ninja" ] || cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
