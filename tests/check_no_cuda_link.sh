#!/bin/sh
# check_no_cuda_link.sh EXE [PLUGIN]: fails when EXE's dynamic dependencies (ldd) include
# libcudart, libcublas or libcusolver; when PLUGIN is given, also fails unless the plug-in does
# link them (so the check is seen to detect what it looks for). Exit 77 (skip) without ldd.
command -v ldd >/dev/null 2>&1 || { echo "no ldd: skipped"; exit 77; }
[ "$(uname -s)" = Linux ] || { echo "not Linux: skipped"; exit 77; }
pattern='libcu(dart|blas|solver)'
if ldd "$1" | grep -E "$pattern"; then
  echo "FAIL: $1 links CUDA libraries (only the plug-in libsigprop_cuda.so may)"
  exit 1
fi
echo "ok: $1 links no CUDA library"
if [ -n "$2" ]; then
  n=$(ldd "$2" | grep -cE "$pattern")
  [ "$n" -ge 3 ] || { echo "FAIL: the plug-in $2 shows $n of libcudart/libcublas/libcusolver in ldd"; exit 1; }
  echo "ok: the plug-in $2 links them ($n)"
fi
