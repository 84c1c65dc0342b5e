#!/usr/bin/env python3
"""Side-by-side speed of `sigprop train` and the same training in PyTorch (CPU, float32).

The model and trainer are tools/train_golden.py's (the contract of the C++ trainer):
Pre-LN attn+mlp, LayerNorm, exact GELU, causal, r = 4, branch scale 1, vocabulary 256,
learned positions, untied lm_head; AdamW (0.9, 0.95), weight decay 0.1 on matrices,
global-norm clipping at 1, warm-up + cosine schedule. For each size and thread count this
script runs, each in its own child process (so peak RSS is per run, from wait4):

  torch-golden  train_golden.forward_loss in float32 (hand-written LayerNorm, attention on
                (B, H, T, T) scores with a mask, erf GELU), autograd, torch.optim.AdamW,
                clip_grad_norm_: the oracle as it is
  torch-fused   the same model with torch.nn.functional blocks (layer_norm,
                scaled_dot_product_attention(is_causal=True), gelu, linear, cross_entropy):
                what one would write for speed in eager mode; its loss is checked against
                torch-golden's at step 0
  torch-compile torch-fused's loss under torch.compile (only with --compile; the first
                step, which compiles, is outside the timed loop and reported separately)
  sigprop       build/cli/sigprop train --precision float with the same shape, batch, steps
                and threads, --val-every/--checkpoint-every large (only the initial and final
                validation over --val-batches 1 and the init/final checkpoints are written)

The same corpus (the training split, first 90%) and B windows of T+1 bytes per step (the
offsets differ: sigprop draws them from Philox, PyTorch from numpy; the speed does not
depend on them). torch.set_num_threads(threads), set_num_interop_threads(1).

Reported per run: loop tokens/s = (steps - 1) * B * T / (time from the end of step 0 to
the end of the last step) -- for sigprop from the `seconds` column of loss.csv, for PyTorch
from perf_counter -- so one-off costs (process start, import, compile, initial validation,
checkpoints) are outside it; wall tokens/s = steps * B * T / the child process's whole
wall time (nothing subtracted: import torch, sigprop's validation and checkpoint writes
included); peak RSS of the child (ru_maxrss). Ratios are sigprop / PyTorch. Each
configuration runs --repeat times (interleaved); the table shows the best (max tokens/s)
and the median.

  /tmp/hfvenv/bin/python tools/train_bench.py --threads 1 2 --repeat 3
  /tmp/hfvenv/bin/python tools/train_bench.py --size small --threads 1 --compile
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SIZES = {
    "small": dict(d=64, H=4, L=4, T=64, B=16, steps=40),
    "large": dict(d=128, H=4, L=8, T=128, B=16, steps=10),
}
V = 256


def step_flops(z):
    """Matrix-product flops of one training step, the formula of bench/bench_train.cpp."""
    d, T, L, B = z["d"], z["T"], z["L"], z["B"]
    R = 4 * d
    n_mat = L * (3 * d * d + d * d + 2 * d * R) + d * V
    return 6 * n_mat * B * T + 12 * L * T * T * d * B


# ------------------------------------------------------------------------------------------
# PyTorch worker (a child process: its own RSS and thread settings)

def fused_loss(P, cfg, x, y):
    import torch
    F = torch.nn.functional
    B, T = x.shape
    d, H, L, eps = cfg["d"], cfg["H"], cfg["L"], cfg["norm_eps"]
    dh = d // H
    X = F.embedding(x, P["wte"]) + P["wpe"][:T]
    for l in range(1, L + 1):
        p = f"h.{l}."
        Z = F.layer_norm(X, (d,), P[p + "ln1.g"], P[p + "ln1.b"], eps)
        qkv = Z @ P[p + "attn.wqkv"]
        q, k, v = (t.view(B, T, H, dh).transpose(1, 2) for t in qkv.split(d, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, d)
        X = X + o @ P[p + "attn.wo"]
        Z = F.layer_norm(X, (d,), P[p + "ln2.g"], P[p + "ln2.b"], eps)
        X = X + F.linear(F.gelu(F.linear(Z, P[p + "mlp.w1"].T, P[p + "mlp.b1"])), P[p + "mlp.w2"].T,
                         P[p + "mlp.b2"])
    logits = F.layer_norm(X, (d,), P["lnf.g"], P["lnf.b"], eps) @ P["lm_head"]
    return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))


def torch_worker(a):
    import numpy as np
    import torch
    sys.path.insert(0, HERE)
    import train_golden as tg

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    z = SIZES[a.size]
    steps = a.steps or z["steps"]
    cfg = dict(d=z["d"], H=z["H"], L=z["L"], T=z["T"], B=z["B"], mlp_ratio=4, branch_scale="1", lr=1e-3,
               min_lr=1e-4, warmup=max(1, steps // 10), steps=steps, max_norm=1.0, seed=0, **tg.COMMON)
    P64 = tg.init_params(cfg)
    names = tg.param_names(cfg)
    P = {k: P64[k].float().clone().requires_grad_(True) for k in names}
    text = open(a.corpus, "rb").read()
    buf = np.frombuffer(text[: len(text) - int(len(text) * 0.1)], dtype=np.uint8)
    rng = np.random.default_rng(1)
    T, B = z["T"], z["B"]

    def batch():
        off = rng.integers(0, len(buf) - T - 1, size=B, endpoint=True)
        w = torch.from_numpy(np.stack([buf[o:o + T + 1] for o in off]).astype(np.int64))
        return w[:, :-1], w[:, 1:]

    x0, y0 = batch()
    if a.impl == "golden":
        loss_fn = tg.forward_loss
    else:
        with torch.no_grad():
            lg, lf = float(tg.forward_loss(P64, cfg, x0, y0)), float(fused_loss(P64, cfg, x0, y0))
        assert abs(lg - lf) < 1e-9, f"fused loss {lf} differs from the golden loss {lg}"
        loss_fn = torch.compile(fused_loss) if a.impl == "compile" else fused_loss
    decay = [P[k] for k in names if P[k].ndim >= 2]
    no_decay = [P[k] for k in names if P[k].ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    ends, losses = [], []
    t_start = time.perf_counter()
    for s in range(steps):
        x, y = (x0, y0) if s == 0 else batch()
        for group in opt.param_groups:
            group["lr"] = tg.lr_at(cfg, s)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(P, cfg, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([P[k] for k in names], cfg["max_norm"])
        opt.step()
        losses.append(float(loss.detach()))
        ends.append(time.perf_counter())
    json.dump(dict(first_step_s=ends[0] - t_start, loop_s=ends[-1] - ends[0], losses=losses,
                   torch=torch.__version__, threads=torch.get_num_threads()), sys.stdout)
    return 0


# ------------------------------------------------------------------------------------------
# driver

def run_child_wait4(cmd, env=None):
    """Runs cmd; returns (stdout, stderr, wall seconds, peak RSS in MiB of that child)."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(), fe.read().decode()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    return out, err, wall, ru.ru_maxrss / 1024.0


