#!/usr/bin/env bash
# Class 6: two runs on one output folder (report, train, study): the second is refused, naming
# the folder, and the first finishes with all its files.
. "$(dirname "$0")/lib.sh"
S=$SIGPROP
CORPUS=/usr/share/common-licenses/GPL-3
TINY="--set stack.depth=1 --set stack.width=16 --set stack.heads=2 --set stack.tokens=16 --batch 2 --threads 1 -q"

cat > rep.toml <<'TOML'
[stack]
tokens = 8
width = 32
heads = 2
[sweep]
stack.depth = [4, 8, 16, 32]
[engines.theory]
attn_samples = 256
error_batches = 0
[engines.simulate]
samples = 16
seed = 1
TOML
"$S" report rep.toml -q --jobs 1 --out rep > rep1.out 2> rep1.err &
first=$!
for _ in $(seq 1 50); do [ -e rep/.sigprop.lock ] && break; sleep 0.1; done
probe "a second report on the same --out is refused" 2 "another sigprop run.*|rep.*another" -- "$S" report rep.toml -q --jobs 1 --out rep
wait $first; RC=$?
echo "== [$HOSTILE_CLASS] the first report finishes"; echo "(background report exit $RC)"
verdict "first report exit 0" $RC "the first report failed: $(head -c 300 rep1.err)"
check "the first report drew its figures (or says why not)" bash -c "ls rep/figures/*.svg > /dev/null 2>&1 || grep -q 'not drawn' rep1.err"
check "index.html written" test -s rep/index.html

"$S" train --corpus "$CORPUS" --out tr --steps 100000 $TINY > tr1.out 2> tr1.err &
first=$!
for _ in $(seq 1 50); do [ -e tr/.sigprop.lock ] && break; sleep 0.1; done
# shellcheck disable=SC2086
probe "a second train on the same --out is refused" 2 "another sigprop run" -- "$S" train --corpus "$CORPUS" --out tr --steps 100000 $TINY
kill -TERM $first 2>/dev/null; wait $first 2>/dev/null
"$S" study --corpus "$CORPUS" --out st --depths 1,2 --steps 100000 --eval-tokens 512 --no-figures $TINY > st1.out 2> st1.err &
first=$!
for _ in $(seq 1 50); do [ -e st/.sigprop.lock ] && break; sleep 0.1; done
# shellcheck disable=SC2086
probe "a second study on the same --out is refused" 2 "another sigprop run" -- "$S" study --corpus "$CORPUS" --out st --depths 1,2 --steps 100000 --eval-tokens 512 --no-figures $TINY
kill -TERM $first 2>/dev/null; wait $first 2>/dev/null
# the lock dies with its holder: a run after a kill -9 is not refused
"$S" train --corpus "$CORPUS" --out tk --steps 100000 $TINY > /dev/null 2>&1 &
first=$!
for _ in $(seq 1 50); do [ -e tk/.sigprop.lock ] && break; sleep 0.1; done
kill -KILL $first; wait $first 2>/dev/null
# shellcheck disable=SC2086
HOSTILE_TIMEOUT=3 probe "after kill -9 of the holder the folder is free (the resumed run is still training after 3 s: exit 124)" 124 -- "$S" train --corpus "$CORPUS" --out tk --steps 100000 $TINY
finish
