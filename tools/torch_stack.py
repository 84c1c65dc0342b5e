#!/usr/bin/env python3
"""The MODEL.md stack in PyTorch: an independent implementation for sigprop's Monte Carlo.

Two uses:

  golden  tools/torch_stack.py golden --out tests/golden/torch
          For a set of tiny specs, draw the weights of one sample from sigprop's random
          streams (re-implemented here in NumPy: Philox4x32-10 + Box-Muller, see
          philox_normals), run the stack forward in float64 PyTorch, backpropagate
          Delta_L with autograd, compute every MODEL.md §2 metric with torch, and write
          weights checks, X_l, Delta_l and metrics per layer to JSON. tests/test_golden_torch.cpp
          feeds the same streams to the C++ backends and compares.

  bench   tools/torch_stack.py bench --threads 2 --width 1024 --samples 64 \
              [--explicit-samples N] [--torch-samples N] [--sigprop build/cli/sigprop]
          The same Monte Carlo as `sigprop simulate` in float32 PyTorch (batched over
          samples, weights from torch.randn, autograd for the backward, metrics per layer),
          timed next to sigprop's CPU backend (--weights-sampling conditional and explicit)
          on the same thread count in the same script, each in its own child process with
          its own peak memory (RSS), plus the measured SGEMM rate. Prints a table and ratios.

Nothing here is used by the engine; it is an oracle. Needs numpy and torch (PyPI).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------
# sigprop's random streams (core/rng.hpp), re-implemented from the definition:
# normal i of stream (seed, stream) is element i % 2 of Box-Muller applied to Philox4x32-10
# block i // 2 with key (seed lo, seed hi) and counter (block lo, block hi, stream lo,
# stream hi); u0 = r1 << 32 | r0, u1 = r3 << 32 | r2; a = pi (int64(u0) 2^-63 + 2^-64),
# r = sqrt(-2 log(u1 2^-64 + 2^-65)), pair = (r sin a, r cos a).

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32 with 10 rounds on uint64 arrays holding 32-bit words."""
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    for rnd in range(10):
        if rnd:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox_normals(seed: int, stream: int, n: int) -> np.ndarray:
    """Normals 0..n-1 of sigprop::NormalStream(seed, stream), float64."""
    blocks = np.arange((n + 1) // 2, dtype=np.uint64)
    c0 = blocks & _MASK32
    c1 = blocks >> np.uint64(32)
    c2 = np.full_like(blocks, np.uint64(stream & 0xFFFFFFFF))
    c3 = np.full_like(blocks, np.uint64((stream >> 32) & 0xFFFFFFFF))
    r0, r1, r2, r3 = philox4x32_10(c0, c1, c2, c3, seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    u0 = (r1 << np.uint64(32)) | r0
    u1 = (r3 << np.uint64(32)) | r2
    a = (u0.view(np.int64).astype(np.float64) * 2.0**-63 + 2.0**-64) * math.pi
    r = np.sqrt(-2.0 * np.log(u1.astype(np.float64) * 2.0**-64 + 2.0**-65))
    out = np.empty(2 * len(blocks))
    out[0::2] = np.sin(a) * r
    out[1::2] = np.cos(a) * r
    return out[:n]


def stream_id(a, b=0, c=0, d=0):
    return (a & 0xFFFF) | ((b & 0xFFFF) << 16) | ((c & 0xFFFF) << 32) | ((d & 0xFFFF) << 48)


# sim/reference.hpp StreamKind
INPUT_G, INPUT_G1, OUTPUT_GRAD, WQ, WK, WV, WO, W1, B1, W2, B2, WD, BD = range(1, 14)


# ---------------------------------------------------------------------------------------
# the spec (MODEL.md §3) and the weights of one sample (sim/reference.hpp conventions)

DEFAULT_SPEC = {
    "stack": {"depth": 24, "tokens": 16, "width": 512, "heads": 8, "mlp_ratio": 4.0, "blocks": "attn+mlp",
              "norm": "pre", "norm_type": "layernorm", "activation": "gelu", "mask": "causal",
              "residual": True, "branch_scale": "1", "qk_scale": "1/sqrt(dh)", "norm_eps": 1e-5},
    "init": {"sigma_w2": 1.0, "sigma_b2": 0.0, "sigma_qk2": 1.0},
    "input": {"q0": 1.0, "rho0": 0.1},
}


def make_spec(**overrides):
    spec = json.loads(json.dumps(DEFAULT_SPEC))
    for key, value in overrides.items():
        table, name = key.split("__")
        assert name in spec[table], key
        spec[table][name] = value
    return spec


def branch_scale(spec):
    s, L = spec["stack"]["branch_scale"], spec["stack"]["depth"]
    if s == "1":
        return 1.0
    if s == "1/sqrt(L)":
        return 1.0 / math.sqrt(L)
    if s == "1/sqrt(2L)":
        return 1.0 / math.sqrt(2 * L)
    return float(s)


def dims(spec):
    st = spec["stack"]
    d, H = st["width"], st["heads"]
    return st["tokens"], d, H, d // H, int(round(st["mlp_ratio"] * d))


def halves(spec):
    return {"attn+mlp": ["attn", "mlp"], "attn": ["attn"], "mlp": ["mlp"], "dense": ["dense"]}[spec["stack"]["blocks"]]


def layer_weights(spec, seed, sample, layer):
    """Weights of block `layer` (1..L) of `sample`, float64 NumPy, drawn from sigprop's streams."""
    T, d, H, dh, R = dims(spec)
    ini = spec["init"]
    L = spec["stack"]["depth"]
    beta = (8.0 * L) ** -0.25 if spec["stack"]["norm"] == "deepnorm" else 1.0
    sd_wd = beta * math.sqrt(ini["sigma_w2"] / d)
    sd_b = math.sqrt(ini["sigma_b2"])

    def gen(shape, kind, head, sd):
        n = int(np.prod(shape))
        return philox_normals(seed, stream_id(sample, layer, kind, head), n).reshape(shape) * sd

    w = {}
    hs = halves(spec)
    if "attn" in hs:
        sd_qk = math.sqrt(ini["sigma_qk2"] / d)
        w["wq"] = np.stack([gen((d, dh), WQ, h, sd_qk) for h in range(H)])  # (H, d, dh)
        w["wk"] = np.stack([gen((d, dh), WK, h, sd_qk) for h in range(H)])
        w["wv"] = np.stack([gen((d, dh), WV, h, sd_wd) for h in range(H)])
        w["wo"] = gen((d, d), WO, 0, sd_wd)
    if "mlp" in hs:
        w["w1"] = gen((d, R), W1, 0, sd_wd)
        w["w2"] = gen((R, d), W2, 0, beta * math.sqrt(ini["sigma_w2"] / R))
        w["b1"] = gen((R,), B1, 0, sd_b)
        w["b2"] = gen((d,), B2, 0, sd_b)
    if "dense" in hs:
        w["wd"] = gen((d, d), WD, 0, sd_wd)
        w["bd"] = gen((d,), BD, 0, sd_b)
    return w


def input_and_grad(spec, seed, sample):
    T, d, *_ = dims(spec)
    q0, rho0 = spec["input"]["q0"], spec["input"]["rho0"]
    G = philox_normals(seed, stream_id(sample, 0, INPUT_G, 0), T * d).reshape(T, d)
    g = philox_normals(seed, stream_id(sample, 0, INPUT_G1, 0), d)
    X0 = math.sqrt(q0 * (1 - rho0)) * G + math.sqrt(q0 * rho0) * g[None, :]
    DL = philox_normals(seed, stream_id(sample, 0, OUTPUT_GRAD, 0), T * d).reshape(T, d)
    return X0, DL


# ---------------------------------------------------------------------------------------
# the stack in torch (batched: leading dims are samples), MODEL.md §1


def _torch():
    import torch

    return torch


def act(name, z):
    torch = _torch()
    if name == "relu":
        return torch.relu(z)
    if name == "gelu":
        return torch.nn.functional.gelu(z)  # exact erf form
    if name == "tanh":
        return torch.tanh(z)
    if name == "erf":
        return torch.erf(z)
    if name == "silu":
        return torch.nn.functional.silu(z)
    if name == "linear":
        return z
    raise ValueError(name)


def norm(spec, x):
    torch = _torch()
    eps = spec["stack"]["norm_eps"]
    if spec["stack"]["norm_type"] == "layernorm":
        return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=eps)
    return torch.nn.functional.rms_norm(x, x.shape[-1:], eps=eps)


def attention(spec, w, z):
    """z (..., T, d); w["wq"] (..., H, d, dh) etc."""
    torch = _torch()
    T, d, H, dh, R = dims(spec)
    q = torch.einsum("...td,...hde->...hte", z, w["wq"])
    k = torch.einsum("...td,...hde->...hte", z, w["wk"])
    v = torch.einsum("...td,...hde->...hte", z, w["wv"])
    s = 1.0 / math.sqrt(dh) if spec["stack"]["qk_scale"] == "1/sqrt(dh)" else 1.0 / dh
    logits = s * q @ k.transpose(-1, -2)
    if spec["stack"]["mask"] == "causal":
        mask = torch.ones(T, T, dtype=torch.bool, device=z.device).triu(1)
        logits = logits.masked_fill(mask, float("-inf"))
    a = torch.softmax(logits, dim=-1)
    heads = a @ v  # (..., H, T, dh)
    cat = heads.transpose(-3, -2).reshape(*heads.shape[:-3], T, d)
    return cat @ w["wo"]


def branch(spec, kind, w, z):
    if kind == "attn":
        return attention(spec, w, z)
    if kind == "mlp":
        return act(spec["stack"]["activation"], z @ w["w1"] + w["b1"][..., None, :]) @ w["w2"] + w["b2"][..., None, :]
    return act(spec["stack"]["activation"], z) @ w["wd"] + w["bd"][..., None, :]


def block(spec, layer, w, x):
    st = spec["stack"]
    L = st["depth"]
    pre = st["norm"] in ("pre", "lns")
    post = st["norm"] in ("post", "deepnorm")
    gain = 1.0 / math.sqrt(layer) if st["norm"] == "lns" else 1.0
    lam = (2.0 * L) ** 0.25 if st["norm"] == "deepnorm" else 1.0
    a = 1.0 if st["norm"] == "deepnorm" else branch_scale(spec)
    if not st["residual"]:
        lam = 0.0
    for kind in halves(spec):
        z = gain * norm(spec, x) if pre else x
        s = lam * x + a * branch(spec, kind, w, z)
        x = norm(spec, s) if post else s
    return x


# ---------------------------------------------------------------------------------------
# metrics, MODEL.md §2, on (..., T, d) tensors


def state_metrics(X):
    torch = _torch()
    T, d = X.shape[-2:]
    q = (X * X).sum((-2, -1)) / (T * d)
    n = X.norm(dim=-1, keepdim=True)
    C = (X / n) @ (X / n).transpose(-1, -2)
    rho = (C.sum((-2, -1)) - C.diagonal(dim1=-2, dim2=-1).sum(-1)) / (T * (T - 1))
    res = (X - X.mean(-2, keepdim=True)).norm(dim=(-2, -1)) / X.norm(dim=(-2, -1))
    sv = torch.linalg.svdvals(X)
    p = sv / sv.sum(-1, keepdim=True)
    ent = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)
    return q, rho, res, torch.exp(ent)


