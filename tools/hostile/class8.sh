#!/usr/bin/env bash
# Class 8 (sizes half): placeholders never reach output, and every null is named by a warning.
source "$(dirname "$0")/lib.sh"
probe "clustering USA at beta 50 runs" 0 -- "$SIGPROP" ode --kind clustering --variant usa --beta 50 --json usa.json
check "no 1e300 placeholder in its output" bash -c "! grep -Eq '1e\\+?300|1\\.0e\\+?300' usa.json"
check "a null in its output comes with a warning naming the column" python3 -c '
import json, sys
p = json.load(open("usa.json")); w = " | ".join(p["warnings"])
bad = [k for r in p["layers"] for k, v in r.items() if v is None and "non-finite " + k + " first at t =" not in w]
sys.exit(1 if bad else 0)' 
probe "theory at depth 10000, quad order 8" 0 -- \
  "$SIGPROP" theory --set stack.depth=10000 --set stack.qk_scale=1/dh --set stack.activation=tanh --quad-order 8 --json deep.json
check "every null metric of the deep run is named by a warning" python3 -c '
import json, sys
p = json.load(open("deep.json")); w = " | ".join(p["warnings"])
bad = [(r["layer"], k) for r in p["layers"] for k, v in r.items()
       if v is None and not k.endswith("_se") and not (r["layer"] == 0 and k in ("update_ratio", "ang_dist"))
       and "non-finite " + k + " first" not in w and "K_l first" not in w and not (k == "grad_var" and "G_l first" in w)]
print("unexplained nulls:", bad[:5]) if bad else None
sys.exit(1 if bad else 0)'
finish
