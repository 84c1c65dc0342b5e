#!/usr/bin/env python3
"""Finite-width Monte Carlo oracle for sigprop's infinite-width attention theory.

Builds MODEL.md §1's attention stack literally at finite width (d = H * d_h) in
JAX float64, samples many random stacks, and compares the per-layer metrics
q, rho and grad_var (MODEL.md §2) with `sigprop theory` for the same spec.
Gradients come from JAX autograd (jax.vjp), so the backward pass -- including
the query and key paths through the softmax -- is independent of the
hand-derived formulas in theory/attention.cpp.

    /tmp/ntvenv/bin/python tools/attn_mc_check.py \
        --depth 2 --tokens 8 --rho0 0.3 --sigma-qk2 1 --norm none --no-residual \
        --heads 16 --d-head 64 --draws 64 --inputs 8

    # width sweep + extrapolation to d_h -> inf, H -> inf (fit m + b_dh/d_h + b_H/H + b_d/d);
    # HxDH[:DRAWS]; include off-line points so that the 1/d term is identified:
    ... --sweep 16x16:600,16x32:400,16x64:200,16x128:80,8x64:300,32x64:96,8x32:400,32x32:200

    # split the backward into its paths (depth 1 only gets a theory split):
    ... --paths

Environment: /tmp/ntvenv (jax 0.4.23 CPU, numpy); build sigprop first
(`cmake -S . -B build-attn -G Ninja && ninja -C build-attn`), or pass --sigprop.

What it simulates (MODEL.md §1, blocks = "attn"):
  X_0 = sqrt(q0) (sqrt(1-rho0) G + sqrt(rho0) 1 g^T), fresh per input;
  block l:  none: Y = lam X + a Attn(X);  pre: Y = lam X + a Attn(N(X));
            post: Y = N(lam X + a Attn(X));  lns: Y = lam X + a Attn(N(X)/sqrt(l))
            (lam = 1, or 0 with --no-residual);
  Attn(Z) = concat_h(softmax(s Q_h K_h^T + M) V_h) W_O, W_Q, W_K ~ N(0, sigma_qk2/d),
            W_V, W_O ~ N(0, sigma_w2/d), s = 1/sqrt(d_h) (or 1/d_h), M causal or 0.
  grad_var_l = ||Delta_l||_F^2 / (T d), Delta_L iid N(0,1), Delta_{l-1} = J_l^T Delta_l (jax.vjp).

Sampling: `--draws` independent weight draws; each draw is applied to
`--inputs` independent inputs X_0, and each input's backward pass to
`--cotangents` independent Delta_L (vmap). Per-draw averages are i.i.d., so the
reported standard error (over draws) is exact; the mean is the MODEL.md
ensemble mean. Weight normals are drawn in float32 and cast to float64 by
default (--rng-dtype), 2x faster; all arithmetic is float64.

--paths also runs the backward with stop_gradient on (Q and K), on K only and on
Q only, on the same weights, inputs and cotangents, giving paired estimates of
  value path     grad_var with A held fixed,
  query path     (A depends on Q only) - value,
  key path       (A depends on K only) - value,
and compares them (for depth 1) with an independent numpy evaluation of the
header formulas of theory/attention.hpp (computed directly from the softmax
Jacobians J_t = diag(a_t) - a_t a_t^T, not from attention.cpp's rewriting).

Output: one table per width, theory vs MC (mean +- se), the difference and the
z-score z = (MC - theory) / sqrt(se_MC^2 + se_theory^2). The MC is at finite
width, so a z-score measures MC error only; a finite-width bias
O(1/d_h + 1/H + T/d) is expected on top (use --sweep to extrapolate it away).
Observed (T = 8..16, sigma_qk2 <= 2): |bias| <~ 1% at d_h = 64, H = 32, and the
T/d term (the T-dimensional row space of Z shared by W_Q, W_K and their
gradients) dominates the query/key paths at T = 16.

Results of the first check (2 cores, each run 1-6 min) are summarised in the
session report; a typical call takes ~1-2 min per width at d = 2048.
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

import numpy as np

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("q", "rho", "grad_var")
MODES = ("full", "value", "vq", "vk")  # vq: keys frozen (value+query), vk: queries frozen (value+key)


# ----------------------------------------------------------------------------- spec
def branch_scale(s: str, L: int) -> float:
    if s == "1":
        return 1.0
    if s == "1/sqrt(L)":
        return 1.0 / math.sqrt(L)
    if s == "1/sqrt(2L)":
        return 1.0 / math.sqrt(2 * L)
    return float(s)


def theory_sets(a) -> list[str]:
    bs = a.branch_scale if a.branch_scale in ("1", "1/sqrt(L)", "1/sqrt(2L)") else repr(float(a.branch_scale))
    if bs.startswith("1/"):
        bs = f'"{bs}"'
    kv = {
        "stack.depth": a.depth, "stack.tokens": a.tokens, "stack.width": 4096, "stack.heads": 64,
        "stack.blocks": '"attn"', "stack.norm": f'"{a.norm}"', "stack.norm_type": f'"{a.norm_type}"',
        "stack.norm_eps": a.norm_eps, "stack.mask": f'"{a.mask}"',
        "stack.residual": "true" if a.residual else "false", "stack.branch_scale": bs,
        "stack.qk_scale": f'"{a.qk_scale}"', "init.sigma_w2": a.sigma_w2, "init.sigma_qk2": a.sigma_qk2,
        "init.sigma_b2": 0.0, "input.q0": a.q0, "input.rho0": a.rho0,
    }
    out = []
    for k, v in kv.items():
        out += ["--set", f"{k}={v}"]
    return out


def run_theory(a) -> dict:
    exe = a.sigprop or next((str(p) for p in (ROOT / "build-attn/cli/sigprop", ROOT / "build/cli/sigprop")
                             if p.exists()), None)
    if exe is None:
        sys.exit("sigprop binary not found: build it or pass --sigprop")
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "t.json")
        cmd = [exe, "theory", *theory_sets(a), "--attn-samples", str(a.attn_samples),
               "--error-batches", str(a.error_batches), "--json", out, "-q"]
        subprocess.run(cmd, check=True)
        prof = json.load(open(out))
    res = {}
    for row in prof["layers"]:
        l = row["layer"]
        for m in METRICS:
            res[(m, l)] = (row[m], row.get(m + "_se") or 0.0)
    return res


# ----------------------------------------------------------------------------- finite-width stack
def make_runner(a, H: int, dh: int):
    T, L, d = a.tokens, a.depth, H * dh
    s = 1.0 / math.sqrt(dh) if a.qk_scale == "1/sqrt(dh)" else 1.0 / dh
    lam = 1.0 if a.residual else 0.0
    br = branch_scale(a.branch_scale, L)
    mask = np.tril(np.ones((T, T), bool)) if a.mask == "causal" else np.ones((T, T), bool)
    mask = jnp.asarray(mask)
    wdt = jnp.float32 if a.rng_dtype == "float32" else jnp.float64
    sqk, sw = math.sqrt(a.sigma_qk2 / d), math.sqrt(a.sigma_w2 / d)

    def norm(x):
        if a.norm_type == "layernorm":
            mu = x.mean(-1, keepdims=True)
            return (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + a.norm_eps)
        return x / jnp.sqrt((x ** 2).mean(-1, keepdims=True) + a.norm_eps)

    def attn(Z, W, mode):
        WQ, WK, WV, WO = W
        Q = (Z @ WQ).reshape(T, H, dh)
        K = (Z @ WK).reshape(T, H, dh)
        V = (Z @ WV).reshape(T, H, dh)
        if mode in ("value", "vk"):
            Q = jax.lax.stop_gradient(Q)
        if mode in ("value", "vq"):
            K = jax.lax.stop_gradient(K)
        S = s * jnp.einsum("thi,uhi->htu", Q, K)
        S = jnp.where(mask[None], S, -jnp.inf)
        A = jax.nn.softmax(S, axis=-1)
        return jnp.einsum("htu,uhi->thi", A, V).reshape(T, d) @ WO

    def block(X, W, l, mode):
        if a.norm == "none":
            return lam * X + br * attn(X, W, mode)
        if a.norm == "pre":
            return lam * X + br * attn(norm(X), W, mode)
        if a.norm == "lns":
            return lam * X + br * attn(norm(X) / math.sqrt(l), W, mode)
        if a.norm == "post":
            return norm(lam * X + br * attn(X, W, mode))
        raise ValueError(a.norm)

    def state(X):
        q = (X ** 2).sum() / (T * d)
        n = X / jnp.linalg.norm(X, axis=1, keepdims=True)
        C = n @ n.T
        rho = (C.sum() - jnp.trace(C)) / (T * (T - 1))
        return q, rho

    modes = MODES if a.paths else ("full",)

    def one_input(kx, kd, Ws):
        k1, k2 = jax.random.split(kx)
        X = math.sqrt(a.q0) * (math.sqrt(1 - a.rho0) * jax.random.normal(k1, (T, d))
                               + math.sqrt(a.rho0) * jax.random.normal(k2, (1, d)))
        Dl = jax.random.normal(kd, (a.cotangents, T, d))
        out = {}
        for mode in modes:
            Xs, vjps = [X], []
            for l in range(1, L + 1):
                Y, f = jax.vjp(lambda x, l=l: block(x, Ws[l - 1], l, mode), Xs[-1])
                Xs.append(Y)
                vjps.append(f)
            D = Dl
            gv = [None] * (L + 1)
            gv[L] = (D ** 2).sum() / (a.cotangents * T * d)
            for l in range(L, 0, -1):
                D = jax.vmap(lambda c, f=vjps[l - 1]: f(c)[0])(D)
                gv[l - 1] = (D ** 2).sum() / (a.cotangents * T * d)
            out[mode] = jnp.stack(gv)
            if mode == "full":
                qr = [state(x) for x in Xs]
                out["q"] = jnp.stack([v[0] for v in qr])
                out["rho"] = jnp.stack([v[1] for v in qr])
        return out

    @jax.jit
    def one_draw(key):
        kw, kx, kd = jax.random.split(key, 3)
        Ws = []
        for l in range(L):
            k = jax.random.split(jax.random.fold_in(kw, l), 4)
            g = [jax.random.normal(k[i], (d, d), dtype=wdt).astype(jnp.float64) for i in range(4)]
            Ws.append((g[0] * sqk, g[1] * sqk, g[2] * sw, g[3] * sw))
        outs = jax.vmap(lambda x, dd: one_input(x, dd, Ws))(jax.random.split(kx, a.inputs),
                                                            jax.random.split(kd, a.inputs))
        return {k: v.mean(0) for k, v in outs.items()}

    return one_draw


def simulate(a, H: int, dh: int, ndraws: int) -> dict:
    run = make_runner(a, H, dh)
    key = jax.random.key(a.seed + 1000003 * H + 7919 * dh, impl="rbg")
    rows = []
    t0 = time.time()
    for i in range(ndraws):
        r = run(jax.random.fold_in(key, i))
        rows.append({k: np.asarray(v) for k, v in r.items()})
        if a.verbose and (i + 1) % max(1, ndraws // 8) == 0:
            print(f"  H={H} d_h={dh}: {i + 1}/{ndraws} draws, {time.time() - t0:.0f} s", file=sys.stderr)
    n = len(rows)
    res = {}
    for k in rows[0]:
        arr = np.stack([r[k] for r in rows])  # (draws, L+1)
        res[k] = (arr.mean(0), arr.std(0, ddof=1) / math.sqrt(n), arr)
    # Paired path differences (same weights, inputs, cotangents).
    if a.paths:
        for name, m in (("query", "vq"), ("key", "vk")):
            arr = res[m][2] - res["value"][2]
            res[name] = (arr.mean(0), arr.std(0, ddof=1) / math.sqrt(n), arr)
        arr = res["full"][2] - res["vq"][2] - res["vk"][2] + res["value"][2]
        res["cross"] = (arr.mean(0), arr.std(0, ddof=1) / math.sqrt(n), arr)
    res["grad_var"] = res["full"]
    res["_seconds"] = time.time() - t0
    res["_draws"] = n
    return res


# ----------------------------------------------------------------------------- numpy reference for the paths
def ref_backward_paths(Kz, G, sqk2, causal, n, seed=12345):
    """Header formulas of theory/attention.hpp evaluated directly (per path, without vo_var).

    value = E[A^T G A], query = sqk2^2 G o E[tr(J_t Kz J_t' Kz)],
    key = sqk2^2 sum_tt' G_tt' Kz_tt' E[J_t Kz J_t'], logits S = sqk2 F xi F^T, F F^T = Kz.
    Returns (mean, se) for each path's trace/T.
    """
    T = Kz.shape[0]
    w, U = np.linalg.eigh(Kz)
    F = U * np.sqrt(np.maximum(w, 0))
    rng = np.random.default_rng(seed)
    mask = np.tril(np.ones((T, T), bool)) if causal else np.ones((T, T), bool)
    vals = {"value": [], "query": [], "key": []}
    for start in range(0, n, 4096):
        m = min(4096, n - start)
        xi = rng.standard_normal((m, T, T))
        S = sqk2 * np.einsum("ab,nbc,dc->nad", F, xi, F)
        S = np.where(mask, S, -np.inf)
        S -= S.max(-1, keepdims=True)
        A = np.exp(S)
        A /= A.sum(-1, keepdims=True)
        J = np.einsum("nts,sr->ntsr", A, np.eye(T)) - np.einsum("nts,ntr->ntsr", A, A)  # J[n,t] (T x T)
        V = np.einsum("nts,tu,nur->nsr", A, G, A)
        trJKJK = np.einsum("ntab,bc,nucd,da->ntu", J, Kz, J, Kz, optimize=True)
        Qp = sqk2 ** 2 * G[None] * trJKJK
        Kp = sqk2 ** 2 * np.einsum("tu,ntab,bc,nucd->nad", G * Kz, J, Kz, J, optimize=True)
        for name, M in (("value", V), ("query", Qp), ("key", Kp)):
            vals[name].append(np.trace(M, axis1=1, axis2=2) / T)
    out = {}
    for k, v in vals.items():
        v = np.concatenate(v)
        out[k] = (v.mean(), v.std(ddof=1) / math.sqrt(len(v)))
    return out


def theory_paths_depth1(a):
    """Per-path theory for grad_var_0 of a depth-1 stack (G_1 = I)."""
    T = a.tokens
    K0 = np.full((T, T), a.q0 * a.rho0)
    np.fill_diagonal(K0, a.q0)
    br2 = branch_scale(a.branch_scale, 1) ** 2
    lam2 = 1.0 if a.residual else 0.0
    if a.norm in ("pre", "lns"):
        dpre = 1 / np.sqrt(np.diag(K0) + a.norm_eps)
        Kz, G = K0 * np.outer(dpre, dpre), np.eye(T)
    elif a.norm == "none":
        dpre, Kz, G = np.ones(T), K0, np.eye(T)
    else:
        return None  # post-norm: the branch sits inside the norm; not split here
    sqk2 = a.sigma_qk2 if a.qk_scale == "1/sqrt(dh)" else 0.0
    p = ref_backward_paths(Kz, G, sqk2, a.mask == "causal", a.ref_samples)
    vo = a.sigma_w2 ** 2 * br2
    scale = vo * np.mean(dpre ** 2)  # diag(d_pre) G_b diag(d_pre) with constant d_pre
    out = {k: (scale * m, scale * s) for k, (m, s) in p.items()}
    out["value"] = (out["value"][0] + lam2, out["value"][1])  # skip path adds lam2 * I
    return out


# ----------------------------------------------------------------------------- report
def z(mc, se_mc, th, se_th):
    den = math.sqrt(se_mc ** 2 + se_th ** 2)
    return (mc - th) / den if den > 0 else float("nan")


def table(a, th, sim, H, dh):
    L = a.depth
    lines = [f"== width d = {H * dh} (H = {H}, d_h = {dh}), {sim['_draws']} draws x {a.inputs} inputs x "
             f"{a.cotangents} cotangents, {sim['_seconds']:.0f} s",
             f"{'metric':<9}{'l':>3} {'theory':>12} {'+-':>9} {'MC':>12} {'+-':>9} {'MC-th':>10} {'rel':>8} {'z':>7}"]
    for m in METRICS:
        for l in range(L + 1):
            t, ts = th[(m, l)]
            mc, se = sim[m][0][l], sim[m][1][l]
            if m == "grad_var" and l == L or (m != "grad_var" and l == 0):
                continue  # fixed by construction
            rel = (mc - t) / abs(t) if t else float("nan")
            lines.append(f"{m:<9}{l:>3} {t:>12.6f} {ts:>9.2e} {mc:>12.6f} {se:>9.2e} {mc - t:>+10.5f} "
                         f"{rel:>+8.4f} {z(mc, se, t, ts):>+7.2f}")
    if a.paths:
        ref = theory_paths_depth1(a) if a.depth == 1 else None
        lines.append("grad_var by path (layer 0 for the theory split; paired MC differences):")
        for name in ("value", "query", "key", "cross"):
            mc, se = sim[name][0][0], sim[name][1][0]
            if ref and name in ref:
                t, ts = ref[name]
                lines.append(f"  {name:<7} theory {t:>11.6f} +- {ts:.1e}   MC {mc:>11.6f} +- {se:.1e}   "
                             f"rel {(mc - t) / abs(t) if t else float('nan'):+.4f}   z {z(mc, se, t, ts):+.2f}")
            else:
                lines.append(f"  {name:<7} MC {mc:>11.6f} +- {se:.1e}")
        if ref:
            tot = sum(ref[k][0] for k in ("value", "query", "key"))
            lines.append(f"  (numpy reference total {tot:.6f} vs sigprop theory {th[('grad_var', 0)][0]:.6f})")
    return "\n".join(lines)


def fit_limit(points):
    """Weighted least squares of MC = m + b_dh/d_h + b_H/H + b_d/d over (H, d_h, mean, se) points.

    Terms the sweep cannot separate (no variation, or collinear with earlier ones) are dropped;
    note that a sweep along H at fixed d_h plus d_h at fixed H cannot separate b_d from the rest
    (then m absorbs -b_d/(H0 d_h0)): add off-line points (e.g. 8x32, 32x32) to identify it.
    Returns m, se(m), {term: coefficient}, and the reduced chi^2.
    """
    X = np.array([[1.0, 1.0 / dh, 1.0 / H, 1.0 / (H * dh)] for H, dh, _, _ in points])
    y = np.array([p[2] for p in points])
    w = np.array([1.0 / max(p[3], 1e-300) ** 2 for p in points])
    cols = [0]
    for j in (1, 2, 3):
        if np.linalg.matrix_rank(X[:, cols + [j]], tol=1e-10) > len(cols) and len(cols) + 1 < len(points):
            cols.append(j)
    Xc = X[:, cols]
    cov = np.linalg.inv(Xc.T @ (w[:, None] * Xc))
    beta = cov @ (Xc.T @ (w * y))
    r = y - Xc @ beta
    dof = len(points) - len(cols)
    chi2 = float((w * r * r).sum() / dof) if dof > 0 else float("nan")
    names = ["m", "b_dh", "b_H", "b_d"]
    return beta[0], math.sqrt(cov[0, 0]), {names[j]: beta[k] for k, j in enumerate(cols)}, chi2


def extrapolate(a, th, sims):
    keys = list(sims)
    out = ["== extrapolation to d_h, H -> inf: fit MC = m + b_dh/d_h + b_H/H + b_d/d (weighted by 1/se^2)",
           f"{'metric':<9}{'l':>3} {'theory':>12} {'m (fit)':>12} {'+-':>9} {'b_dh':>9} {'b_H':>9} {'b_d':>9} "
           f"{'chi2/dof':>8} {'z':>7}"]
    ref = theory_paths_depth1(a) if (a.paths and a.depth == 1) else None
    for m in METRICS + (("value", "query", "key") if a.paths else ()):
        for l in range(a.depth + 1):
            if m in METRICS and ((m == "grad_var" and l == a.depth) or (m != "grad_var" and l == 0)):
                continue
            if m not in METRICS and l != 0:
                continue
            pts = [(H, dh, sims[(H, dh)][m][0][l], sims[(H, dh)][m][1][l]) for (H, dh) in keys]
            mfit, se, b, chi2 = fit_limit(pts)
            if m in METRICS:
                t, ts = th[(m, l)]
            elif ref:
                t, ts = ref[m]
            else:
                t, ts = float("nan"), 0.0
            out.append(f"{m:<9}{l:>3} {t:>12.6f} {mfit:>12.6f} {se:>9.2e} {b.get('b_dh', 0.0):>+9.4f} "
                       f"{b.get('b_H', 0.0):>+9.4f} {b.get('b_d', 0.0):>+9.4f} {chi2:>8.2f} {z(mfit, se, t, ts):>+7.2f}")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--norm", choices=["none", "pre", "post", "lns"], default="none")
    p.add_argument("--norm-type", choices=["layernorm", "rmsnorm"], default="layernorm")
    p.add_argument("--norm-eps", type=float, default=1e-5)
    p.add_argument("--mask", choices=["causal", "none"], default="causal")
    p.add_argument("--no-residual", dest="residual", action="store_false")
    p.add_argument("--branch-scale", default="1")
    p.add_argument("--qk-scale", choices=["1/sqrt(dh)", "1/dh"], default="1/sqrt(dh)")
    p.add_argument("--sigma-w2", type=float, default=1.0)
    p.add_argument("--sigma-qk2", type=float, default=1.0)
    p.add_argument("--q0", type=float, default=1.0)
    p.add_argument("--rho0", type=float, default=0.3)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--d-head", type=int, default=64)
    p.add_argument("--sweep", default="",
                   help="comma list HxDH[:DRAWS] (e.g. 8x32:400,16x64): several widths + extrapolation")
    p.add_argument("--draws", type=int, default=64, help="independent weight draws (the SE is over these)")
    p.add_argument("--inputs", type=int, default=8, help="inputs X_0 per weight draw")
    p.add_argument("--cotangents", type=int, default=4, help="Delta_L per input")
    p.add_argument("--paths", action="store_true", help="split grad_var into value/query/key paths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rng-dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--sigprop", default=None, help="sigprop binary (default build-attn/cli/sigprop)")
    p.add_argument("--attn-samples", type=int, default=40000, help="theory: logit draws per layer")
    p.add_argument("--error-batches", type=int, default=10, help="theory: batches for its _se")
    p.add_argument("--ref-samples", type=int, default=40000, help="numpy path reference: logit draws")
    p.add_argument("--json", default=None, help="write all numbers as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()

    th = run_theory(a)
    widths, draws = [], {}
    for w in (a.sweep.split(",") if a.sweep else [f"{a.heads}x{a.d_head}"]):
        hw, _, nd = w.partition(":")
        H, dh = (int(v) for v in hw.split("x"))
        widths.append((H, dh))
        draws[(H, dh)] = int(nd) if nd else a.draws
    print(f"spec: blocks=attn depth={a.depth} T={a.tokens} norm={a.norm}({a.norm_type}) mask={a.mask} "
          f"residual={a.residual} branch_scale={a.branch_scale} qk_scale={a.qk_scale} sigma_w2={a.sigma_w2} "
          f"sigma_qk2={a.sigma_qk2} q0={a.q0} rho0={a.rho0}; theory: {a.attn_samples} logit draws")
    sims = {}
    for (H, dh) in widths:
        sims[(H, dh)] = simulate(a, H, dh, draws[(H, dh)])
        print(table(a, th, sims[(H, dh)], H, dh), flush=True)
    if len(widths) >= 2:
        print(extrapolate(a, th, sims))
    if a.json:
        dump = {"args": vars(a), "theory": {f"{m}[{l}]": v for (m, l), v in th.items()},
                "mc": {f"{H}x{dh}": {k: {"mean": v[0].tolist(), "se": v[1].tolist()}
                                     for k, v in s.items() if not k.startswith("_")}
                       for (H, dh), s in sims.items()}}
        Path(a.json).write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