def run_torch(a, size, threads, impl):
    z = SIZES[size]
    steps = a.steps or z["steps"]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--impl", impl, "--size", size,
           "--threads", str(threads), "--steps", str(steps), "--corpus", a.corpus]
    out, _, wall, rss = run_child_wait4(cmd)
    r = json.loads(out)
    tok = z["B"] * z["T"]
    return dict(loop_tps=(steps - 1) * tok / r["loop_s"], wall_tps=steps * tok / wall, wall=wall, rss=rss,
                first_step_s=r["first_step_s"], loss0=r["losses"][0], threads=r["threads"], torch=r["torch"])


def run_sigprop(a, size, threads):
    z = SIZES[size]
    steps = a.steps or z["steps"]
    with tempfile.TemporaryDirectory(prefix="train_bench_") as out_dir:
        cmd = [a.sigprop, "train", "--corpus", a.corpus, "--out", out_dir, "-q", "--precision", "float",
               "--steps", str(steps), "--batch", str(z["B"]), "--threads", str(threads),
               "--val-every", "1000000", "--val-batches", "1", "--checkpoint-every", "0",
               "--set", f"stack.width={z['d']}", "--set", f"stack.heads={z['H']}",
               "--set", f"stack.depth={z['L']}", "--set", f"stack.tokens={z['T']}",
               "--set", "stack.mlp_ratio=4", "--set", "stack.norm=pre", "--set", "stack.activation=gelu",
               "--set", "stack.mask=causal", "--set", "stack.blocks=attn+mlp"]
        _, _, wall, rss = run_child_wait4(cmd)
        with open(os.path.join(out_dir, "loss.csv")) as f:
            head = f.readline().strip().split(",")
            rows = [dict(zip(head, line.strip().split(","))) for line in f if line.strip()]
    secs = {int(r["step"]): float(r["seconds"]) for r in rows if r["train_loss"]}
    tok = z["B"] * z["T"]
    loop = secs[steps - 1] - secs[0]
    return dict(loop_tps=(steps - 1) * tok / loop, wall_tps=steps * tok / wall, wall=wall, rss=rss,
                loss0=float(next(r for r in rows if r["step"] == "0")["train_loss"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", nargs="+", choices=sorted(SIZES), default=["small", "large"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=0, help="training steps per run (default: per size)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (inductor, CPU)")
    ap.add_argument("--corpus", default=os.path.join(ROOT, "data", "kjv.txt"))
    ap.add_argument("--sigprop", default=os.path.join(ROOT, "build", "cli", "sigprop"))
    ap.add_argument("--json", help="write every run's numbers here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="fused", choices=["golden", "fused", "compile"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.threads, a.size = a.threads[0], a.size[0]
        return torch_worker(a)
    if not os.path.exists(a.corpus):
        sys.exit(f"{a.corpus}: missing; make it with: bible -f -l 80 Gen1:1-Rev22:21 | "
                 "sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > data/kjv.txt")
    impls = ["golden", "fused"] + (["compile"] if a.compile else [])
    runs = {}
    for size in a.size:
        for threads in a.threads:
            for rep in range(a.repeat):
                for impl in impls + ["sigprop"]:
                    r = run_sigprop(a, size, threads) if impl == "sigprop" else run_torch(a, size, threads, impl)
                    runs.setdefault((size, threads, impl), []).append(r)
                    print(f"  {size} threads {threads} rep {rep} {impl:8s} loop {r['loop_tps']:9.0f} tok/s  "
                          f"wall {r['wall']:6.2f} s  RSS {r['rss']:6.0f} MiB", file=sys.stderr, flush=True)
    tv = next((r[0]["torch"] for k, r in runs.items() if k[2] != "sigprop"), "?")
    print(f"\ntorch {tv}; load average at the end {os.getloadavg()[0]:.1f}; best (median) of {a.repeat} runs\n")
    print("| size | threads | impl | loop tok/s | GFLOP/s | wall tok/s | peak RSS MiB | sigprop/impl loop | sigprop/impl wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in a.size:
        z = SIZES[size]
        label = f"d{z['d']} L{z['L']} T{z['T']} B{z['B']}"
        for threads in a.threads:
            sp = runs[(size, threads, "sigprop")]
            sp_loop = max(r["loop_tps"] for r in sp)
            sp_wall = max(r["wall_tps"] for r in sp)
            for impl in impls + ["sigprop"]:
                rs = runs[(size, threads, impl)]
                lp = [r["loop_tps"] for r in rs]
                wl = [r["wall_tps"] for r in rs]
                gf = max(lp) / (z["B"] * z["T"]) * step_flops(z) / 1e9
                rss = max(r["rss"] for r in rs)
                ratio = " | " if impl == "sigprop" else f"{sp_loop / max(lp):.2f}x | {sp_wall / max(wl):.2f}x"
                print(f"| {label} | {threads} | {impl} | {max(lp):.0f} ({statistics.median(lp):.0f}) | {gf:.1f} | "
                      f"{max(wl):.0f} ({statistics.median(wl):.0f}) | {rss:.0f} | {ratio} |")
    extra = {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in runs.items()}
    for k, v in extra.items():
        if k.endswith("/compile"):
            print(f"{k}: first (compiling) step {min(r['first_step_s'] for r in v):.1f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(extra, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
