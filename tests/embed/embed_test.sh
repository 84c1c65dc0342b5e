#!/usr/bin/env bash
# ctest embed_install (docs/library.md): sigprop as an installed package, used the way a
# consumer uses it.
#   1. cmake --install the build tree into a temporary prefix;
#   2. every installed public header compiles alone with plain flags and includes no
#      third-party header;
#   3. libsigprop.so exports only sigprop:: symbols;
#   4. examples/embed builds out of tree against the prefix with plain flags (it uses Eigen
#      itself) and runs; its theory profile equals `sigprop theory --json` to 1e-12 (relative)
#      and its simulate profile equals `sigprop simulate --json` bitwise (same seed); a consumer
#      of report_from_toml writes the folder `sigprop report` writes;
#   4c. the C ABI (sigprop.h): examples/embed/depth_profile.c built with plain cc through
#      `pkg-config --cflags --libs sigprop`, and depth_profile.f90 with gfortran when there is
#      one; their grad_var and rho equal `sigprop theory --json` to 1e-12 (relative);
#   4s. when the build made libsigprop.a (SIGPROP_STATIC): it links whole with only its declared
#      dependencies; depth_profile.c built with plain cc through `pkg-config --cflags --libs
#      sigprop-static` and through a CMake consumer of sigprop::sigprop_static loads no
#      libsigprop.so, and its grad_var and rho equal `sigprop theory --json` to 1e-12 (relative);
#   5. neither libsigprop.so nor the example links a CUDA library (CUDA is a dlopen plug-in);
#   6. examples/embed configures with add_subdirectory from the checkout, gets C++20 and include/
#      from the usage requirements and no -march, builds with plain flags (the library compiles
#      a second time: minutes), runs, and its profiles equal the CLI's as in step 4
#      (SIGPROP_EMBED_FULL=0 skips the build, for quick local runs).
# Usage: embed_test.sh SOURCE_DIR BUILD_DIR SIGPROP_CLI CXX SANITIZE(ON|OFF)
set -euo pipefail
src=$1 build=$2 cli=$3 cxx=$4 sanitize=$5
if [[ "$sanitize" == ON || "$sanitize" == TRUE || "$sanitize" == 1 ]]; then
  echo "embed_install: skipped under SIGPROP_SANITIZE (a plain consumer cannot load the ASan-instrumented library)"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sigprop_embed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "embed_install: FAIL: $*" >&2; exit 1; }

# 1. install
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
for f in include/sigprop/api.hpp include/sigprop/sigprop.hpp include/sigprop/sigprop.h lib/pkgconfig/sigprop.pc \
         lib/cmake/sigprop/sigpropConfig.cmake lib/cmake/sigprop/sigpropConfigVersion.cmake \
         lib/cmake/sigprop/sigpropTargets.cmake; do
  [[ -f "$prefix/$f" ]] || fail "$f not installed"
done
lib=$(ls "$prefix"/lib/libsigprop.so.*.*.* 2>/dev/null | head -1)
[[ -n "$lib" ]] || fail "libsigprop.so.<version> not installed"
echo "installed: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' ')"

# 1b. the CUDA plug-in, when this build made one, is installed where the installed CLI finds it
if [[ -f "$build/lib/libsigprop_cuda.so" ]]; then
  [[ -f "$prefix/lib/sigprop/libsigprop_cuda.so" ]] || fail "lib/sigprop/libsigprop_cuda.so not installed"
  set +e
  msg=$(env -u SIGPROP_CUDA_PLUGIN "$prefix/bin/sigprop" simulate --backend cuda --samples 1 -q 2>&1 >/dev/null)
  rc=$?
  set -e
  # Without a GPU the plug-in loads and reports the device; with one, the run succeeds.
  if [[ $rc -ne 0 ]] && grep -q "was not found" <<< "$msg"; then
    fail "the installed CLI did not find the installed plug-in: $msg"
  fi
  echo "installed CLI + plug-in: exit $rc (${msg:0:160})"
fi

