#!/usr/bin/env python3
"""Golden data for sigprop's byte-level trainer (llm.c-style parity), made with PyTorch in float64.

Issue 5: an independent PyTorch oracle for the C++ trainer. This docstring is
the contract that the C++ trainer implements.

MODEL (byte-level language model)
  Vocabulary V = 256 (bytes). Input ids x (B, T), targets y (B, T).
  X_0[b,t] = wte[x[b,t]] + wpe[t];  wte (V, d), wpe (T, d).
  L blocks, MODEL.md section 1 with norm = "pre", norm_type = layernorm
  (eps 1e-5), mask = causal, qk_scale = 1/sqrt(dh), branch scale a
  (variant `tiny`: a = 1; variant `tiny_scaled`: a = 1/sqrt(2L)), activation
  gelu in the exact erf form gelu(u) = u/2 (1 + erf(u/sqrt 2)), blocks = attn+mlp:
      Y  = X + a * Attn(LN1(X))
      X' = Y + a * MLP(LN2(Y))
  LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * g + b, learnable g, b; var is the
  biased variance over the d features.
  Attention, H heads, dh = d/H: [Q|K|V] = Z Wqkv, Wqkv (d, 3d), columns
  [Q^0..Q^{H-1} | K^0..K^{H-1} | V^0..V^{H-1}], head h of Q = columns
  h*dh .. h*dh+dh-1, of K = d + h*dh .., of V = 2d + h*dh ..; no attention
  biases; A_h = softmax_rows(Q_h K_h^T / sqrt(dh) + causal mask (-inf for s > t));
  Attn = concat_h(A_h V_h) Wo, head h in columns h*dh.. of the concat; Wo (d, d).
  MLP(Z) = gelu(Z W1 + b1) W2 + b2, W1 (d, R), R = mlp_ratio * d, W2 (R, d).
  logits = LNf(X_L) Wu, Wu = lm_head (d, V), untied from wte; LNf learnable g, b.
  Loss = mean over all B*T positions of cross-entropy(logits[b,t], y[b,t])
       = mean(logsumexp(logits[b,t]) - logits[b,t,y[b,t]]).

TRAINER
  Step s = 0 .. steps-1:
    1. lr_s = lr*(s+1)/warmup                         if s < warmup,
       lr_s = min_lr + 0.5*(1 + cos(pi*p))*(lr - min_lr), p = (s - warmup)/max(1, steps - warmup), else.
    2. loss_s = loss on batch s with the current parameters (recorded BEFORE the update).
    3. backward (gradients of loss_s).
    4. clip: total = sqrt(sum over all tensors of sum(grad^2)) (recorded as grad_norms[s]);
       coef = max_norm/(total + 1e-6); if coef < 1, every grad *= coef
       (torch.nn.utils.clip_grad_norm_; torch multiplies by min(coef, 1)).
    5. AdamW (torch.optim.AdamW, betas (0.9, 0.95), eps 1e-8, weight_decay 0.1,
       foreach=False), step count t = s+1, per tensor, elementwise:
         p  <- p * (1 - lr_s * wd)                      (wd = 0.1 for ndim >= 2 tensors:
                                                          wte, wpe, wqkv, wo, w1, w2, lm_head;
                                                          wd = 0 for gains and biases)
         m  <- m + (1 - b1) * (g - m)                   (torch: lerp; = b1 m + (1-b1) g)
         v  <- b2 * v + (1 - b2) * g^2
         p  <- p - (lr_s / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
       with m = v = 0 before step 1. The script checks this formula against
       torch.optim.AdamW (see SELF-CHECKS).

CHECKPOINT NAMES (sigprop's, shapes (in, out) as in x W; blocks l = 1..L)
  wte (V,d), wpe (T,d), h.{l}.ln1.g, h.{l}.ln1.b (d), h.{l}.attn.wqkv (d,3d),
  h.{l}.attn.wo (d,d), h.{l}.ln2.g, h.{l}.ln2.b (d), h.{l}.mlp.w1 (d,R),
  h.{l}.mlp.b1 (R), h.{l}.mlp.w2 (R,d), h.{l}.mlp.b2 (d), lnf.g, lnf.b (d),
  lm_head (d,V).

INIT (seeded torch.Generator, float64; the C++ test reads init.safetensors, so
  the draw order is not part of the contract): matrices wqkv, wo, w1, w2,
  lm_head ~ N(0, 1/fan_in) (fan_in = rows); wte, wpe ~ N(0, variance 0.5);
  gains ~ 1 + 0.1 N(0,1); LN biases and MLP biases ~ 0.1 N(0,1).

DATA: the bytes of the KJV Bible as printed by `bible -f -l 80 Gen1:1-Rev22:21`
  (Debian package bible-kjv). For each step, B windows of T+1 bytes at seeded
  random offsets (numpy default_rng(seed), integers in [0, n - T - 1]);
  x = window[:-1], y = window[1:]. The batches are stored in golden.json, so
  the C++ test does not need the text.

OUTPUT per variant, OUT/<name>/:
  init.safetensors  float64 tensors (names above), __metadata__ = hyperparameters as strings
  golden.json       config, text info, offsets, batches {inputs, targets} (steps x B x T),
                    lrs, losses, grad_norms (pre-clip), clipped (bool per step),
                    final {lnf.g, h.1.mlp.b2} values, final_sumsq {name: sum of squares}
                    after the last step. Floats are written with repr (round-trip exact).

SELF-CHECKS: each variant is trained twice from the same init and batches and
  the two runs must agree bit for bit; the AdamW formula above is replayed by
  hand next to torch.optim.AdamW and must agree to 1e-13 (relative); the global
  grad norm is recomputed by hand; the loss of batch 0 is recomputed with
  torch.nn.functional blocks (layer_norm, scaled_dot_product_attention, gelu)
  and must agree to 1e-12.

Rerun (CPU, a few seconds):
  python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install -r tools/requirements-hf.txt
  /tmp/hfvenv/bin/python tools/train_golden.py --out tests/golden/train
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

V = 256
BIBLE_CMD = ["bible", "-f", "-l", "80", "Gen1:1-Rev22:21"]

VARIANTS = {
    "tiny": dict(d=16, H=2, L=2, mlp_ratio=4, T=8, B=4, branch_scale="1", lr=1e-2, min_lr=1e-3,
                 warmup=3, steps=10, max_norm=1.5, seed=2024),
    "tiny_scaled": dict(d=24, H=3, L=3, mlp_ratio=2, T=8, B=4, branch_scale="1/sqrt(2L)", lr=1e-2,
                        min_lr=1e-3, warmup=3, steps=10, max_norm=1.5, seed=2025),
}
COMMON = dict(norm_eps=1e-5, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1)


def branch_scale(cfg):
    return {"1": 1.0, "1/sqrt(2L)": 1.0 / math.sqrt(2 * cfg["L"])}[cfg["branch_scale"]]


def param_names(cfg):
    names = ["wte", "wpe"]
    for l in range(1, cfg["L"] + 1):
        p = f"h.{l}."
        names += [p + "ln1.g", p + "ln1.b", p + "attn.wqkv", p + "attn.wo", p + "ln2.g", p + "ln2.b",
                  p + "mlp.w1", p + "mlp.b1", p + "mlp.w2", p + "mlp.b2"]
    return names + ["lnf.g", "lnf.b", "lm_head"]


def init_params(cfg):
    d, T, L = cfg["d"], cfg["T"], cfg["L"]
    R = cfg["mlp_ratio"] * d
    g = torch.Generator().manual_seed(cfg["seed"])
    rn = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
    P = {"wte": math.sqrt(0.5) * rn(V, d), "wpe": math.sqrt(0.5) * rn(T, d)}
    for l in range(1, L + 1):
        p = f"h.{l}."
        P[p + "ln1.g"] = 1 + 0.1 * rn(d)
        P[p + "ln1.b"] = 0.1 * rn(d)
        P[p + "attn.wqkv"] = rn(d, 3 * d) / math.sqrt(d)
        P[p + "attn.wo"] = rn(d, d) / math.sqrt(d)
        P[p + "ln2.g"] = 1 + 0.1 * rn(d)
        P[p + "ln2.b"] = 0.1 * rn(d)
        P[p + "mlp.w1"] = rn(d, R) / math.sqrt(d)
        P[p + "mlp.b1"] = 0.1 * rn(R)
        P[p + "mlp.w2"] = rn(R, d) / math.sqrt(R)
        P[p + "mlp.b2"] = 0.1 * rn(d)
    P["lnf.g"] = 1 + 0.1 * rn(d)
    P["lnf.b"] = 0.1 * rn(d)
    P["lm_head"] = rn(d, V) / math.sqrt(d)
    assert list(P) == param_names(cfg)
    return P


def layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


def gelu_erf(u):
    return 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))


def forward_loss(P, cfg, x, y):
    B, T = x.shape
    d, H, L, eps = cfg["d"], cfg["H"], cfg["L"], cfg["norm_eps"]
    dh, a = d // H, branch_scale(cfg)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    X = P["wte"][x] + P["wpe"][:T]
    for l in range(1, L + 1):
        p = f"h.{l}."
        Z = layernorm(X, P[p + "ln1.g"], P[p + "ln1.b"], eps)
        qkv = Z @ P[p + "attn.wqkv"]                                   # (B, T, 3d)
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, H, dh).transpose(1, 2) for i in range(3))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)                  # (B, H, T, T)
        A = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        o = (A @ v).transpose(1, 2).reshape(B, T, d)
        X = X + a * (o @ P[p + "attn.wo"])
        Z = layernorm(X, P[p + "ln2.g"], P[p + "ln2.b"], eps)
        m = gelu_erf(Z @ P[p + "mlp.w1"] + P[p + "mlp.b1"]) @ P[p + "mlp.w2"] + P[p + "mlp.b2"]
        X = X + a * m
    logits = layernorm(X, P["lnf.g"], P["lnf.b"], eps) @ P["lm_head"]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))


def forward_loss_functional(P, cfg, x, y):
    """The same model with torch.nn.functional building blocks (layer_norm, per-head
    scaled_dot_product_attention with is_causal, gelu): a cross-check of forward_loss."""
    F = torch.nn.functional
    B, T = x.shape
    d, H, L, eps = cfg["d"], cfg["H"], cfg["L"], cfg["norm_eps"]
    dh, a = d // H, branch_scale(cfg)
    X = F.embedding(x, P["wte"]) + P["wpe"][:T]
    for l in range(1, L + 1):
        p = f"h.{l}."
        Z = F.layer_norm(X, (d,), P[p + "ln1.g"], P[p + "ln1.b"], eps)
        Wq, Wk, Wv = P[p + "attn.wqkv"].split(d, dim=1)
        heads = []
        for h in range(H):
            cols = slice(h * dh, (h + 1) * dh)
            heads.append(F.scaled_dot_product_attention(Z @ Wq[:, cols], Z @ Wk[:, cols], Z @ Wv[:, cols],
                                                        is_causal=True))
        X = X + a * (torch.cat(heads, -1) @ P[p + "attn.wo"])
        Z = F.layer_norm(X, (d,), P[p + "ln2.g"], P[p + "ln2.b"], eps)
        X = X + a * F.linear(F.gelu(F.linear(Z, P[p + "mlp.w1"].T, P[p + "mlp.b1"])), P[p + "mlp.w2"].T,
                             P[p + "mlp.b2"])
    logits = F.layer_norm(X, (d,), P["lnf.g"], P["lnf.b"], eps) @ P["lm_head"]
    return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))


def lr_at(cfg, s):
    lr, mn, w, n = cfg["lr"], cfg["min_lr"], cfg["warmup"], cfg["steps"]
    if s < w:
        return lr * (s + 1) / w
    p = (s - w) / max(1, n - w)
    return mn + 0.5 * (1.0 + math.cos(math.pi * p)) * (lr - mn)


def load_text():
    out = subprocess.run(BIBLE_CMD, check=True, capture_output=True).stdout
    return out


def make_batches(cfg, text):
    rng = np.random.default_rng(cfg["seed"] + 1)
    T, B, n = cfg["T"], cfg["B"], len(text)
    buf = np.frombuffer(text, dtype=np.uint8)
    offsets = rng.integers(0, n - T - 1, size=(cfg["steps"], B), endpoint=True)
    win = np.stack([[buf[o:o + T + 1] for o in row] for row in offsets]).astype(np.int64)
    return offsets, win[..., :-1], win[..., 1:]


def manual_adamw(P0, grads_per_step, lrs, cfg):
    """The docstring's AdamW, by hand, given the (clipped) gradients of each step."""
    b1, b2 = cfg["betas"]
    eps, wd = cfg["eps"], cfg["weight_decay"]
    P = {k: v.clone() for k, v in P0.items()}
    m = {k: torch.zeros_like(v) for k, v in P.items()}
    v2 = {k: torch.zeros_like(v) for k, v in P.items()}
    for t, (G, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for k in P:
            g = G[k]
            if P[k].ndim >= 2:
                P[k] = P[k] * (1 - lr * wd)
            m[k] = m[k] + (1 - b1) * (g - m[k])
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            P[k] = P[k] - (lr / (1 - b1 ** t)) * m[k] / (torch.sqrt(v2[k]) / math.sqrt(1 - b2 ** t) + eps)
    return P


def train(cfg, P_init, xs, ys):
    names = param_names(cfg)
    P = {k: P_init[k].clone().requires_grad_(True) for k in names}
    decay = [P[k] for k in names if P[k].ndim >= 2]
    no_decay = [P[k] for k in names if P[k].ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], foreach=False)
    losses, norms, clipped, lrs, grads = [], [], [], [], []
    for s in range(cfg["steps"]):
        lr = lr_at(cfg, s)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = forward_loss(P, cfg, torch.from_numpy(xs[s]), torch.from_numpy(ys[s]))
        loss.backward()
        # the documented formula, independently of torch's implementation
        mine = math.sqrt(sum(float((P[k].grad.detach() ** 2).sum()) for k in names))
        total = torch.nn.utils.clip_grad_norm_([P[k] for k in names], cfg["max_norm"], foreach=False)
        assert abs(mine - float(total)) <= 1e-12 * mine, (mine, float(total))
        opt.step()
        losses.append(float(loss.detach()))
        norms.append(float(total))
        clipped.append(bool(cfg["max_norm"] / (float(total) + 1e-6) < 1.0))
        lrs.append(lr)
        grads.append({k: P[k].grad.detach().clone() for k in names})
    final = {k: P[k].detach().clone() for k in names}
    return dict(losses=losses, grad_norms=norms, clipped=clipped, lrs=lrs, final=final, grads=grads)


