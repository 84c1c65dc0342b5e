#!/usr/bin/env python3
"""Golden token kernels from neural-tangents, an independent implementation.

For every case below this script translates a sigprop spec (MODEL.md §1, §3)
into a neural-tangents `stax` network, evaluates NT's infinite-width NNGP
kernel after every block l = 0..L in float64, and writes one JSON file per
case into tests/golden/nt/. tests/test_golden_nt.cpp replays each spec through
sigprop::theory::kernel_recursion and compares every kernel entry.

    /tmp/ntvenv/bin/python tools/nt_golden.py            # writes tests/golden/nt/*.json
    /tmp/ntvenv/bin/python tools/nt_golden.py --check    # fails if a file would change

Environment: tools/requirements-nt.txt (neural-tangents 0.6.5, jax 0.4.23 CPU).
Files carry no date and no randomness, so a rerun is byte-identical.

How the sigprop stack maps onto stax (established from NT's source, see the
comments in `block` and `attention`):
  * Input. sigprop's X_0 is Gaussian with token kernel K0 (q0 on the diagonal,
    q0 rho0 off it). NT's input kernel is x x^T / d0; x = sqrt(d0) chol(K0)
    gives K0 to rounding. A leading Dense(W_std=1, b_std=None) maps K0 to
    itself and marks the kernel Gaussian, as sigprop's X_0 is (NT's FanInSum
    and LayerNorm refuse non-Gaussian inputs). Layer 0 is taken after it.
  * Dense(W_std, b_std) has NNGP W_std^2 K + b_std^2 in both 'ntk' and
    'standard' parameterizations (linear.py, Dense.kernel_fn: `fc` is applied
    to nngp in both branches; only ntk differs). So W_std = sqrt(sigma_w2),
    b_std = sqrt(sigma_b2) is MODEL.md's N(0, sigma_w2/fan_in), N(0, sigma_b2).
    The script checks the parameterization claim numerically on every case.
  * Residual halves: FanOut(2) >> parallel(skip, branch) >> FanInSum(). NT adds
    the branch kernels (no cross term); that is exact because every branch
    ends in fresh zero-mean weights, which is also sigprop's argument.
    The LayerNorm-Scaling gain 1/sqrt(l) is ABRelu(c, c), i.e. x -> c x, whose
    NNGP is c^2 K exactly; DeepNorm's skip weight lambda is Dense(W_std=lambda)
    (same kernel lambda^2 K; see `block` for why not ABRelu).
  * LayerNorm(axis=-1, eps) divides the kernel by sqrt((eps + K_tt)(eps + K_ss))
    (linear.py, LayerNorm.kernel_fn), which is sigprop's infinite-width norm with
    stack.norm_eps = eps (NT's default eps is 1e-12; we pass eps explicitly).
  * Attention: see `attention` below. Tokens are NT's spatial axis there, so
    attention cases use inputs of shape (1, T, d0) and the full spatial
    T x T kernel; all other cases use (T, d0) with tokens as batch entries.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

SCRIPT = "tools/nt_golden.py"
ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "golden" / "nt"


class NotExpressible(Exception):
    """The spec uses something NT's closed-form kernels cannot represent exactly."""


# --------------------------------------------------------------------------- specs

DEFAULT_SPEC = {
    "stack": {
        "depth": 4, "tokens": 4, "width": 512, "heads": 8, "mlp_ratio": 4.0,
        "blocks": "dense", "norm": "none", "norm_type": "layernorm", "norm_eps": 1e-5,
        "activation": "relu", "mask": "none", "residual": False, "branch_scale": "1",
        "qk_scale": "1/dh",
    },
    "init": {"sigma_w2": 1.0, "sigma_b2": 0.0, "sigma_qk2": 1.0},
    "input": {"q0": 1.0, "rho0": 0.1},
}


def make_spec(stack=None, init=None, inp=None):
    spec = json.loads(json.dumps(DEFAULT_SPEC))
    spec["stack"].update(stack or {})
    spec["init"].update(init or {})
    spec["input"].update(inp or {})
    return spec


