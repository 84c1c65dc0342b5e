#!/usr/bin/env bash
# Class 2: accepted inputs that would exhaust memory. Every engine estimates its memory first
# (identical-token MLP/dense stacks need O(1) per layer and are not refused) and refuses with a named error (exit 2) saying how much and which keys; anything that still
# fails to allocate is a message and exit 1, never an abort (134).
source "$(dirname "$0")/lib.sh"
big='would need about'
probe "simulate at width 2^20, explicit weights, refuses (one matrix beyond 32-bit indexing)" 2 "single matrix.*stack.width" -- \
  "$SIGPROP" simulate --set stack.width=1048576 --set stack.heads=1 --set stack.depth=1 --samples 1 --seed 1 \
  --weights-sampling explicit
probe "simulate at width 2^20, conditional weights, refuses under a 1 GiB limit" 2 "$big.*stack.width = 1048576" -- \
  "$SIGPROP" simulate --set stack.width=1048576 --set stack.heads=1 --set stack.depth=1 --samples 1 --seed 1 --max-memory 1G
probe "simulate at width 16384, explicit weights, refuses under a 1 GiB limit" 2 "$big.*stack.width = 16384" -- \
  "$SIGPROP" simulate --set stack.width=16384 --set stack.heads=16 --set stack.depth=4 --samples 4 --seed 1 --max-memory 1G \
  --weights-sampling explicit
probe "simulate at width 16384, conditional weights (O(T d) per block), fits the same limit" 0 -- \
  "$SIGPROP" simulate --set stack.width=16384 --set stack.heads=16 --set stack.depth=4 --samples 4 --seed 1 --max-memory 1G -q
probe "theory at 8192 tokens refuses under a 1 GiB limit" 2 "$big.*stack.tokens = 8192" -- \
  "$SIGPROP" theory --set stack.tokens=8192 --set stack.depth=4 --set stack.qk_scale=1/dh \
  --set stack.blocks=attn+mlp --set stack.activation=relu --max-memory 1G
probe "theory at 8192 tokens and depth 10^6 refuses with the machine's default limit" 2 "$big.*stack.tokens = 8192" -- \
  "$SIGPROP" theory --set stack.tokens=8192 --set stack.depth=1000000 --set stack.qk_scale=1/dh
head -c 20000 /dev/urandom | base64 > corpus.txt
probe "train --batch 10^8 refuses" 2 "$big.*--batch = 100000000" -- \
  "$SIGPROP" train --corpus corpus.txt --out tr --batch 100000000
probe "train with a 2^31-element-class model refuses" 2 "$big" -- \
  "$SIGPROP" train --corpus corpus.txt --out tr2 --set stack.width=65536 --set stack.heads=16 --max-memory 4G
probe "ode clustering with 10^8 points refuses" 2 "$big.*--points = 100000000" -- \
  "$SIGPROP" ode --kind clustering --points 100000000 --max-memory 1G
probe "--max-memory must be a size" 2 "max-memory" -- "$SIGPROP" theory --max-memory 12parsecs
if "$SIGPROP" train --corpus corpus.txt --out tr3 --set stack.depth=1 --set stack.width=16 --set stack.heads=2 \
     --set stack.tokens=8 --steps 1 --batch 2 --val-batches 1 > /dev/null 2>&1; then
  probe "validate --ensemble 10^9 refuses" 2 "$big.*--ensemble = 1000000000" -- \
    "$SIGPROP" validate --checkpoint tr3/final.safetensors --corpus corpus.txt --ensemble 1000000000
fi
if ! ldd "$SIGPROP" 2>/dev/null | grep -q libasan; then  # ASan maps terabytes of shadow (no RLIMIT_DATA)
  probe "an allocation that still fails is exit 1 with a message (ulimit -d 256 MiB)" 1 "out of memory" -- \
    bash -c "ulimit -d 262144; exec \"$SIGPROP\" theory --set stack.tokens=4096 --set stack.depth=2 \
      --set stack.qk_scale=1/dh --set stack.blocks=attn+mlp --set stack.activation=relu --max-memory 0 -q"
fi
finish
