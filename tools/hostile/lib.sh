# Shared conventions of the hostile-input probes (tools/hostile/classN.sh). Sourced, not run.
#
# Each classN.sh sources this file, calls `probe` (or `check`) once per probe and ends with
# `finish`. A probe prints its command, its exit code and PASS or FAIL, on one block:
#   == [class1] simulate --json through a symlink writes the target
#   $ sigprop simulate --samples 2 --seed 1 --json link.json
#   exit 0 (want 0); PASS
# The runner (tools/hostile/run.sh) runs every classN.sh and exits non-zero on any FAIL.
#
# Environment:
#   SIGPROP      the binary (default: build/cli/sigprop from the repository root)
#   HOSTILE_TMP  scratch folder (default: a fresh mktemp -d, removed at the end)
#   HOSTILE_TIMEOUT  seconds before a probe counts as hung (default 60); exit 124 then
# Needs no root and no network.

set -u
HOSTILE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIGPROP=${SIGPROP:-$HOSTILE_ROOT/build/cli/sigprop}
case "$SIGPROP" in /*) ;; *) SIGPROP=$PWD/$SIGPROP ;; esac
[ -x "$SIGPROP" ] || { echo "hostile: $SIGPROP is not an executable (build it, or set SIGPROP)"; exit 2; }
HOSTILE_TIMEOUT=${HOSTILE_TIMEOUT:-60}
HOSTILE_CLASS=${HOSTILE_CLASS:-$(basename "$0" .sh)}
if [ -z "${HOSTILE_TMP:-}" ]; then
  HOSTILE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sigprop-hostile.XXXXXX")
  trap 'rm -rf "$HOSTILE_TMP"' EXIT
fi
T=$HOSTILE_TMP/$HOSTILE_CLASS
mkdir -p "$T"
cd "$T" || exit 2
HOSTILE_PASS=0
HOSTILE_FAIL=0
OUT=$T/.out   # stdout of the last probe
ERR=$T/.err   # stderr of the last probe
RC=0          # exit code of the last probe

# run CMD...: runs CMD under the timeout, stdout in $OUT, stderr in $ERR, exit code in $RC.
run() {
  echo "\$ $*" | cut -c1-300
  timeout -k 5 "$HOSTILE_TIMEOUT" "$@" > "$OUT" 2> "$ERR" < /dev/null
  RC=$?
}

# verdict TITLE OK [WHY]: prints and counts one verdict (OK is 0 for PASS).
verdict() {
  local title=$1 ok=$2 why=${3:-}
  if [ "$ok" -eq 0 ]; then
    echo "exit $RC; PASS"
    HOSTILE_PASS=$((HOSTILE_PASS + 1))
  else
    echo "exit $RC; FAIL: $why"
    echo "  stderr: $(head -c 400 "$ERR" | tr '\n' ' ')"
    HOSTILE_FAIL=$((HOSTILE_FAIL + 1))
  fi
}

# probe TITLE WANT_RC [GREP_STDERR] -- CMD...: runs CMD; PASS when its exit code is WANT_RC
# (a number, or "nonzero") and, if GREP_STDERR is given, stderr matches it (grep -E).
probe() {
  local title=$1 want=$2 pat=""
  shift 2
  if [ "$1" != "--" ]; then pat=$1; shift; fi
  shift  # --
  echo "== [$HOSTILE_CLASS] $title"
  run "$@"
  local ok=0 why=""
  if [ "$want" = nonzero ]; then
    if [ "$RC" -eq 0 ] || [ "$RC" -ge 124 ]; then ok=1; why="want a clean non-zero exit"; fi
  elif [ "$RC" -ne "$want" ]; then
    ok=1; why="want exit $want"
  fi
  if [ $ok -eq 0 ] && [ -n "$pat" ] && ! grep -Eq -- "$pat" "$ERR"; then ok=1; why="stderr does not match /$pat/"; fi
  verdict "$title" $ok "$why"
}

# check TITLE CONDITION...: an extra verdict on the state a probe left (files, links):
#   check "link still a link" test -L link.json
check() {
  local title=$1
  shift
  echo "== [$HOSTILE_CLASS] $title"
  echo "? $*"
  if "$@"; then verdict "$title" 0; else verdict "$title" 1 "condition is false"; fi
}

# finish: prints the class's tally; exit code 1 when any probe failed.
finish() {
  echo "-- [$HOSTILE_CLASS] $HOSTILE_PASS passed, $HOSTILE_FAIL failed"
  [ "$HOSTILE_FAIL" -eq 0 ]
}