def step_metrics(Xp, X):
    torch = _torch()
    upd = (X - Xp).norm(dim=(-2, -1)) / Xp.norm(dim=(-2, -1))
    cos = (X * Xp).sum(-1) / (X.norm(dim=-1) * Xp.norm(dim=-1))
    ang = torch.arccos(cos.clamp(-1, 1)).mean(-1) / math.pi
    return upd, ang


METRICS = ["q", "rho", "res", "eff_rank", "update_ratio", "ang_dist", "grad_var"]


# ---------------------------------------------------------------------------------------
# golden: tiny stacks, one sample, float64

GOLDEN_SPECS = {
    # name: overrides of a tiny base (T=4, d=8, H=2, r=2, L=3, sigma_b2=0.1, rho0=0.3)
    "preln_gelu_causal": {},
    "postln_relu_nomask": {"stack__norm": "post", "stack__activation": "relu", "stack__mask": "none"},
    "noln_tanh": {"stack__norm": "none", "stack__activation": "tanh", "stack__branch_scale": "1/sqrt(L)"},
    "lns_silu_rms": {"stack__norm": "lns", "stack__activation": "silu", "stack__norm_type": "rmsnorm"},
    "deepnorm_erf": {"stack__norm": "deepnorm", "stack__activation": "erf"},
    "pre_rms_invdh": {"stack__norm_type": "rmsnorm", "stack__qk_scale": "1/dh", "init__sigma_qk2": 2.0,
                      "stack__branch_scale": "1/sqrt(2L)"},
    "attn_only_noresidual": {"stack__blocks": "attn", "stack__residual": False, "stack__norm": "none"},
    "mlp_only_linear": {"stack__blocks": "mlp", "stack__activation": "linear", "stack__branch_scale": "0.5"},
    "dense_tanh": {"stack__blocks": "dense", "stack__norm": "none", "stack__residual": False,
                   "stack__activation": "tanh", "init__sigma_w2": 1.5},
    "dense_relu_preln": {"stack__blocks": "dense", "stack__activation": "relu"},
}


