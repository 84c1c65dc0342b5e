#!/usr/bin/env bash
# Class 9: resuming train when loss.csv is missing, damaged or truncated: the rows the
# checkpoints hold are rebuilt, the lost ones named; never silently dropped.
. "$(dirname "$0")/lib.sh"
S=$SIGPROP
CORPUS=/usr/share/common-licenses/GPL-3
BASE=(train --corpus "$CORPUS" --checkpoint-every 2 --set stack.depth=1 --set stack.width=16
       --set stack.heads=2 --set stack.tokens=16 --batch 2 --threads 1 --val-every 2 -q)
TRAIN=("${BASE[@]}" --steps 6)
rows() { grep -c '^[0-9]' "$1"; }
"$S" "${TRAIN[@]}" --out full > /dev/null 2>&1
cp full/loss.csv full.csv

rm full/loss.csv
probe "finished run, loss.csv deleted: rebuilt, lost steps named" 0 "loss.csv is missing.*rebuilt 3 row.*steps 0, 2, 4" -- "$S" "${TRAIN[@]}" --out full
check "loss.csv exists again with the rebuilt rows" test "$(rows full/loss.csv)" -ge 3
check "rebuilt train loss of step 5 equals the original" bash -c "[ \"\$(grep '^5,' full/loss.csv | cut -d, -f3)\" = \"\$(grep '^5,' full.csv | cut -d, -f3)\" ]"

cp full.csv full/loss.csv
printf '\x00\xff garbage\n' > full/loss.csv
probe "loss.csv replaced by garbage: warned, rebuilt" 0 "lacks 6 of the 6 rows|rebuilt" -- "$S" "${TRAIN[@]}" --out full

head -3 full.csv > full/loss.csv
probe "loss.csv truncated to 2 rows: the rest rebuilt or named" 0 "lacks 4 of the 6 rows" -- "$S" "${TRAIN[@]}" --out full
check "no row of the kept part was lost" bash -c "grep -q '^0,' full/loss.csv && grep -q '^1,' full/loss.csv"

# An interrupted run (kill -9 after its first checkpoints), loss.csv deleted, then resumed.
LONG=("${BASE[@]}" --steps 300)
"$S" "${LONG[@]}" --out part > /dev/null 2>&1 &
pid=$!
for _ in $(seq 1 200); do [ -e part/ckpt_step4.safetensors ] && break; sleep 0.05; done
kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
rm -f part/loss.csv
probe "resume after kill -9 with loss.csv deleted: warned, lost steps named" 0 "loss.csv is missing.*rebuilt" -- "$S" "${LONG[@]}" --out part
check "loss.csv covers every step again except the named ones" test "$(rows part/loss.csv)" -ge 150
finish