def canonicalise_header(path):
    """safetensors writes __metadata__ in hash order (differs run to run); sort it so reruns are
    byte-identical. Same keys, same compact JSON, so the header keeps its length."""
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
        hdr = json.loads(raw, object_pairs_hook=lambda kv: dict(kv))
        hdr["__metadata__"] = dict(sorted(hdr["__metadata__"].items()))
        hdr = {"__metadata__": hdr.pop("__metadata__"), **hdr}
        new = json.dumps(hdr, separators=(",", ":")).encode()
        assert len(new) <= n and raw.rstrip(b" ") and len(new) == len(raw.rstrip(b" ")), "header length changed"
        f.seek(8)
        f.write(new + b" " * (n - len(new)))


def run_variant(out_dir, name, text):
    cfg = dict(VARIANTS[name], **COMMON)
    cfg["a"] = branch_scale(cfg)
    cfg["R"] = cfg["mlp_ratio"] * cfg["d"]
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)

    P0 = init_params(cfg)
    meta = {k: repr(v) if not isinstance(v, str) else v for k, v in cfg.items()}
    meta["V"] = str(V)
    meta["tool"] = "tools/train_golden.py"
    init_path = os.path.join(d, "init.safetensors")
    save_file({k: v.contiguous() for k, v in P0.items()}, init_path, metadata=meta)
    canonicalise_header(init_path)
    P = load_file(init_path)                       # train from what the C++ test will read
    for k in P0:
        assert P[k].dtype == torch.float64 and torch.equal(P[k], P0[k]), k

    offsets, xs, ys = make_batches(cfg, text)
    x0, y0 = torch.from_numpy(xs[0]), torch.from_numpy(ys[0])
    l_a, l_b = float(forward_loss(P, cfg, x0, y0)), float(forward_loss_functional(P, cfg, x0, y0))
    assert abs(l_a - l_b) < 1e-12, f"forward cross-check failed: {l_a} vs {l_b}"
    r1 = train(cfg, P, xs, ys)
    r2 = train(cfg, P, xs, ys)
    assert r1["losses"] == r2["losses"] and r1["grad_norms"] == r2["grad_norms"]
    for k in r1["final"]:
        assert torch.equal(r1["final"][k], r2["final"][k]), k

    # AdamW formula check: the hand-written update given torch's clipped gradients
    Pm = manual_adamw(P, r1["grads"], r1["lrs"], cfg)
    worst = max(float((Pm[k] - r1["final"][k]).abs().max() / r1["final"][k].abs().max()) for k in Pm)
    assert worst < 1e-13, f"manual AdamW differs from torch.optim.AdamW: {worst}"

    final = r1["final"]
    gold = {
        "variant": name,
        "config": {k: cfg[k] for k in ["d", "H", "L", "T", "B", "mlp_ratio", "R", "branch_scale", "a",
                                        "norm_eps", "lr", "min_lr", "warmup", "steps", "max_norm",
                                        "betas", "eps", "weight_decay", "seed"]},
        "V": V,
        "weight_decay_tensors": [k for k in param_names(cfg) if P[k].ndim >= 2],
        "text": {"command": " ".join(BIBLE_CMD), "bytes": len(text),
                 "md5": hashlib.md5(text).hexdigest()},
        "offsets": offsets.tolist(),
        "batches": {"inputs": xs.tolist(), "targets": ys.tolist()},
        "lrs": r1["lrs"],
        "losses": r1["losses"],
        "grad_norms": r1["grad_norms"],
        "clipped": r1["clipped"],
        "final": {k: final[k].tolist() for k in ["lnf.g", "h.1.mlp.b2"]},
        "final_sumsq": {k: float((final[k] ** 2).sum()) for k in param_names(cfg)},
        "init_sumsq": {k: float((P[k] ** 2).sum()) for k in param_names(cfg)},
        "self_check": {"second_run_identical": True, "manual_adamw_max_rel_diff": worst,
                       "functional_forward_loss_diff": abs(l_a - l_b)},
        "torch_version": torch.__version__,
    }
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(gold, f, indent=1)
        f.write("\n")
    return gold


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder, e.g. tests/golden/train")
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                    help="only this variant (repeatable; default: all)")
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    text = load_text()
    for name in args.variant or list(VARIANTS):
        g = run_variant(args.out, name, text)
        print(f"{name}: losses " + " ".join(f"{x:.4f}" for x in g["losses"]))
        print(f"{' ' * len(name)}  grad norms " + " ".join(f"{x:.3f}" for x in g["grad_norms"])
              + f"  clipped {sum(g['clipped'])}/{len(g['clipped'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