def tiny(overrides):
    base = {"stack__depth": 3, "stack__tokens": 4, "stack__width": 8, "stack__heads": 2, "stack__mlp_ratio": 2.0,
            "init__sigma_b2": 0.1, "input__rho0": 0.3}
    base.update(overrides)
    return make_spec(**base)


def golden_case(spec, seed, sample):
    torch = _torch()
    L = spec["stack"]["depth"]
    X0, DL = input_and_grad(spec, seed, sample)
    Ws = [None] + [{k: torch.tensor(v, dtype=torch.float64) for k, v in layer_weights(spec, seed, sample, l).items()}
                   for l in range(1, L + 1)]
    xs = [torch.tensor(X0, dtype=torch.float64, requires_grad=True)]
    for l in range(1, L + 1):
        x = block(spec, l, Ws[l], xs[-1])
        x.retain_grad()
        xs.append(x)
    (xs[-1] * torch.tensor(DL)).sum().backward()
    X = torch.stack([x.detach() for x in xs])  # (L+1, T, d)
    D = torch.stack([x.grad for x in xs])
    q, rho, res, er = state_metrics(X)
    upd, ang = step_metrics(X[:-1], X[1:])
    T, d = X.shape[-2:]
    gv = (D * D).sum((-2, -1)) / (T * d)
    nan = float("nan")
    rows = []
    for l in range(L + 1):
        rows.append([q[l].item(), rho[l].item(), res[l].item(), er[l].item(),
                     nan if l == 0 else upd[l - 1].item(), nan if l == 0 else ang[l - 1].item(), gv[l].item()])
    w1 = layer_weights(spec, seed, sample, 1)
    checks = {k: v.reshape(-1)[:16].tolist() for k, v in sorted(w1.items())}
    return {
        "spec": spec, "seed": seed, "sample": sample,
        "generator": f"tools/torch_stack.py golden (torch {torch.__version__}, numpy {np.__version__}, float64)",
        "weights_layer1_first16": checks,
        "X": X.reshape(L + 1, -1).tolist(), "Delta": D.reshape(L + 1, -1).tolist(),
        "metric_names": METRICS,
        "metrics": [[None if math.isnan(v) else v for v in r] for r in rows],
    }