# name -> (spec, one-line description)
CASES = {
    # Dense stacks X' = phi(X) W + b (Poole 2016 / Schoenholz 2017).
    "dense_relu_he": (
        make_spec({"depth": 5, "tokens": 4, "activation": "relu"}, {"sigma_w2": 2.0, "sigma_b2": 0.0},
                  {"q0": 1.0, "rho0": 0.3}),
        "dense relu at the He point sigma_w2 = 2, sigma_b2 = 0"),
    "dense_relu_bias": (
        make_spec({"depth": 4, "tokens": 5, "activation": "relu"}, {"sigma_w2": 1.5, "sigma_b2": 0.1},
                  {"q0": 0.7, "rho0": 0.5}),
        "dense relu, sigma_w2 = 1.5, sigma_b2 = 0.1"),
    "dense_erf_critical": (
        make_spec({"depth": 6, "tokens": 5, "activation": "erf"}, {"sigma_w2": 1.76, "sigma_b2": 0.05},
                  {"q0": 1.0, "rho0": 0.2}),
        "dense erf near the tanh edge of chaos (sigma_w2 = 1.76, sigma_b2 = 0.05)"),
    "dense_erf_origin_critical": (
        make_spec({"depth": 6, "tokens": 4, "activation": "erf"}, {"sigma_w2": math.pi / 4, "sigma_b2": 0.0},
                  {"q0": 0.5, "rho0": 0.0}),
        "dense erf at its critical point sigma_w2 = pi/4, sigma_b2 = 0 (chi = 1 at q* = 0)"),
    "dense_erf_chaotic": (
        make_spec({"depth": 3, "tokens": 6, "activation": "erf"}, {"sigma_w2": 4.0, "sigma_b2": 0.1},
                  {"q0": 2.0, "rho0": 0.8}),
        "dense erf deep in the chaotic phase (sigma_w2 = 4, sigma_b2 = 0.1)"),
    "dense_gelu": (
        make_spec({"depth": 4, "tokens": 4, "activation": "gelu"}, {"sigma_w2": 1.8, "sigma_b2": 0.02},
                  {"q0": 1.5, "rho0": 0.4}),
        "dense gelu (exact erf form), sigma_w2 = 1.8, sigma_b2 = 0.02"),
    # Residual MLP stacks X' = X + a MLP(pre(X)).
    "mlp_none_relu": (
        make_spec({"depth": 5, "tokens": 5, "blocks": "mlp", "norm": "none", "residual": True,
                   "activation": "relu"}, {"sigma_w2": 1.0, "sigma_b2": 0.1}, {"q0": 1.0, "rho0": 0.3}),
        "residual relu MLP without norm, branch scale 1"),
    "mlp_none_erf_scaled": (
        make_spec({"depth": 6, "tokens": 4, "blocks": "mlp", "norm": "none", "residual": True,
                   "activation": "erf", "branch_scale": "1/sqrt(L)"}, {"sigma_w2": 2.0, "sigma_b2": 0.05},
                  {"q0": 0.8, "rho0": 0.1}),
        "residual erf MLP without norm, branch scale 1/sqrt(L)"),
    "mlp_pre_gelu": (
        make_spec({"depth": 6, "tokens": 6, "blocks": "mlp", "norm": "pre", "residual": True,
                   "activation": "gelu", "norm_eps": 1e-5}, {"sigma_w2": 1.0, "sigma_b2": 0.0},
                  {"q0": 1.0, "rho0": 0.1}),
        "Pre-LN residual gelu MLP, norm_eps = 1e-5 (sigprop default)"),
    "mlp_pre_relu_eps0": (
        make_spec({"depth": 4, "tokens": 5, "blocks": "mlp", "norm": "pre", "residual": True,
                   "activation": "relu", "norm_eps": 0.0, "branch_scale": 0.5},
                  {"sigma_w2": 2.0, "sigma_b2": 0.1}, {"q0": 3.0, "rho0": 0.25}),
        "Pre-LN residual relu MLP, norm_eps = 0, branch scale 0.5"),
    "mlp_pre_erf_bigeps": (
        make_spec({"depth": 5, "tokens": 4, "blocks": "mlp", "norm": "pre", "residual": True,
                   "activation": "erf", "norm_eps": 0.05}, {"sigma_w2": 1.5, "sigma_b2": 0.2},
                  {"q0": 0.3, "rho0": 0.6}),
        "Pre-LN residual erf MLP with a large norm_eps = 0.05 (eps visible in the kernel)"),
    "mlp_post_gelu": (
        make_spec({"depth": 4, "tokens": 5, "blocks": "mlp", "norm": "post", "residual": True,
                   "activation": "gelu", "norm_eps": 1e-5}, {"sigma_w2": 1.2, "sigma_b2": 0.05},
                  {"q0": 2.0, "rho0": 0.2}),
        "Post-LN residual gelu MLP"),
    "mlp_lns_relu": (
        make_spec({"depth": 5, "tokens": 4, "blocks": "mlp", "norm": "lns", "residual": True,
                   "activation": "relu", "norm_eps": 1e-5}, {"sigma_w2": 2.0, "sigma_b2": 0.0},
                  {"q0": 1.0, "rho0": 0.3}),
        "LayerNorm-Scaling residual relu MLP: X' = X + MLP(LN(X)/sqrt(l))"),
    "mlp_deepnorm_gelu": (
        make_spec({"depth": 4, "tokens": 4, "blocks": "mlp", "norm": "deepnorm", "residual": True,
                   "activation": "gelu", "norm_eps": 1e-5}, {"sigma_w2": 1.0, "sigma_b2": 0.05},
                  {"q0": 1.0, "rho0": 0.1}),
        "DeepNorm residual gelu MLP: X' = LN(lambda X + MLP_beta(X)), lambda = (2L)^(1/4), beta = (8L)^(-1/4)"),
    # Uniform attention (qk_scale = 1/dh, or sigma_qk2 = 0), mask = none.
    "attn_pure_1dh": (
        make_spec({"depth": 3, "tokens": 5, "blocks": "attn", "norm": "none", "residual": False,
                   "qk_scale": "1/dh"}, {"sigma_w2": 1.3, "sigma_qk2": 1.0}, {"q0": 1.0, "rho0": 0.2}),
        "pure attention stack (Dong et al.), uniform attention: rank collapse in one layer"),
    "attn_pre_1dh": (
        make_spec({"depth": 5, "tokens": 4, "blocks": "attn", "norm": "pre", "residual": True,
                   "qk_scale": "1/dh", "norm_eps": 1e-5}, {"sigma_w2": 1.0, "sigma_qk2": 2.0},
                  {"q0": 1.0, "rho0": 0.1}),
        "Pre-LN residual attention, qk_scale = 1/dh"),
    "attn_none_qk0": (
        make_spec({"depth": 4, "tokens": 6, "blocks": "attn", "norm": "none", "residual": True,
                   "qk_scale": "1/sqrt(dh)"}, {"sigma_w2": 0.8, "sigma_qk2": 0.0}, {"q0": 1.0, "rho0": 0.0}),
        "residual attention without norm, qk_scale = 1/sqrt(dh) with sigma_qk2 = 0 (uniform)"),
    "attnmlp_pre_gelu_1dh": (
        make_spec({"depth": 6, "tokens": 6, "blocks": "attn+mlp", "norm": "pre", "residual": True,
                   "activation": "gelu", "qk_scale": "1/dh", "norm_eps": 1e-5},
                  {"sigma_w2": 1.0, "sigma_b2": 0.0, "sigma_qk2": 1.0}, {"q0": 1.0, "rho0": 0.1}),
        "Pre-LN transformer (attn + gelu MLP), uniform attention, mask = none"),
    "attnmlp_post_relu_1dh": (
        make_spec({"depth": 4, "tokens": 5, "blocks": "attn+mlp", "norm": "post", "residual": True,
                   "activation": "relu", "qk_scale": "1/dh", "norm_eps": 1e-5,
                   "branch_scale": "1/sqrt(2L)"},
                  {"sigma_w2": 2.0, "sigma_b2": 0.1, "sigma_qk2": 1.0}, {"q0": 0.5, "rho0": 0.3}),
        "Post-LN transformer (attn + relu MLP), branch scale 1/sqrt(2L), uniform attention"),
}


