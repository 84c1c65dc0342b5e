"""Cost of a theory call from Python: in-process (sigprop.theory, sigprop.theory_many) against the
command line (`sigprop theory --json F -q` through subprocess) and, when given, the C++ facade
itself (examples/embed's theory_calls). A benchmark, not a test; figures in docs/python.md.

    .venv/bin/python tools/python_bench.py --cli build/cli/sigprop --cxx build/embed/theory_calls

The spec is examples/embed's: the default at depth 24 with 1/dh attention (no sampled integral).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

import sigprop

SETS: dict[str, object] = {"stack.depth": 24, "stack.qk_scale": "1/dh"}


def main() -> None:
    ap = argparse.ArgumentParser(description="sigprop theory calls: Python vs the command line")
    ap.add_argument("--calls", type=int, default=1000, help="in-process calls")
    ap.add_argument("--cli-calls", type=int, default=100, help="command-line calls")
    ap.add_argument("--cli", help="the sigprop executable (omit to skip)")
    ap.add_argument("--cxx", help="examples/embed's theory_calls executable (omit to skip)")
    ap.add_argument("--threads", type=int, default=0, help="theory_many threads (0 = all)")
    ap.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                    help="more spec overrides, for every path (e.g. stack.depth=1 to see the binding's overhead)")
    a = ap.parse_args()
    for kv in a.set:
        key, _, value = kv.partition("=")
        SETS[key] = int(value) if value.lstrip("-").isdigit() else value

    spec = sigprop.resolve_spec(SETS)
    sigprop.theory(spec)  # warm-up
    t = time.perf_counter()
    for _ in range(a.calls):
        sigprop.theory(spec)
    py = (time.perf_counter() - t) / a.calls
    print(f"python  sigprop.theory(resolved spec): {a.calls} calls, {1e3 * py:.3f} ms per call")

    t = time.perf_counter()
    for _ in range(a.calls):
        sigprop.theory(SETS)
    py_dict = (time.perf_counter() - t) / a.calls
    print(f"python  sigprop.theory(dict spec):     {a.calls} calls, {1e3 * py_dict:.3f} ms per call")

    t = time.perf_counter()
    sigprop.theory_many([spec] * a.calls, threads=a.threads)
    many = (time.perf_counter() - t) / a.calls
    print(f"python  sigprop.theory_many(threads={a.threads}): {a.calls} specs, {1e3 * many:.3f} ms per spec")

    if a.cxx:
        cxx_sets = [f"{k}={v}" for k, v in SETS.items()]
        out = subprocess.run([a.cxx, str(a.calls), *cxx_sets], check=True, capture_output=True, text=True).stdout.strip()
        print(f"c++     {out}")
    if a.cli:
        sets = [x for k, v in SETS.items() for x in ("--set", f"{k}={v}")]
        with tempfile.TemporaryDirectory() as d:
            f = os.path.join(d, "p.json")
            t = time.perf_counter()
            for _ in range(a.cli_calls):
                subprocess.run([a.cli, "theory", *sets, "--json", f, "-q"], check=True)
            cli = (time.perf_counter() - t) / a.cli_calls
        print(f"cli     sigprop theory --json: {a.cli_calls} calls, {1e3 * cli:.3f} ms per call")


if __name__ == "__main__":
    main()