def cmd_golden(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, ov) in enumerate(sorted(GOLDEN_SPECS.items())):
        case = golden_case(tiny(ov), seed=1000 + i, sample=i % 3)
        path = out / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(case, indent=None, separators=(",", ":")) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path}")


# ---------------------------------------------------------------------------------------
# bench: the same Monte Carlo in float32 PyTorch next to sigprop


def torch_mc(spec, samples, batch, device="cpu"):
    """Every metric per layer averaged over `samples` random stacks, batched `batch` at a time."""
    torch = _torch()
    T, d, H, dh, R = dims(spec)
    L = spec["stack"]["depth"]
    ini = spec["init"]
    q0, rho0 = spec["input"]["q0"], spec["input"]["rho0"]
    beta = (8.0 * L) ** -0.25 if spec["stack"]["norm"] == "deepnorm" else 1.0
    sums = torch.zeros(L + 1, len(METRICS), dtype=torch.float64)
    for b0 in range(0, samples, batch):
        B = min(batch, samples - b0)
        X0 = math.sqrt(q0 * (1 - rho0)) * torch.randn(B, T, d) + math.sqrt(q0 * rho0) * torch.randn(B, 1, d)
        xs = [X0.requires_grad_(True)]
        for l in range(1, L + 1):
            w = {}
            if "attn" in halves(spec):
                sq = math.sqrt(ini["sigma_qk2"] / d)
                w["wq"] = torch.randn(B, H, d, dh) * sq
                w["wk"] = torch.randn(B, H, d, dh) * sq
                w["wv"] = torch.randn(B, H, d, dh) * (beta * math.sqrt(ini["sigma_w2"] / d))
                w["wo"] = torch.randn(B, d, d) * (beta * math.sqrt(ini["sigma_w2"] / d))
            if "mlp" in halves(spec):
                w["w1"] = torch.randn(B, d, R) * (beta * math.sqrt(ini["sigma_w2"] / d))
                w["w2"] = torch.randn(B, R, d) * (beta * math.sqrt(ini["sigma_w2"] / R))
                w["b1"] = torch.randn(B, R) * math.sqrt(ini["sigma_b2"])
                w["b2"] = torch.randn(B, d) * math.sqrt(ini["sigma_b2"])
            if "dense" in halves(spec):
                w["wd"] = torch.randn(B, d, d) * (beta * math.sqrt(ini["sigma_w2"] / d))
                w["bd"] = torch.randn(B, d) * math.sqrt(ini["sigma_b2"])
            x = block(spec, l, w, xs[-1])
            x.retain_grad()
            xs.append(x)
        DL = torch.randn(B, T, d)
        (xs[-1] * DL).sum().backward()
        with torch.no_grad():
            X = torch.stack([x.detach() for x in xs])  # (L+1, B, T, d)
            D = torch.stack([x.grad for x in xs])
            q, rho, res, er = state_metrics(X)
            upd, ang = step_metrics(X[:-1], X[1:])
            gv = (D * D).sum((-2, -1)) / (T * d)
            m = torch.zeros(L + 1, B, len(METRICS))
            m[:, :, 0], m[:, :, 1], m[:, :, 2], m[:, :, 3], m[:, :, 6] = q, rho, res, er, gv
            m[1:, :, 4], m[1:, :, 5] = upd, ang
            sums += m.double().sum(1)
        del xs, X, D
    return sums / samples


