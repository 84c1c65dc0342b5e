#!/usr/bin/env bash
# Installs the Python package (python/, docs/python.md) into .venv, linking the libsigprop that
# is already built in $1 (default build/): it installs that build to $1/prefix and points the
# package's CMake at it, so only the extension module is compiled (seconds, not the library's
# minutes). scripts/setup.sh runs this; scripts/test.sh reruns it when the build is newer than
# the installed package. A plain `pip install .` (no sigprop_DIR) builds the library from source.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
[ -x .venv/bin/python ] || python3 -m venv .venv
# The test and example tools, and the build backend (installed here so that the build needs no
# isolated environment, nor the network, on reruns).
.venv/bin/pip install -q --disable-pip-version-check numpy pytest mypy matplotlib \
  "scikit-build-core>=0.10" "nanobind>=2.0"
cmake --install "$BUILD_DIR" --prefix "$BUILD_DIR/prefix" > /dev/null
.venv/bin/pip install -q --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall . \
  "-Ccmake.define.sigprop_DIR=$PWD/$BUILD_DIR/prefix/lib/cmake/sigprop"
