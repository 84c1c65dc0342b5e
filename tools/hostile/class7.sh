#!/usr/bin/env bash
# Class 7: unbounded reads and hangs: corpora that never end or are too big, unreachable ODE
# tolerances, endless ODE solves, huge phase grids. Each must end quickly with a named error.
. "$(dirname "$0")/lib.sh"
S=$SIGPROP
TINY="--set stack.depth=1 --set stack.width=16 --set stack.heads=2 --set stack.tokens=16 --batch 2 --threads 1 -q"
mkfifo corpus.fifo
mkdir -p corpus.dir
truncate -s 1073741825 big.txt   # sparse: 1 GiB + 1 byte, no disk used
# shellcheck disable=SC2086
probe "train --corpus /dev/zero" 2 "not a regular file" -- "$S" train --corpus /dev/zero --out o1 --steps 2 $TINY
probe "validate --corpus /dev/zero (not 'no such file')" 2 "/dev/zero.*not a regular file" -- "$S" validate --checkpoint /dev/null --corpus /dev/zero
# shellcheck disable=SC2086
probe "study --corpus /dev/urandom" 2 "not a regular file" -- "$S" study --corpus /dev/urandom --out o2 --depths 1 --steps 2 $TINY
# shellcheck disable=SC2086
probe "train --corpus FIFO (no writer: must not block)" 2 "not a regular file" -- "$S" train --corpus corpus.fifo --out o3 --steps 2 $TINY
# shellcheck disable=SC2086
probe "train --corpus folder" 2 "is a folder" -- "$S" train --corpus corpus.dir --out o4 --steps 2 $TINY
# shellcheck disable=SC2086
probe "train --corpus over the size cap" 2 "limit of" -- "$S" train --corpus big.txt --out o5 --steps 2 $TINY
probe "validate --corpus missing says no such file" 2 "no such file" -- "$S" validate --checkpoint /dev/null --corpus missing.txt
rm -f big.txt

CONT=(ode --kind continuum --set "stack.branch_scale=1/sqrt(L)")
probe "ode continuum --abs-tol 1e-40 --rel-tol 1e-40" 2 "--rel-tol" -- "$S" "${CONT[@]}" --abs-tol 1e-40 --rel-tol 1e-40 -q
probe "ode clustering --rel-tol 1e-16" 2 "--rel-tol" -- "$S" ode --kind clustering --rel-tol 1e-16 -q
probe "ode clustering --abs-tol nan" nonzero "--abs-tol" -- "$S" ode --kind clustering --abs-tol nan -q
HOSTILE_TIMEOUT=240 probe "ode clustering --t-end 1e300 (default budget: ends in under a minute on an idle core)" 1 "--max-evals.*--t-end|--t-end.*--max-evals" -- "$S" ode --kind clustering --t-end 1e300 -q
probe "ode continuum at the finest allowed tolerances finishes" 0 -- "$S" "${CONT[@]}" --set stack.blocks=mlp --abs-tol 1e-300 --rel-tol 1e-14 -q
probe "ode continuum with a tiny --max-evals stops, naming it" 1 "--max-evals" -- "$S" "${CONT[@]}" --set stack.blocks=mlp --abs-tol 1e-300 --rel-tol 1e-14 --max-evals 50 -q
probe "ode clustering --max-evals 0" 2 "--max-evals" -- "$S" ode --kind clustering --max-evals 0 -q

probe "phase on a 100000 x 100000 grid" 2 "points is more than the limit" -- "$S" phase --sigma-w2 0.5:4:100000 --sigma-b2 0:0.3:100000
probe "phase on a 1001 x 100 grid (just over 10^5 points)" 2 "limit" -- "$S" phase --sigma-w2 0.5:4:1001 --sigma-b2 0:0.3:100
probe "a small phase grid still runs (20 x 1 points)" 0 -- "$S" phase --sigma-w2 0.5:4:20 --sigma-b2 0:0.3:1
finish
