#!/usr/bin/env bash
# Class 3: a small checkpoint whose metadata claims a huge model. The claim is checked against
# the tensors (count, then every shape) before the model is allocated. `validate` reports a
# checkpoint that does not load as a bad --checkpoint value: exit 2.
source "$(dirname "$0")/lib.sh"
head -c 20000 /dev/urandom | base64 > corpus.txt
run "$SIGPROP" train --corpus corpus.txt --out small --set stack.depth=2 --set stack.width=32 --set stack.heads=4 \
  --set stack.tokens=16 --steps 1 --batch 2 --val-batches 1
ck=small/final.safetensors
# Rewrite the "sigprop.model" metadata in place of the header (python3: the header is JSON).
claim() {  # claim OUT KEY=VALUE...: a copy of $ck whose metadata declares other stack values
  python3 - "$ck" "$@" <<'PY'
import json, struct, sys
src, out, *sets = sys.argv[1:]
b = open(src, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
m = json.loads(h['__metadata__']['sigprop.model'])
for kv in sets:
    k, v = kv.split('='); t, key = k.split('.'); m[t][key] = json.loads(v)
h['__metadata__']['sigprop.model'] = json.dumps(m)
hb = json.dumps(h).encode(); hb += b' ' * (-len(hb) % 8)
open(out, 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
}
if [ -f "$ck" ] && command -v python3 > /dev/null; then
  claim huge.safetensors stack.depth=200 stack.width=2048 stack.heads=16
  probe "a 200 x 2048 claim in a small file is refused before allocating (ulimit -d 1 GiB)" 2 \
    "declares .* parameters .*stack.depth = 200.*hold only" -- \
    bash -c "ulimit -d 1048576; exec \"$SIGPROP\" validate --checkpoint huge.safetensors --corpus corpus.txt --samples 0 --ensemble 0"
  claim ratio.safetensors stack.mlp_ratio=268435457 stack.width=16 stack.heads=1
  probe "an mlp_ratio that would wrap an int is refused" 2 "mlp_ratio" -- \
    "$SIGPROP" validate --checkpoint ratio.safetensors --corpus corpus.txt --samples 0 --ensemble 0
  claim vocab.safetensors model.vocab=4294967297
  probe "a vocab beyond int is refused, not wrapped" 2 "model.vocab" -- \
    "$SIGPROP" validate --checkpoint vocab.safetensors --corpus corpus.txt --samples 0 --ensemble 0
  claim deep.safetensors stack.depth=3
  probe "one layer more than the tensors hold is refused" 2 "hold only|no tensor|missing" -- \
    "$SIGPROP" validate --checkpoint deep.safetensors --corpus corpus.txt --samples 0 --ensemble 0
else
  echo "(class3: no checkpoint or no python3; skipped)"
fi
finish