# --------------------------------------------------------------------------- translation

def branch_scale_value(spec) -> float:
    bs, L = spec["stack"]["branch_scale"], spec["stack"]["depth"]
    if isinstance(bs, (int, float)) and not isinstance(bs, bool):
        return float(bs)
    return {"1": 1.0, "1/sqrt(L)": 1.0 / math.sqrt(L), "1/sqrt(2L)": 1.0 / math.sqrt(2.0 * L)}[bs]


def scale(c: float):
    """x -> c x. ABRelu(a, b) = a min(x, 0) + b max(x, 0); with a = b = c its NNGP is c^2 K exactly."""
    return stax.ABRelu(c, c)


def activation(name: str):
    if name == "relu":
        return stax.Relu()
    if name == "erf":
        return stax.Erf()  # a erf(b x) + c with a = b = 1, c = 0: arcsin kernel
    if name == "gelu":
        return stax.Gelu(approximate=False)  # exact erf-form GELU (Tsuchida et al. kernel)
    if name == "linear":
        return stax.Identity()
    raise NotExpressible(f"activation {name!r} has no closed-form NT kernel")


def attention(spec, w_std: float, out_scale: float, width: int):
    """Uniform softmax attention at infinite width.

    NT's GlobalSelfAttention (linear.py) with linear_scaling=True *ties* the query
    and key weights and scales logits by 1/(n_chan_in n_chan_key): its logits then
    converge to QK_std * K_ts (K the input kernel, QK_std = W_query_std W_key_std)
    and the kernel is OV_std^2 softmax(QK_std K) K softmax(QK_std K)^T + b_std^2.
    sigprop (MODEL.md) has independent W_Q, W_K, whose 1/d_h-scaled logits vanish,
    so A is uniform. The two agree only when NT's logits are zero too: W_key_std = 0.
    Then A = softmax(0) = 1/T everywhere (NT has no causal mask: its `mask` marks
    padded inputs), and with W_value_std = W_out_std = sqrt(sigma_w2), b_std = None
    (no attention bias) NT gives sigma_w2^2 A K A^T = sigprop's uniform attention.
    linear_scaling=False with SOFTMAX has no NT kernel (NotImplementedError).
    """
    st = spec["stack"]
    if st["mask"] != "none":
        raise NotExpressible("NT has no causal attention kernel")
    if not (st["qk_scale"] == "1/dh" or spec["init"]["sigma_qk2"] == 0.0):
        raise NotExpressible("sampled (1/sqrt(dh)) attention has no NT kernel")
    return stax.GlobalSelfAttention(
        n_chan_out=width, n_chan_key=width, n_chan_val=width, n_heads=st["heads"],
        linear_scaling=True, W_key_std=0.0, W_query_std=1.0,
        W_value_std=w_std, W_out_std=w_std * out_scale, b_std=None,
        attention_mechanism="SOFTMAX")


