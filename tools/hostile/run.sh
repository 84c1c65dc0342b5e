#!/usr/bin/env bash
# Re-runs the hostile-input class list of issue 19 (docs/limits.md): every tools/hostile/class*.sh,
# each printing its probes' commands, exit codes and PASS/FAIL verdicts. Exits non-zero when any
# probe failed.   tools/hostile/run.sh [classN ...]     (SIGPROP=path/to/sigprop to pick a binary)
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then classes=("$@"); else
  classes=()
  for f in "$here"/class*.sh; do classes+=("$(basename "$f" .sh)"); done
fi
failed=()
for c in "${classes[@]}"; do
  [ -f "$here/$c.sh" ] || { echo "hostile: no $here/$c.sh"; failed+=("$c"); continue; }
  bash "$here/$c.sh" || failed+=("$c")
  echo
done
echo "hostile: ${#classes[@]} class file(s) run; ${#failed[@]} with failures${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