def spec_args(spec):
    out = []
    for table, keys in spec.items():
        for k, v in keys.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            out += ["--set", f"{table}.{k}={v}"]
    return out


def run_child(cmd):
    """Runs cmd; returns (wall s, CPU s, peak RSS MiB) of that child alone (os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def sgemm_rate(torch, T, d, R, seconds=1.0):
    """Measured float32 GEMM rate (GFLOP/s) of the block's largest product shape (T, d) x (d, R)."""
    x, w = torch.randn(T, d), torch.randn(d, R)
    for _ in range(3):
        x @ w
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x @ w
        n += 1
    return 2.0 * T * d * R * n / (time.perf_counter() - t0) / 1e9


def cmd_bench(args):
    torch = _torch()
    torch.set_num_threads(args.threads)
    T, d, L = args.tokens, args.width, args.depth
    H = args.heads if args.heads > 0 else max(1, d // 64)
    spec = make_spec(stack__tokens=T, stack__width=d, stack__heads=H, stack__depth=L)
    n_cond = args.samples
    n_exp = args.explicit_samples if args.explicit_samples is not None else args.samples
    n_torch = args.torch_samples if args.torch_samples is not None else args.samples
    batch = min(args.batch, n_torch)

    def sigprop(mode, n):
        cmd = [args.sigprop, "simulate", *spec_args(spec), "--samples", str(n), "--seed", "1", "--backend", "cpu",
               "--precision", "float", "--threads", str(args.threads), "--weights-sampling", mode,
               "--json", "/dev/null", "--quiet"]
        return run_child(cmd)

    rows = []
    if n_cond > 0:
        rows.append(("sigprop, --weights-sampling conditional", n_cond, *sigprop("conditional", n_cond)))
    if n_exp > 0:
        rows.append(("sigprop, --weights-sampling explicit", n_exp, *sigprop("explicit", n_exp)))
    if n_torch > 0:
        # PyTorch in a child process too (its own peak RSS); warm-up inside, then timed
        cmd = [sys.executable, os.path.abspath(__file__), "torch-run", "--threads", str(args.threads), "--samples",
               str(n_torch), "--batch", str(batch), "--tokens", str(T), "--width", str(d), "--heads", str(H),
               "--depth", str(L)]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        out, _ = p.communicate()
        info = json.loads(out.strip().splitlines()[-1])
        rows.append((f"PyTorch {torch.__version__} (batch {batch}, autograd)", n_torch, info["wall"], info["cpu"],
                     info["rss"]))
    # flops of the explicit stack: forward GEMMs per sample and layer; backward ~ 2x forward
    R = 4 * d
    fwd = 2 * T * d * d * 4 + 2 * 2 * T * T * d + 2 * T * d * R * 2
    flops = 3 * fwd * L
    gemm = sgemm_rate(torch, T, d, R)
    print(f"# Monte Carlo, forward + backward + metrics: Pre-LN attn+mlp gelu causal, T={T} d={d} H={H} L={L}, "
          f"{args.threads} thread(s), float32; measured SGEMM ({T}x{d} @ {d}x{R}, PyTorch): {gemm:.1f} GFLOP/s")
    print("| engine | samples | wall (s) | CPU (s) | samples/s (wall) | explicit-equivalent GFLOP/s | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    rate = {}
    for name, n, wall, cpu_s, rss in rows:
        rate[name] = n / wall
        print(f"| {name} | {n} | {wall:.2f} | {cpu_s:.2f} | {n / wall:.3g} | {flops * n / wall / 1e9:.1f} | "
              f"{rss:.0f} |")
    torch_rate = [v for k, v in rate.items() if k.startswith("PyTorch")]
    if torch_rate:
        for k, v in rate.items():
            if k.startswith("sigprop"):
                print(f"throughput ratio {k} / PyTorch: {v / torch_rate[0]:.2f}x")


def cmd_torch_run(args):
    """One timed PyTorch Monte Carlo in this process; prints JSON {wall, cpu, rss} last."""
    torch = _torch()
    torch.set_num_threads(args.threads)
    spec = make_spec(stack__tokens=args.tokens, stack__width=args.width, stack__heads=args.heads,
                     stack__depth=args.depth)
    torch_mc(spec, min(args.batch, args.samples), args.batch)  # warm-up (allocator, kernels)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    torch_mc(spec, args.samples, args.batch)
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    print(json.dumps({"wall": wall, "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                      "rss": r1.ru_maxrss / 1024.0}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("golden", help="write golden per-layer data for tests/test_golden_torch.cpp")
    g.add_argument("--out", default="tests/golden/torch")
    b = sub.add_parser("bench", help="time the same Monte Carlo in PyTorch and sigprop")
    b.add_argument("--sigprop", default="build/cli/sigprop")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--samples", type=int, default=64, help="samples of sigprop conditional (0: skip)")
    b.add_argument("--explicit-samples", type=int, default=None, help="samples of sigprop explicit (default --samples)")
    b.add_argument("--torch-samples", type=int, default=None, help="samples of PyTorch (default --samples)")
    b.add_argument("--batch", type=int, default=64, help="samples per PyTorch batch")
    b.add_argument("--tokens", type=int, default=32)
    b.add_argument("--width", type=int, default=256)
    b.add_argument("--heads", type=int, default=0, help="0: d / 64")
    b.add_argument("--depth", type=int, default=32)
    r = sub.add_parser("torch-run", help="(internal) one timed PyTorch run for bench")
    for k in ("--threads", "--samples", "--batch", "--tokens", "--width", "--heads", "--depth"):
        r.add_argument(k, type=int, required=True)
    args = ap.parse_args(argv)
    {"golden": cmd_golden, "bench": cmd_bench, "torch-run": cmd_torch_run}[args.cmd](args)


if __name__ == "__main__":
    main()
