#!/usr/bin/env python3
"""Times neural-tangents' kernel_fn against sigprop's theory engine on the same stacks.

    /tmp/ntvenv/bin/python tools/nt_timing.py [--sigprop build-nt/cli/sigprop] [--depth 1000]
                                              [--budget 60] [--cores 1] [--json FILE]

Stacks (T = 64 tokens, float64 on both sides), the ones NT can express exactly
(see tools/nt_golden.py for the translation and why attention needs mask = none):
  dense_erf       X' = erf(X) W + b, sigma_w2 = 1.76, sigma_b2 = 0.05
  preln_mlp_gelu  X' = X + MLP(LN(X)), GELU
  preln_attnmlp   Pre-LN attn + GELU MLP, qk_scale = 1/dh (uniform attention), mask = none

NT is timed three ways, each on the NNGP kernel only (forward pass, get='nngp'):
  eager        kernel_fn called directly (no jit), after a warm-up call at L = 10, as deep as
               fits in --budget / 2 seconds;
  jit          jax.jit(kernel_fn) of the unrolled stax.serial stack: the first call
               (trace + XLA compile + run) and the best of 3 later calls (run only), at the
               deepest L in {25, 50, 100, 200, 500, 1000} whose compile is predicted to fit in
               --budget seconds;
  jit+scan     NT's per-block kernel_fn inside jax.lax.scan (one block compiled once), at --depth.
sigprop is `sigprop theory --json` (the CLI, one process: full profile = forward kernels,
backward gradient covariances, every metric of MODEL.md §2, JSON written), best of 3 wall
times, at the same depth as each NT row. The engine is single-threaded; by default everything
(NT's XLA included) is pinned to one core (--cores 1) so the ratio compares one core with one.
For each row the final-layer q and rho of NT's kernel are checked against sigprop's profile
(column "q,rho dev"). dense_erf is in the chaotic phase (chi1 = 1.10): beyond ~150 layers NT's
float64 nngp diagonal drifts off its own cov1 (round-off amplified by chi1^l, see the last
test in tests/test_golden_nt.cpp) and the deviation there, ~6e-2 at L >= 350, is NT's error;
sigprop agrees with a 40-digit mpmath recursion to 1e-14.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pin(cores: int) -> None:
    if cores > 0 and hasattr(os, "sched_setaffinity"):
        avail = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(avail[:cores]))
    if cores == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sigprop", default=str(ROOT / "build-nt" / "cli" / "sigprop"), help="sigprop executable")
    ap.add_argument("--depth", type=int, default=1000, help="target depth L")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds allowed for one NT jit compile")
    ap.add_argument("--cores", type=int, default=1, help="CPU cores for both (0 = do not pin)")
    ap.add_argument("--stacks", default="dense_erf,preln_mlp_gelu,preln_attnmlp")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    return ap.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    pin(ARGS.cores)  # before jax starts its thread pools

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nt_golden  # noqa: E402  (the spec -> stax translation, checked by tests/test_golden_nt.cpp)


def stack_spec(name: str, L: int, T: int) -> dict:
    common = {"depth": L, "tokens": T, "norm_eps": 1e-5}
    if name == "dense_erf":
        return nt_golden.make_spec({**common, "blocks": "dense", "norm": "none", "residual": False,
                                    "activation": "erf"}, {"sigma_w2": 1.76, "sigma_b2": 0.05},
                                   {"q0": 1.0, "rho0": 0.1})
    if name == "preln_mlp_gelu":
        return nt_golden.make_spec({**common, "blocks": "mlp", "norm": "pre", "residual": True,
                                    "activation": "gelu"}, {"sigma_w2": 1.0, "sigma_b2": 0.0},
                                   {"q0": 1.0, "rho0": 0.1})
    if name == "preln_attnmlp":
        return nt_golden.make_spec({**common, "blocks": "attn+mlp", "norm": "pre", "residual": True,
                                    "activation": "gelu", "qk_scale": "1/dh", "mask": "none"},
                                   {"sigma_w2": 1.0, "sigma_b2": 0.0, "sigma_qk2": 1.0}, {"q0": 1.0, "rho0": 0.1})
    raise SystemExit(f"unknown stack {name!r}")


def nt_input(spec):
    T = spec["stack"]["tokens"]
    x = math.sqrt(T) * np.linalg.cholesky(nt_golden.input_kernel(spec))
    if spec["stack"]["blocks"] in ("attn", "attn+mlp"):
        x = x.reshape((1, T, T))
    return jnp.asarray(x, dtype=jnp.float64)


def embed():
    return stax.Dense(512, W_std=1.0, b_std=None)


def serial_kernel_fn(spec):
    L = spec["stack"]["depth"]
    _, _, kf = stax.serial(embed(), *[nt_golden.block(spec, l, "ntk") for l in range(1, L + 1)])
    return kf


def scan_kernel_fn(spec):
    """NT's block kernel_fn iterated by lax.scan: compiles one block instead of L."""
    L = spec["stack"]["depth"]
    _, _, head = stax.serial(embed(), nt_golden.block(spec, 1, "ntk"))
    _, _, blk = nt_golden.block(spec, 2, "ntk")  # every block is the same for these stacks

    def run(x):
        k = head(x, None).replace(ntk=None)  # NNGP only from here on, as get='nngp'

        def body(k, _):
            return blk(k), None

        k, _ = jax.lax.scan(body, k, None, length=L - 1)
        return k.nngp

    return run


