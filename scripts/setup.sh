#!/usr/bin/env bash
# Installs what sigprop needs (Debian packages), builds it, and runs the main job on
# the built-in example. Safe to rerun: installed packages are skipped, the build is incremental.
#   scripts/setup.sh            install + build (Release, build/) + the Python package in .venv
#                               + run `sigprop report` (built-in default)
#   SIGPROP_NO_RUN=1 scripts/setup.sh   install + build only
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config
          libeigen3-dev libboost-dev libfmt-dev catch2 libbenchmark-dev libtomlplusplus-dev
          libcli11-dev nlohmann-json3-dev librandom123-dev gnuplot-nox libgnuplot-iostream-dev
          python3 python3-venv
          gfortran  # embed_install builds examples/embed/depth_profile.f90 against the C ABI
          bible-kjv  # sigprop train's default corpus: data/kjv.txt (README "Training on real text")
          libopenmpi-dev openmpi-bin  # sigprop report shares sweep cells among mpirun ranks
          clang libclang-rt-14-dev)  # scripts/fuzz.sh: clang + libFuzzer runtime (libclang_rt.fuzzer)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The training corpus (docs/train.md): the KJV Bible without verse references, 4.4 MB.
if [ ! -s data/kjv.txt ]; then
  echo "== writing data/kjv.txt (bible-kjv $(dpkg-query -W -f='${Version}' bible-kjv-text))"
  mkdir -p data
  bible -f -l 80 Gen1:1-Rev22:21 | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > data/kjv.txt.tmp
  mv data/kjv.txt.tmp data/kjv.txt
fi

BUILD_DIR=${SIGPROP_BUILD_DIR:-build}
echo "== configuring and building in $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SIGPROP_CMAKE_ARGS:-} > /dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"

# The Python package (docs/python.md) in .venv, linking the library just built.
echo "== installing the Python package sigprop into .venv (scripts/python_install.sh)"
scripts/python_install.sh "$BUILD_DIR"

if [ -z "${SIGPROP_NO_RUN:-}" ]; then
  # The main job: the built-in report (examples/report_default.toml), "why does depth give
  # diminishing returns?", theory and Monte Carlo; a few minutes on 2 cores, resumable.
  echo "== sigprop report --out out/report (built-in default; progress on stderr)"
  "$BUILD_DIR/cli/sigprop" report --out out/report
fi
