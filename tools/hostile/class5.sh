#!/usr/bin/env bash
# Class 5: integer overflow. Derived sizes are 64-bit and range-checked; seeds are decimal
# whole numbers in [0, 2^64 - 1]; phase grid counts are whole numbers.
source "$(dirname "$0")/lib.sh"
probe "mlp_ratio 268435457 at width 16 (2^32 + 16 hidden units) is refused" 2 "stack.mlp_ratio" -- \
  "$SIGPROP" theory --set stack.width=16 --set stack.heads=1 --set stack.mlp_ratio=268435457
probe "the same in simulate" 2 "stack.mlp_ratio" -- \
  "$SIGPROP" simulate --set stack.width=16 --set stack.heads=1 --set stack.mlp_ratio=268435457 --samples 2 --seed 1
head -c 20000 /dev/urandom | base64 > corpus.txt
probe "the same in train" 2 "stack.mlp_ratio" -- \
  "$SIGPROP" train --corpus corpus.txt --out tr --set stack.width=16 --set stack.heads=1 --set stack.mlp_ratio=268435457
for cmd in "theory --set stack.depth=2" "simulate --samples 2 --set stack.depth=1 --set stack.width=8 --set stack.heads=2" \
           "ode --kind clustering --points 2" "spectrum --set stack.depth=2 --set stack.blocks=dense --set stack.residual=false --set stack.norm=none"; do
  for seed in -1 18446744073709551616 1e3 0x10 1.5; do
    # shellcheck disable=SC2086
    probe "${cmd%% *} --seed $seed is an error" nonzero "seed" -- "$SIGPROP" $cmd --seed "$seed"
  done
done
probe "train --seed -1 is an error" nonzero "seed" -- "$SIGPROP" train --corpus corpus.txt --out tr --seed -1
probe "validate --seed -1 is an error" nonzero "seed" -- "$SIGPROP" validate --checkpoint x.safetensors --corpus corpus.txt --seed -1
probe "the largest seed is accepted" 0 -- "$SIGPROP" theory --set stack.depth=2 --seed 18446744073709551615 -q
for n in 4.5 3e9 -3 0x10 ""; do
  probe "phase grid count '$n' is an error" 2 "sigma-w2" -- "$SIGPROP" phase --sigma-w2 "0.5:4:$n" --sigma-b2 0:0.1:2
done
probe "phase with whole counts runs" 0 -- "$SIGPROP" phase --sigma-w2 0.5:4:3 --sigma-b2 0:0.1:2
finish