def block(spec, l: int, parameterization: str):
    """Block l (1-based) of MODEL.md §1 as a stax layer."""
    st, ini = spec["stack"], spec["init"]
    L, width = st["depth"], st["width"]
    norm = st["norm"]
    a = branch_scale_value(spec)
    wmul = 1.0
    lam = 1.0 if st["residual"] else 0.0
    if norm == "deepnorm":
        lam, wmul, a = (2.0 * L) ** 0.25, (8.0 * L) ** -0.5, 1.0
    if st["norm_type"] not in ("layernorm", "rmsnorm"):
        raise NotExpressible(st["norm_type"])
    # At infinite width LayerNorm and RMSNorm have the same kernel (token means vanish).
    N = lambda: stax.LayerNorm(axis=-1, eps=st["norm_eps"])  # noqa: E731
    w_std = math.sqrt(ini["sigma_w2"] * wmul)
    b_std = math.sqrt(ini["sigma_b2"])
    dense = lambda ws, bs: stax.Dense(width, W_std=ws, b_std=bs, parameterization=parameterization)  # noqa: E731

    def branch(kind):
        if kind == "dense":
            return stax.serial(activation(st["activation"]), dense(w_std * a, b_std * a))
        if kind == "mlp":
            return stax.serial(dense(w_std, b_std), activation(st["activation"]), dense(w_std * a, b_std * a))
        if kind == "attn":
            return attention(spec, w_std, a, width)
        raise AssertionError(kind)

    halves = {"attn+mlp": ["attn", "mlp"], "attn": ["attn"], "mlp": ["mlp"], "dense": ["dense"]}[st["blocks"]]
    layers = []
    for kind in halves:
        f = branch(kind)
        if norm in ("pre", "lns"):
            pre = [N()] + ([scale(1.0 / math.sqrt(l))] if norm == "lns" else [])
            f = stax.serial(*pre, f)
        if lam == 0.0:
            half = [f]
        else:
            # lambda X for DeepNorm: NT's FanInSum refuses ABRelu's output (it flags every
            # nonlinearity non-Gaussian, even the linear ABRelu(c, c)), so the skip weight is a
            # Dense(W_std=lambda, b_std=None): same kernel lambda^2 K, Gaussian flag kept, and
            # no cross term is lost since FanInSum never adds one (the branch ends in fresh weights).
            skip = stax.Identity() if lam == 1.0 else dense(lam, None)
            half = [stax.FanOut(2), stax.parallel(skip, f), stax.FanInSum()]
        if norm in ("post", "deepnorm"):
            half.append(N())
        layers.extend(half)
    return stax.serial(*layers)


