#!/usr/bin/env python3
"""Bias of the GPU backend's precisions against float64 (bench/gpu_check.sh, docs/cuda.md).

Runs `sigprop simulate` on the same spec, seed and samples with --backend cpu --precision
double (the float64 oracle) and --backend cuda --precision float / tf32. The random streams
are identical, so a difference of the Monte Carlo means is the precision's bias alone; it is
reported per metric as the largest |mean_cuda - mean_f64| over layers, relative to the mean
and in units of the float64 run's standard error.

  python3 tools/cuda_bias.py --sigprop build-gpu/cli/sigprop [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SPEC = ["--set", "stack.width=256", "--set", "stack.tokens=32", "--set", "stack.depth=16", "--set", "stack.heads=8"]
METRICS = ["q", "rho", "res", "eff_rank", "update_ratio", "ang_dist", "grad_var"]


def run(sigprop, backend, precision, samples, seed, out):
    cmd = [sigprop, "simulate", *SPEC, "--samples", str(samples), "--seed", str(seed), "--backend", backend,
           "--precision", precision, "-q", "--json", str(out)]
    subprocess.run(cmd, check=True)
    return json.loads(Path(out).read_text())


def column(profile, name):
    """Values of one column over layers 0..L (None where null); Profile JSON keeps rows in "layers"."""
    return [row.get(name) for row in profile["layers"]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigprop", required=True)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ref = run(args.sigprop, "cpu", "double", args.samples, args.seed, Path(tmp) / "f64.json")
        got = {p: run(args.sigprop, "cuda", p, args.samples, args.seed, Path(tmp) / f"{p}.json")
               for p in ("float", "tf32")}
    out = {}
    print(f"bias against float64 (cpu/double), same streams; d=256 T=32 L=16, {args.samples} samples")
    print(f"{'metric':>13} | {'float: max rel':>14} {'max |d|/SE':>10} | {'tf32: max rel':>14} {'max |d|/SE':>10}")
    for m in METRICS:
        r, se = column(ref, m), column(ref, m + "_se")
        line = f"{m:>13} |"
        for p in ("float", "tf32"):
            g = column(got[p], m)
            rel = z = 0.0
            for a, b, s in zip(g, r, se):
                if a is None or b is None:
                    continue
                rel = max(rel, abs(a - b) / max(abs(b), 1e-300))
                if s:
                    z = max(z, abs(a - b) / s)
            out.setdefault(p, {})[m] = {"max_rel": rel, "max_z": z}
            line += f" {rel:>14.3g} {z:>10.3g} |"
        print(line.rstrip("|"))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