# 2. public headers: alone, plain flags, no third-party includes
for h in "$prefix"/include/sigprop/*.hpp; do
  name=$(basename "$h")
  if grep -nE '#include *[<"](nlohmann|Eigen|toml|fmt|cuda|cublas|cusolver|Random123|CLI|boost)' "$h"; then
    fail "public header $name includes a third-party header"
  fi
  grep -nE '#include *"' "$h" | grep -vE '"sigprop/[a-z_]+\.hpp"' && fail "$name includes a non-public header"
  printf '#include <sigprop/%s>\nint main() {}\n' "$name" > "$tmp/h.cpp"
  "$cxx" -std=c++20 -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" "$tmp/h.cpp" \
    || fail "sigprop/$name does not compile alone with $cxx -std=c++20"
done
# the C header: plain C99 and C++, alone, pedantic
cc=${CC:-cc}
printf '#include <sigprop/sigprop.h>\nint main(void) { return sigprop_abi_version() == SIGPROP_ABI_VERSION ? 0 : 1; }\n' > "$tmp/h.c"
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$prefix/include" "$tmp/h.c" \
  || fail "sigprop/sigprop.h does not compile alone with $cc -std=c99 -pedantic"
cp "$tmp/h.c" "$tmp/hc.cpp"
"$cxx" -std=c++20 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$prefix/include" "$tmp/hc.cpp" \
  || fail "sigprop/sigprop.h does not compile as C++ with $cxx"
echo "headers: each of $(ls "$prefix"/include/sigprop | tr '\n' ' ')compiles alone (sigprop.h as C99 and C++)"

# pkg-config sees the relocated prefix
if command -v pkg-config > /dev/null; then
  flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs sigprop)
  inc=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=includedir sigprop)
  libdir=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=libdir sigprop)
  [[ -f "$inc/sigprop/api.hpp" && -e "$libdir/libsigprop.so" ]] \
    || fail "pkg-config's includedir/libdir do not point into the prefix: $flags"
  echo "pkg-config: $flags"
fi

# 3. exported symbols
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | c++filt | grep -v '^sigprop::' \
      | grep -vE '^(typeinfo|typeinfo name|vtable) for sigprop::' | grep -vE '^_(init|fini)$' \
      | grep -vE '^sigprop_[a-z0-9_]+$' || true)
[[ -z "$bad" ]] || fail "libsigprop.so exports symbols outside namespace sigprop and the C ABI: $(echo "$bad" | head -5)"
# every function sigprop.h declares is exported (and nothing else in C)
declared=$(grep -oE '^SIGPROP_C_API [^(]*[ *](sigprop_[a-z0-9_]+)\(' "$prefix/include/sigprop/sigprop.h" \
           | grep -oE 'sigprop_[a-z0-9_]+\($' | tr -d '(' | sort)
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}' | grep -E '^sigprop_' | sort)
[[ -n "$declared" && "$declared" == "$exported" ]] \
  || fail "sigprop.h's functions and libsigprop.so's C exports differ: $(diff <(echo "$declared") <(echo "$exported") | head -5)"
echo "exports: $(nm -D --defined-only "$lib" | wc -l) symbols, in namespace sigprop or the $(wc -l <<< "$exported") C ABI functions of sigprop.h"

# 4. the example, out of tree, plain flags
env -u CXXFLAGS -u LDFLAGS cmake -S "$src/examples/embed" -B "$tmp/ex" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="" -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/ex.log" 2>&1 \
  || { cat "$tmp/ex.log"; fail "configuring examples/embed against the prefix"; }
cmake --build "$tmp/ex" > "$tmp/exb.log" 2>&1 || { cat "$tmp/exb.log"; fail "building examples/embed"; }
grep -q -- '-march' "$tmp/ex/CMakeFiles/depth_profile.dir/flags.make" && fail "the example was built with -march"
"$tmp/ex/depth_profile" "$tmp/api_theory.json" "$tmp/api_simulate.json"

sets=(--set stack.depth=24 --set stack.width=64 --set stack.qk_scale=1/dh --set input.rho0=0.2)
"$cli" theory "${sets[@]}" --json "$tmp/cli_theory.json" -q
"$cli" simulate "${sets[@]}" --samples 8 --seed 7 --backend cpu --threads 2 --json "$tmp/cli_simulate.json" -q
cat > "$tmp/compare.py" <<'PY'
# compare.py DIR TAG: DIR/TAG_{theory,simulate}.json against DIR/cli_{theory,simulate}.json
import json, sys
d, tag = sys.argv[1], sys.argv[2]
def load(n): return json.load(open(f"{d}/{n}.json"))
for eng, tol in (("theory", 1e-12), ("simulate", 0.0)):
    a, c = load(f"{tag}_{eng}"), load(f"cli_{eng}")
    if a["spec"] != c["spec"]: sys.exit(f"{eng}: resolved specs differ:\n{a['spec']}\n{c['spec']}")
    if a["columns"] != c["columns"]: sys.exit(f"{eng}: columns differ: {a['columns']} vs {c['columns']}")
    ra, rc = a["layers"], c["layers"]
    if len(ra) != len(rc): sys.exit(f"{eng}: {len(ra)} layers in-process, {len(rc)} through the CLI")
    worst, n = 0.0, 0
    for x, y in zip(ra, rc):
        for k in a["columns"]:
            u, v = x[k], y[k]
            if u is None or v is None:
                if (u is None) != (v is None): sys.exit(f"{eng}: layer {x['layer']} {k}: {u} in-process, {v} CLI")
                continue
            n += 1
            if tol == 0.0 and u != v:
                sys.exit(f"{eng}: layer {x['layer']} {k}: {u!r} in-process != {v!r} through the CLI (bitwise)")
            worst = max(worst, abs(u - v) / max(abs(v), 1e-300))
    if n == 0: sys.exit(f"{eng}: no numbers compared")
    if worst > tol: sys.exit(f"{eng}: max relative difference {worst:.3g} > {tol:g}")
    print(f"{tag} {eng}: {n} numbers, max relative difference in-process vs CLI {worst:.3g}"
          + (" (bitwise equal)" if tol == 0.0 else f" (limit {tol:g})"))
PY
python3 "$tmp/compare.py" "$tmp" api || fail "the installed library's profiles differ from the CLI's"

# 4b. report_from_toml through the installed library (exceptions cross it by type) equals
#     `sigprop report` on the same config: every file but versions.json (the CLI's names MPI)
cat > "$tmp/rep.toml" <<'TOML'
[stack]
tokens = 4
width = 16
heads = 2
qk_scale = "1/dh"
[sweep]
stack.depth = [2, 3]
[engines.theory]
[engines.simulate]
samples = 4
TOML
cat > "$tmp/rep.cpp" <<'CPP'
#include <sigprop/sigprop.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
int main(int, char** argv) {
  std::ifstream in(argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  sigprop::api::ReportSettings s;
  s.out = argv[2];
  s.figures = false;
  try {
    sigprop::api::report_from_toml(text.str(), s, [](double, std::string_view) { return false; }, argv[1]);
    return 1;
  } catch (const sigprop::CancelledError&) {
  }
  const auto r = sigprop::api::report_from_toml(text.str(), s, nullptr, argv[1]);
  std::printf("report_from_toml: %d cells, %d jobs -> %s\n", r.cells, r.jobs, r.report_md.c_str());
  return r.jobs == 4 ? 0 : 1;
}
CPP
"$cxx" -std=c++20 -I"$prefix/include" "$tmp/rep.cpp" -L"$prefix/lib" -lsigprop -Wl,-rpath,"$prefix/lib" \
  -o "$tmp/rep" || fail "a report_from_toml consumer does not build against the prefix"
"$tmp/rep" "$tmp/rep.toml" "$tmp/rep_api" || fail "report_from_toml through the installed library"
"$cli" report "$tmp/rep.toml" -o "$tmp/rep_cli" --no-figures -q -j 1 > /dev/null 2>&1 || fail "sigprop report"
diff -r -x versions.json -x .sigprop.lock -x '*.timing.json' "$tmp/rep_api" "$tmp/rep_cli" > "$tmp/rep.diff" \
  || { head -20 "$tmp/rep.diff"; fail "report_from_toml's folder differs from sigprop report's"; }
echo "report: the installed library's report folder equals sigprop report's (but versions.json and the jobs' *.timing.json)"

# check_c_theory LABEL CLI_JSON OUTPUT...: the "layer grad_var rho" rows of the C ABI examples equal
# `sigprop theory --json` (CLI_JSON) to 1e-12 (relative).
check_c_theory() {
  python3 - "$@" <<'PY'
import json, math, sys
label = sys.argv[1]
cli = json.load(open(sys.argv[2]))["layers"]
for path in sys.argv[3:]:
    rows = [line.split() for line in open(path) if line[0].isdigit()]
    if len(rows) != len(cli): sys.exit(f"{path}: {len(rows)} layers, the CLI has {len(cli)}")
    worst, n = 0.0, 0
    for row, ref in zip(rows, cli):
        if int(row[0]) != ref["layer"]: sys.exit(f"{path}: layer {row[0]} where the CLI has {ref['layer']}")
        for k, text in zip(("grad_var", "rho"), row[1:]):
            u, v = float(text), ref[k]
            if v is None or math.isnan(u):
                if not (v is None and math.isnan(u)): sys.exit(f"{path}: layer {row[0]} {k}: {u} vs CLI {v}")
                continue
            n += 1
            worst = max(worst, abs(u - v) / max(abs(v), 1e-300))
    if n == 0: sys.exit(f"{path}: no numbers compared")
    if worst > 1e-12: sys.exit(f"{path}: max relative difference {worst:.3g} > 1e-12 against sigprop theory --json")
    print(f"{label} ({path.rsplit('/', 1)[1]}): {n} numbers, max relative difference vs CLI {worst:.3g} (limit 1e-12)")
PY
}

# 4c. the C ABI from C (plain cc, pkg-config) and Fortran (gfortran, iso_c_binding)
if command -v pkg-config > /dev/null; then
  pc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@" sigprop; }
  cflags=$(pc --cflags) libs=$(pc --libs) libdir=$(pc --variable=libdir)
else  # the same flags by hand
  cflags="-I$prefix/include" libs="-L$prefix/lib -lsigprop" libdir=$prefix/lib
fi
csets=(stack.depth=24 stack.width=64 stack.qk_scale=1/dh input.rho0=0.2)
# cc warns that the .pc file's -std=c++20 (for the C++ headers) is not for C: harmless.
# shellcheck disable=SC2086
env -u CFLAGS -u LDFLAGS "$cc" -O2 "$src/examples/embed/depth_profile.c" $cflags $libs -Wl,-rpath,"$libdir" \
  -o "$tmp/depth_profile_c" 2> "$tmp/cc.log" || { cat "$tmp/cc.log"; fail "building examples/embed/depth_profile.c with $cc"; }
"$tmp/depth_profile_c" "$src/examples/default.toml" "${csets[@]}" > "$tmp/c_theory.txt" \
  || fail "depth_profile_c failed"
"$cli" theory "$src/examples/default.toml" "${csets[@]/#/--set=}" --json "$tmp/cli_c_theory.json" -q
outs=("$tmp/c_theory.txt")
if command -v gfortran > /dev/null; then
  (cd "$tmp" && env -u FFLAGS -u LDFLAGS gfortran -O2 "$src/examples/embed/sigprop_f.f90" "$src/examples/embed/depth_profile.f90" \
     $libs -Wl,-rpath,"$libdir" -o "$tmp/depth_profile_f" > "$tmp/fc.log" 2>&1) \
    || { cat "$tmp/fc.log"; fail "building examples/embed/depth_profile.f90 with gfortran"; }
  "$tmp/depth_profile_f" "$src/examples/default.toml" "${csets[@]}" > "$tmp/f_theory.txt" \
    || fail "depth_profile_f failed"
  outs+=("$tmp/f_theory.txt")
else
  echo "C ABI: no gfortran, the Fortran example is not built"
fi
check_c_theory "C ABI" "$tmp/cli_c_theory.json" "${outs[@]}"

# 4s. the static library (SIGPROP_STATIC): libsigprop.a holds every object the facade needs
#     (the whole archive links with only its declared dependencies), the C example links it with
#     plain cc through `pkg-config --cflags --libs sigprop-static` and a CMake consumer through
#     sigprop::sigprop_static with nothing else; neither loads libsigprop.so, and both print
#     `sigprop theory --json`'s grad_var and rho to 1e-12 (relative).
if [[ -f "$build/lib/libsigprop.a" ]]; then
  [[ -f "$prefix/lib/libsigprop.a" && -f "$prefix/lib/cmake/sigprop/sigpropStaticTargets.cmake" ]] \
    || fail "libsigprop.a or sigpropStaticTargets.cmake not installed (the build made libsigprop.a)"
  sdeps="-lfmt -ltomlplusplus -lm -ldl"
  if command -v pkg-config > /dev/null; then
    [[ -f "$prefix/lib/pkgconfig/sigprop-static.pc" ]] || fail "sigprop-static.pc not installed"
    spc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@" sigprop-static; }
    scflags=$(spc --cflags) slibs=$(spc --libs)
    sdeps=$(pkg-config --libs fmt tomlplusplus)" -lm -ldl"
  else  # the same flags by hand
    scflags="-I$prefix/include" slibs="$prefix/lib/libsigprop.a -lstdc++ $sdeps"
  fi
  printf 'int main() { return 0; }\n' > "$tmp/whole.cpp"
  # shellcheck disable=SC2086
  "$cxx" "$tmp/whole.cpp" -Wl,--whole-archive "$prefix/lib/libsigprop.a" -Wl,--no-whole-archive $sdeps \
    -o "$tmp/whole" 2> "$tmp/whole.log" \
    || { head -20 "$tmp/whole.log"; fail "libsigprop.a does not link whole with $sdeps (an internal library missing from api/CMakeLists.txt's sigprop_static, or a link dependency)"; }
  # shellcheck disable=SC2086
  env -u CFLAGS -u LDFLAGS "${CC:-cc}" -O2 "$src/examples/embed/depth_profile.c" $scflags $slibs \
    -o "$tmp/depth_profile_cs" 2> "$tmp/ccs.log" \
    || { cat "$tmp/ccs.log"; fail "building examples/embed/depth_profile.c against libsigprop.a ($scflags $slibs)"; }
  mkdir -p "$tmp/sx"
  cat > "$tmp/sx/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.22)
project(sigprop_static_consumer LANGUAGES C CXX)
find_package(sigprop 0.1 REQUIRED COMPONENTS static)
add_executable(depth_profile_c "$src/examples/embed/depth_profile.c")
target_link_libraries(depth_profile_c PRIVATE sigprop::sigprop_static)
EOF
  gen=()
  command -v ninja > /dev/null && gen=(-G Ninja)
  env -u CFLAGS -u CXXFLAGS -u LDFLAGS cmake -S "$tmp/sx" -B "$tmp/sx/b" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/sx.log" 2>&1 \
    || { cat "$tmp/sx.log"; fail "configuring a consumer of sigprop::sigprop_static"; }
  cmake --build "$tmp/sx/b" > "$tmp/sxb.log" 2>&1 || { cat "$tmp/sxb.log"; fail "building a consumer of sigprop::sigprop_static"; }
  for exe in "$tmp/depth_profile_cs" "$tmp/sx/b/depth_profile_c"; do
    deps=$(ldd "$exe")
    if grep -E 'libsigprop' <<< "$deps"; then fail "$exe, linked against libsigprop.a, loads a libsigprop library"; fi
  done
  "$tmp/depth_profile_cs" "$src/examples/default.toml" "${csets[@]}" > "$tmp/cs_theory.txt" || fail "depth_profile_c (pkg-config, static) failed"
  "$tmp/sx/b/depth_profile_c" "$src/examples/default.toml" "${csets[@]}" > "$tmp/cm_theory.txt" \
    || fail "depth_profile_c (sigprop::sigprop_static) failed"
  check_c_theory static "$tmp/cli_c_theory.json" "$tmp/cs_theory.txt" "$tmp/cm_theory.txt"
  echo "static: libsigprop.a links whole; the C example through sigprop-static.pc ($slibs) and through" \
    "sigprop::sigprop_static loads no libsigprop.so"
else
  echo "static: this build has no libsigprop.a (SIGPROP_STATIC=OFF), not checked"
fi

# 5. no CUDA in a CPU-only consumer
lib_deps=$(ldd "$lib")  # not piped into grep -q: its early exit would fail the pipe (pipefail)
if grep -E 'libcudart|libcublas|libcusolver' <<< "$lib_deps"; then
  fail "libsigprop.so links a CUDA library (only the plug-in libsigprop_cuda.so may)"
fi
ex_deps=$(ldd "$tmp/ex/depth_profile")
if grep -E 'libcudart|libcublas|libcusolver' <<< "$ex_deps"; then fail "the example links CUDA"; fi
echo "ldd: neither libsigprop.so nor the example links a CUDA library"

# 6. add_subdirectory from the checkout: configure (tests, bench and install rules default off
#    when sigprop is not the top-level project), check the consumer's compile line (C++20 and
#    include/ arrive as usage requirements of sigprop::sigprop; the repository root, i.e. the
#    internal headers, does not; no -march anywhere), then build the library and the consumer
#    through add_subdirectory with plain flags, run it, and compare its profiles with the CLI's
#    exactly as step 4 does. Building compiles the library a second time (a few minutes on two
#    cores); SIGPROP_EMBED_FULL=0 stops after the compile-line checks, for quick local runs.
gen=()
command -v ninja > /dev/null && gen=(-G Ninja)
env -u CXXFLAGS -u LDFLAGS cmake -S "$src/examples/embed" -B "$tmp/sub" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="" -DSIGPROP_SOURCE_DIR="$src" -DSIGPROP_ENABLE_CUDA=OFF \
  > "$tmp/sub.log" 2>&1 || { cat "$tmp/sub.log"; fail "configuring examples/embed with add_subdirectory"; }
grep -q 'SIGPROP_BUILD_TESTS:BOOL=OFF' "$tmp/sub/CMakeCache.txt" || fail "add_subdirectory: tests default on"
grep -q 'SIGPROP_BUILD_BENCH:BOOL=OFF' "$tmp/sub/CMakeCache.txt" || fail "add_subdirectory: benchmarks default on"
if [[ ${#gen[@]} -gt 0 ]]; then
  obj=CMakeFiles/depth_profile.dir/depth_profile.cpp.o
  line=$(ninja -C "$tmp/sub" -t commands "$obj" | tail -1)
  grep -qE -- '-std=(c|gnu)\+\+(20|2a)' <<< "$line" || fail "add_subdirectory: the consumer's compile line has no C++20: $line"
  grep -qE -- "(-I|-isystem )$src/include( |$)" <<< "$line" \
    || fail "add_subdirectory: the consumer's compile line lacks $src/include: $line"
  if grep -qE -- "(-I|-isystem )$src( |$)" <<< "$line"; then
    fail "add_subdirectory: the repository root (internal headers) reaches the consumer: $line"
  fi
  if ninja -C "$tmp/sub" -t compdb | grep -q -- '-march'; then
    fail "add_subdirectory: a compile line has -march (SIGPROP_NATIVE is OFF by default)"
  fi
  echo "add_subdirectory: configures (tests, bench, install rules off); the consumer compiles with C++20 and" \
    "include/ from the usage requirements, no -march anywhere"
else
  grep -rq -- '-march' "$tmp/sub" --include=flags.make && fail "add_subdirectory: a compile line has -march"
fi
if [[ "${SIGPROP_EMBED_FULL:-1}" == 0 ]]; then
  echo "add_subdirectory: SIGPROP_EMBED_FULL=0, so the library is not built, linked or run through add_subdirectory"
else
  start=$SECONDS
  cmake --build "$tmp/sub" --target depth_profile -j "$(nproc)" > "$tmp/subb.log" 2>&1 \
    || { tail -30 "$tmp/subb.log"; fail "building examples/embed with add_subdirectory"; }
  "$tmp/sub/depth_profile" "$tmp/sub_theory.json" "$tmp/sub_simulate.json" > /dev/null \
    || fail "the add_subdirectory build of depth_profile failed to run"
  python3 "$tmp/compare.py" "$tmp" sub || fail "the add_subdirectory build's profiles differ from the CLI's"
  echo "add_subdirectory: library and consumer built with plain flags in $((SECONDS - start)) s, ran, profiles equal the CLI's"
fi
echo "embed_install: OK"
