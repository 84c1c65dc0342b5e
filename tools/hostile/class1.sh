#!/usr/bin/env bash
# Class 1: output paths that are symlinks, special files, empty, colliding, or inputs; killed writes.
. "$(dirname "$0")/lib.sh"
S=$SIGPROP

echo '{"old": true}' > target.json; ln -sf target.json link.json
probe "simulate --json through a symlink" 0 -- "$S" simulate --samples 2 --seed 1 --set stack.depth=2 -q --json link.json
check "link.json is still a symlink" test -L link.json
check "target.json got the profile" grep -q '"engine"' target.json

mkdir -p sub; echo old > sub/t.csv; ln -sf sub/t.csv rel.csv; ln -sf rel.csv chain.csv
probe "theory --csv through a chain of relative links" 0 -- "$S" theory -q --set stack.depth=2 --csv chain.csv
check "chain.csv and rel.csv stay links" test -L chain.csv -a -L rel.csv
check "sub/t.csv got the CSV" grep -q '^layer' sub/t.csv

ln -sf nowhere/x.json dangling.json
probe "a dangling link into a missing folder is an error, not a replaced link" nonzero "dangling.json" -- "$S" theory -q --json dangling.json
check "dangling.json is still a link" test -L dangling.json

ln -sf loop2 loop1; ln -sf loop1 loop2
probe "a link loop is a named error" nonzero "symbolic links" -- "$S" theory -q --json loop1

probe "--json /dev/null is written in place" 0 -- "$S" theory -q --set stack.depth=2 --json /dev/null
check "/dev/null is still a character device" test -c /dev/null
probe "--json /dev/stdout (a pipe here) is written in place" 0 -- "$S" theory -q --set stack.depth=2 --json /dev/stdout
check "the profile came out on stdout" grep -q '"engine"' "$OUT"
echo first > app.log
"$S" theory -q --set stack.depth=2 --json /dev/stdout >> app.log 2> /dev/null
check "--json /dev/stdout >> log appends (the log's first line kept)" bash -c "head -1 app.log | grep -q first && grep -q '\"engine\"' app.log"
check "app.log is still a regular file" test -f app.log
mkfifo fifo; (cat fifo > fifo.out &) ; sleep 0.2
probe "--csv into a FIFO is written through it" 0 -- "$S" theory -q --set stack.depth=2 --csv fifo
sleep 0.2
check "the FIFO is still a FIFO" test -p fifo
check "the reader got the CSV" grep -q '^layer' fifo.out

mkdir -p adir
probe "--json naming a folder is an error" nonzero "folder" -- "$S" theory -q --json adir
for opt in "theory --json" "theory --csv" "phase --csv" "spectrum --json" "ode --json" "report --out" "train --corpus /etc/hostname --out" "study --corpus /etc/hostname --out" "simulate --samples 2 --seed 1 --json" "validate --checkpoint x --corpus y --json"; do
  # shellcheck disable=SC2086
  probe "empty path: $opt \"\"" 2 "empty value" -- "$S" $opt ""
done

printf '[stack]\ndepth = 2\n' > spec.toml; cp spec.toml spec.orig
probe "--json and --csv on one path" 2 "same file" -- "$S" theory --json same.out --csv same.out
probe "--json and --csv on one file under two names" 2 "same file" -- "$S" theory --json ./x/../same2.out --csv same2.out
probe "--json onto the spec" 2 "is the input" -- "$S" theory spec.toml --json spec.toml
ln -sf spec.toml speclink.toml
probe "--csv onto the spec through a symlink" 2 "is the input" -- "$S" ode spec.toml --csv speclink.toml
probe "spectrum --density-csv onto --csv" 2 "same file" -- "$S" spectrum --csv d.csv --density-csv d.csv
echo text > corpus.txt; cp corpus.txt corpus.orig
probe "validate --json onto the corpus" 2 "is the input" -- "$S" validate --checkpoint none.safetensors --corpus corpus.txt --json corpus.txt
check "spec untouched" cmp -s spec.toml spec.orig
check "corpus untouched" cmp -s corpus.txt corpus.orig

# A write killed before its rename leaves one temporary; the next write reuses it (no pile-up).
echo partial > .killed.json.sigprop-tmp
for i in 1 2 3; do "$S" theory -q --set stack.depth=2 --json killed.json > /dev/null 2>&1; done
probe "a killed write's temporary is reused" 0 -- "$S" theory -q --set stack.depth=2 --json killed.json
check "no temporary file is left" test "$(ls -A | grep -c sigprop-tmp)" -eq 0
# Real kills at different moments leave at most one temporary per output name (none with a PID).
for i in 1 2 3 4 5 6 7 8 9 10; do
  "$S" theory -q --set stack.depth=400 --json k2.json --csv k2.csv > /dev/null 2>&1 &
  pid=$!; sleep "0.0$i"; kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
done
check "after 10 x kill -9: at most 2 temporaries (one per output)" test "$(ls -A | grep -c sigprop-tmp)" -le 2
check "after 10 x kill -9: no temporary named by a process id" test "$(ls -A | grep -c 'sigprop-tmp\.[0-9]')" -eq 0

mkdir -p ro; chmod 555 ro
if [ "$(id -u)" != 0 ]; then
  probe "unwritable folder: the error gives the reason (never 'Success')" 1 "Permission denied" -- "$S" theory -q --json ro/x.json
  check "no 'Success' in the message" bash -c "! grep -q Success '$ERR'"
fi
chmod 755 ro
finish