def as_tokens(k, T):
    return np.asarray(k, dtype=np.float64).reshape((T, T))


def q_rho(K):
    T = K.shape[0]
    d = np.sqrt(np.diag(K))
    C = K / np.outer(d, d)
    return float(np.mean(np.diag(K))), float((C.sum() - np.trace(C)) / (T * (T - 1)))


def block_ready(a):
    return a.block_until_ready() if hasattr(a, "block_until_ready") else a


class Clock:
    """Wall and CPU seconds of a region (CPU: this process, all threads; pinned to --cores)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c


def time_call(f, *a, repeat=3):
    best = (math.inf, math.inf)
    out = None
    for _ in range(repeat):
        with Clock() as c:
            out = block_ready(f(*a))
        best = min(best, (c.cpu, c.wall))
    return {"cpu": best[0], "wall": best[1]}, out


def nt_eager(spec):
    kf = serial_kernel_fn(spec)
    x = nt_input(spec)
    with Clock() as c:
        k = block_ready(kf(x, None, "nngp"))
    return {"cpu": c.cpu, "wall": c.wall}, k


def nt_jit(fn_maker, spec, *, static_get=True):
    """First call (trace + compile + run) and best of 3 later calls (run)."""
    f = fn_maker(spec)
    x = nt_input(spec)
    jf = jax.jit(f, static_argnames="get") if static_get else jax.jit(f)
    call = (lambda: jf(x, None, get="nngp")) if static_get else (lambda: jf(x))
    with Clock() as c:
        block_ready(call())
    run, k = time_call(call)
    return {"cpu": c.cpu, "wall": c.wall}, run, k


def sigprop_run(exe, spec, repeat=3):
    """Best of `repeat` runs of the CLI: CPU seconds of the child (user + sys) and wall seconds."""
    sets = []
    for table, kv in spec.items():
        for key, v in kv.items():
            val = json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")
            sets += ["--set", f"{table}.{key}={val}"]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "p.json"
        cmd = [exe, "theory", "-q", *sets, "--json", str(out)]
        best = (math.inf, math.inf)
        for _ in range(repeat):
            t = time.perf_counter()
            proc = subprocess.Popen(cmd)
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}")
            best = min(best, (ru.ru_utime + ru.ru_stime, wall))
        prof = json.loads(out.read_text())
    last = prof["layers"][-1]
    return {"cpu": best[0], "wall": best[1]}, last["q"], last["rho"]


def main() -> int:
    args = ARGS
    exe = args.sigprop
    if not Path(exe).exists():
        raise SystemExit(f"{exe}: not built (cmake -S . -B build-nt -G Ninja && ninja -C build-nt sigprop)")
    T, Lmax = args.tokens, args.depth
    rows = []
    startup, _, _ = sigprop_run(exe, stack_spec("dense_erf", 1, T))
    print(f"neural-tangents {nt.__version__}, jax {jax.__version__}, float64, cores {args.cores or 'all'}, "
          f"T = {T}; sigprop process start-up + L=1 profile: {startup['wall'] * 1e3:.1f} ms wall", flush=True)

    for name in args.stacks.split(","):
        # eager: per-layer cost from a short warm probe, then as deep as fits in budget / 2
        probe = 10
        nt_eager(stack_spec(name, probe, T))  # warm-up: eager jax compiles each primitive once
        t_probe, _ = nt_eager(stack_spec(name, probe, T))
        L_eager = max(probe, min(Lmax, int(probe * (args.budget / 2) / max(t_probe["wall"], 1e-9)) // 10 * 10))
        # jit (unrolled serial): compile cost from a probe at L = 25
        c25, _, _ = nt_jit(serial_kernel_fn, stack_spec(name, 25, T))
        L_jit = max([L for L in (25, 50, 100, 200, 500, 1000)
                     if L <= Lmax and c25["wall"] * L / 25 <= args.budget] or [25])
        for method, L in [("eager", L_eager), ("jit", L_jit), ("jit+scan", Lmax)]:
            spec = stack_spec(name, L, T)
            if method == "eager":
                first, k = nt_eager(spec)
                run = first
            elif method == "jit":
                first, run, k = nt_jit(serial_kernel_fn, spec)
            else:
                first, run, k = nt_jit(scan_kernel_fn, spec, static_get=False)
            q_nt, rho_nt = q_rho(as_tokens(k, T))
            sp, q_sp, rho_sp = sigprop_run(exe, spec)
            dev = max(abs(q_nt - q_sp) / abs(q_sp), abs(rho_nt - rho_sp) / max(abs(rho_sp), 1e-300))
            row = {"stack": name, "L": L, "T": T, "nt_method": method, "nt_first_call": first, "nt_run": run,
                   "sigprop": sp, "ratio_nt_run_over_sigprop_cpu": run["cpu"] / sp["cpu"],
                   "ratio_nt_first_over_sigprop_cpu": first["cpu"] / sp["cpu"], "final_q_rho_rel_dev": dev}
            rows.append(row)
            print(json.dumps(row), flush=True)

    print("\nCPU seconds (one core; wall in the JSON lines above). NT first call = trace + compile + run.")
    hdr = (f"{'stack':<15} {'L':>5} {'NT method':<9} {'NT 1st call':>11} {'NT run':>9} {'sigprop':>9} "
           f"{'NT run/sigprop':>14} {'NT 1st/sigprop':>14} {'q,rho dev':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['stack']:<15} {r['L']:>5} {r['nt_method']:<9} {r['nt_first_call']['cpu']:>11.3f} "
              f"{r['nt_run']['cpu']:>9.4f} {r['sigprop']['cpu']:>9.4f} {r['ratio_nt_run_over_sigprop_cpu']:>14.2f} "
              f"{r['ratio_nt_first_over_sigprop_cpu']:>14.2f} {r['final_q_rho_rel_dev']:>9.1e}")
    print("\nNT: NNGP forward only (get='nngp'). sigprop: CLI, full profile (forward + backward + every "
          "metric + JSON file), process start-up included.")
    print("dense_erf at L >= ~200: the q,rho deviation is NT's round-off growing like chi1^l in the chaotic "
          "phase (see the docstring), not sigprop's.")
    if args.json:
        args.json.write_text(json.dumps({"neural_tangents": nt.__version__, "jax": jax.__version__,
                                         "cores": args.cores, "tokens": T, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
