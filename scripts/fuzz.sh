#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan + libFuzzer, in build-fuzz/) and
# runs each for a bounded time from its committed seed corpus: safetensors (the checkpoint
# parser), spec (TOML -> StackSpec), report_config (TOML -> ReportConfig) and checkpoint_meta
# (a checkpoint's "sigprop.model" metadata -> ModelConfig, before anything is allocated).
# A crash, sanitizer report, leak or timeout fails the script and leaves the reproducer in build-fuzz/findings/.
#   scripts/fuzz.sh                    25 s per harness (CI)
#   FUZZ_SECONDS=600 scripts/fuzz.sh   longer
#   scripts/fuzz.sh spec               only the named harnesses
# Needs the Debian packages clang and libclang-rt-14-dev (libclang_rt.fuzzer), both in
# scripts/setup.sh. Reproduce a finding with: build-fuzz/fuzz/fuzz_<name> FILE
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SIGPROP_FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_PER=${FUZZ_SECONDS:-25}
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(safetensors spec report_config checkpoint_meta)
CXX_CLANG=${SIGPROP_FUZZ_CXX:-clang++}
command -v "$CXX_CLANG" > /dev/null || { echo "fuzz.sh: $CXX_CLANG not found (apt-get install clang libclang-rt-14-dev)"; exit 2; }

# -O1 -g1 (line tables): the sanitizer reports keep file:line, and the build (most of this script's
# time in CI) is ~16% shorter than RelWithDebInfo's -O2 -g (validate/model.cpp 72 s -> 60 s).
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX_CLANG" \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DSIGPROP_BUILD_FUZZ=ON -DSIGPROP_BUILD_TESTS=OFF -DSIGPROP_BUILD_BENCH=OFF -DSIGPROP_ENABLE_CUDA=OFF > /dev/null
targets=()
for h in "${HARNESSES[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$BUILD_DIR" -j "$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for h in "${HARNESSES[@]}"; do
  work="$BUILD_DIR/corpus/$h"           # grows during the run; the committed seeds stay as they are
  findings="$BUILD_DIR/findings/$h"
  mkdir -p "$work" "$findings"
  echo "== fuzz_$h for ${SECONDS_PER} s (seeds: fuzz/corpus/$h)"
  # -max_len: seeds are < 4 KiB; 64 KiB leaves room for long headers and deep nesting without
  # slowing it. -rss_limit_mb: a checkpoint's metadata must never make a reader allocate its claim.
  status=0
  "$BUILD_DIR/fuzz/fuzz_$h" "$work" "fuzz/corpus/$h" -max_total_time="$SECONDS_PER" -max_len=65536 \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$findings/" -print_final_stats=1 \
      > "$BUILD_DIR/fuzz_$h.log" 2>&1 || status=$?
  grep -E "^(Done|stat::|==[0-9]+==|SUMMARY)|ERROR|runtime error" "$BUILD_DIR/fuzz_$h.log" | tail -n 30 || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz_$h: FAILED (exit $status); reproducers in $findings/"
    exit 1
  fi
done
echo "fuzz: all harnesses ran clean"