def input_kernel(spec) -> np.ndarray:
    T, q0, rho0 = spec["stack"]["tokens"], spec["input"]["q0"], spec["input"]["rho0"]
    K = np.full((T, T), q0 * rho0)
    np.fill_diagonal(K, q0)
    return K


def nt_kernels(spec, parameterization: str = "ntk") -> list[np.ndarray]:
    """NT's NNGP token kernel after the embedding (l = 0) and after each block l = 1..L."""
    st = spec["stack"]
    T, L = st["tokens"], st["depth"]
    spatial = st["blocks"] in ("attn", "attn+mlp")
    K0 = input_kernel(spec)
    d0 = T
    x = math.sqrt(d0) * np.linalg.cholesky(K0)  # x x^T / d0 = K0
    x = jnp.asarray(x.reshape((1, T, d0)) if spatial else x, dtype=jnp.float64)
    embed = stax.Dense(st["width"], W_std=1.0, b_std=None, parameterization=parameterization)
    blocks = [block(spec, l, parameterization) for l in range(1, L + 1)]
    out = []
    for l in range(L + 1):
        _, _, kernel_fn = stax.serial(embed, *blocks[:l])
        k = np.asarray(kernel_fn(x, None, "nngp"), dtype=np.float64)
        k = k.reshape((T, T))
        out.append(k)
    return out


# --------------------------------------------------------------------------- files

def versions() -> dict:
    return {"neural_tangents": nt.__version__, "jax": jax.__version__, "jaxlib": jax.lib.__version__}


def nt_description(spec) -> str:
    st = spec["stack"]
    shape = "(1, T, d0): tokens on NT's spatial axis" if st["blocks"] in ("attn", "attn+mlp") else \
        "(T, d0): tokens as NT batch entries"
    return (f"x = sqrt(d0) chol(K0), shape {shape}; stax.serial(Dense(W_std=1, b_std=None), block_1..block_L); "
            "see tools/nt_golden.py:block for the per-block translation")


def case_document(name: str, spec, description: str) -> dict:
    Ks = nt_kernels(spec, "ntk")
    Ks_std = nt_kernels(spec, "standard")
    for l, (a, b) in enumerate(zip(Ks, Ks_std)):
        # The NNGP must not depend on the parameterization (only the NTK does).
        if not np.array_equal(a, b):
            raise AssertionError(f"{name}: ntk vs standard NNGP differ at layer {l}: {np.max(np.abs(a - b))}")
    dev = np.max(np.abs(Ks[0] - input_kernel(spec)))
    if dev > 1e-14:
        raise AssertionError(f"{name}: NT input kernel differs from K0 by {dev}")
    for l, K in enumerate(Ks):
        if not np.all(np.isfinite(K)):
            raise AssertionError(f"{name}: non-finite NT kernel at layer {l}")
        if np.max(np.abs(K - K.T)) > 1e-12 * max(1.0, np.max(np.abs(K))):
            raise AssertionError(f"{name}: NT kernel not symmetric at layer {l}")
    doc = {
        "script": SCRIPT,
        **versions(),
        "seed": None,
        "x64": True,
        "case": name,
        "description": description,
        "nt_stack": nt_description(spec),
        "kernel": "nngp",
        "spec": spec,
        "tokens": spec["stack"]["tokens"],
        "depth": spec["stack"]["depth"],
        "kernels": [[[float(v) for v in row] for row in K] for K in Ks],
    }
    return doc


def render(doc: dict) -> str:
    # Kernels one matrix row per line: small, diffable files; repr() floats round-trip exactly.
    head = {k: v for k, v in doc.items() if k != "kernels"}
    lines = json.dumps(head, indent=1, sort_keys=False).rstrip("}").rstrip().rstrip("\n")
    rows = []
    for K in doc["kernels"]:
        rows.append("  [\n" + ",\n".join("   [" + ", ".join(repr(v) for v in row) + "]" for row in K) + "\n  ]")
    return lines + ',\n "kernels": [\n' + ",\n".join(rows) + "\n ]\n}\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="do not write; fail if any file differs")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = 0
    for name, (spec, desc) in CASES.items():
        text = render(case_document(name, spec, desc))
        assert json.loads(text)["kernels"] is not None
        path = args.out / f"{name}.json"
        old = path.read_text() if path.exists() else None
        if args.check:
            if old != text:
                print(f"differs: {path}")
                stale += 1
        elif old != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({len(text)} bytes)")
        else:
            print(f"unchanged {path.relative_to(ROOT)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
