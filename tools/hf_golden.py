#!/usr/bin/env python3
"""Golden data from tiny HF transformers models, for sigprop's safetensors importers.

Issue 5 (validation against small real trained models) needs an oracle that is
independent of sigprop: this script builds four tiny, randomly initialised
Hugging Face models from config objects (nothing is downloaded from the hub),
saves them with `save_pretrained(..., safe_serialization=True)` and records, in
float64, what HF computes on a fixed input of T = 12 token ids.

  gpt2      GPT2LMHeadModel,    F32 weights, tied lm_head = wte
  neox      GPTNeoXForCausalLM, F16 weights, parallel residual, rotary_pct 0.5
  neox_seq  GPTNeoXForCausalLM, F32 weights, sequential residual
  llama     LlamaForCausalLM,   BF16 weights, GQA (4 heads, 2 kv heads), SwiGLU

Every parameter is moved away from HF's defaults (norm gains 1 + 0.1 N(0,1),
every bias 0.1 N(0,1), linear weights N(0, 1/fan_in), embeddings N(0, 0.5^2)),
so that a wrong orientation, a dropped bias or a wrong gain cannot hide.

The model is cast to the save dtype and saved; the saved file is then loaded
back with `from_pretrained(..., dtype=torch.float64, attn_implementation="eager")`,
so the golden numbers are computed from exactly the rounded weights on disk.

float64 caveat (checked in transformers 5.24.0): a few HF code paths compute
in float32 even in a float64 model: the rotary cos/sin (inv_freq and the angles
are float32), NeoX and Llama eager attention (softmax(..., dtype=float32)) and
LlamaRMSNorm (casts to float32). These give ~1e-7 relative errors. The golden
numbers are computed with those paths patched to float64 (the same formulas;
see `patch_float64`), so they are exact to ~1e-15; the unpatched HF output is
also run and its largest difference from the golden numbers is recorded as
`hf_unpatched_max_abs_diff` in golden.json. A plain numpy re-implementation
(`numpy_forward`) of each family, written from the conventions in
tests/golden/hf/README.md and fed the raw safetensors tensors, must agree with
the golden numbers to 1e-10: it checks the README.

Output, per model, in OUT/<name>/: model.safetensors, config.json (HF's), and
golden.json with input_ids (T), hidden_states (L+1, T, d; HF's tuple: [0] is
the embedding output, [l] the output of block l, and the last entry has the
final norm applied, as HF returns it), pre_final_norm (T, d; the input of the
final norm), logits (T, vocab), final_norm_applied_to_last, dtypes, and the
unpatched-HF differences.

Rerun (CPU, about 10 s):
  python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install -r tools/requirements-hf.txt
  /tmp/hfvenv/bin/python tools/hf_golden.py --out tests/golden/hf
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file as load_torch
from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM,
                          LlamaConfig, LlamaForCausalLM)
from transformers.models.gpt_neox import modeling_gpt_neox as m_neox
from transformers.models.llama import modeling_llama as m_llama

T_TOKENS = 12
VOCAB = 64


# --------------------------------------------------------------------------- models

def make_configs():
    common = dict(bos_token_id=0, eos_token_id=0)
    gpt2 = GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                      activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                      attn_pdrop=0.0, layer_norm_epsilon=1e-5, **common)
    neox_kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=64, rotary_pct=0.5, rotary_emb_base=10000,
                   max_position_embeddings=16, hidden_act="gelu", layer_norm_eps=1e-5,
                   tie_word_embeddings=False, attention_bias=True, attention_dropout=0.0,
                   hidden_dropout=0.0, **common)
    neox = GPTNeoXConfig(use_parallel_residual=True, **neox_kw)
    neox_seq = GPTNeoXConfig(use_parallel_residual=False, **neox_kw)
    llama = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                        rms_norm_eps=1e-6, rope_theta=10000.0, hidden_act="silu",
                        tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                        attention_dropout=0.0, **common)
    return [
        # name, class, config, save dtype, seed
        ("gpt2", GPT2LMHeadModel, gpt2, torch.float32, 1001),
        ("neox", GPTNeoXForCausalLM, neox, torch.float16, 1002),
        ("neox_seq", GPTNeoXForCausalLM, neox_seq, torch.float32, 1003),
        ("llama", LlamaForCausalLM, llama, torch.bfloat16, 1004),
    ]


EMBEDDING_NAMES = ("wte.weight", "wpe.weight", "embed_in.weight", "embed_tokens.weight")


@torch.no_grad()
def randomise(model, seed):
    """Every parameter away from its HF default; activations stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        n = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if p.ndim == 1:
            is_norm = any(k in name for k in ("ln_", "layernorm", "layer_norm", "norm."))
            if is_norm and name.endswith("weight"):
                v = 1.0 + 0.1 * n
            elif name.endswith("bias"):
                v = 0.1 * n
            else:
                raise RuntimeError(f"unclassified 1-D parameter {name}")
        elif name.endswith(EMBEDDING_NAMES):
            v = 0.5 * n
        elif ".c_attn." in name or ".c_proj." in name or ".c_fc." in name:
            v = n / math.sqrt(p.shape[0])      # GPT-2 Conv1D: (in, out)
        else:
            v = n / math.sqrt(p.shape[1])      # nn.Linear: (out, in)
        p.copy_(v.to(p.dtype))


# --------------------------------------------------------------------------- float64 patches

def rope_forward_f64(self, x, position_ids):
    """Same formula as {GPTNeoX,Llama}RotaryEmbedding.forward, all in float64."""
    cfg = self.config
    base = float(cfg.rope_parameters["rope_theta"])
    factor = cfg.rope_parameters.get("partial_rotary_factor", 1.0)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    dim = int(head_dim * factor)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def neox_eager_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask
    w = torch.nn.functional.softmax(w, dim=-1)
    out = torch.matmul(w, value).transpose(1, 2).contiguous()
    return out, w


def llama_eager_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key = m_llama.repeat_kv(key, module.num_key_value_groups)
    value = m_llama.repeat_kv(value, module.num_key_value_groups)
    return neox_eager_f64(module, query, key, value, attention_mask, scaling)


def rmsnorm_forward_f64(self, x):
    var = x.pow(2).mean(-1, keepdim=True)
    return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))


class patch_float64:
    """Context manager: HF's float32 islands (rope, softmax, RMSNorm) computed in float64."""
    SAVED = [(m_neox.GPTNeoXRotaryEmbedding, "forward", rope_forward_f64),
             (m_llama.LlamaRotaryEmbedding, "forward", rope_forward_f64),
             (m_neox, "eager_attention_forward", neox_eager_f64),
             (m_llama, "eager_attention_forward", llama_eager_f64),
             (m_llama.LlamaRMSNorm, "forward", rmsnorm_forward_f64)]

    def __enter__(self):
        self.old = [(o, a, getattr(o, a)) for o, a, _ in self.SAVED]
        for o, a, f in self.SAVED:
            setattr(o, a, f)

    def __exit__(self, *exc):
        for o, a, f in self.old:
            setattr(o, a, f)


# --------------------------------------------------------------------------- HF run

def final_norm_module(model):
    if isinstance(model, GPT2LMHeadModel):
        return model.transformer.ln_f
    if isinstance(model, GPTNeoXForCausalLM):
        return model.gpt_neox.final_layer_norm
    return model.model.norm


@torch.no_grad()
def hf_run(model, ids):
    captured = {}
    h = final_norm_module(model).register_forward_hook(
        lambda mod, args, out: captured.__setitem__("pre", args[0].detach().clone()))
    out = model(input_ids=ids, output_hidden_states=True, use_cache=False, return_dict=True)
    h.remove()
    hs = torch.stack([x[0] for x in out.hidden_states])
    return hs, captured["pre"][0], out.logits[0]


# --------------------------------------------------------------------------- numpy reference

def np_ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def np_rms(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def np_gelu_erf(x):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def np_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def np_attention(q, k, v, scale):
    """q (H,T,dh), k/v (H,T,dh): causal softmax attention; returns (T, H*dh) head-major."""
    T = q.shape[1]
    s = np.einsum("htd,hsd->hts", q, k) * scale
    s = np.where(np.triu(np.ones((T, T), bool), 1)[None], -np.inf, s)
    s = s - s.max(-1, keepdims=True)
    a = np.exp(s)
    a /= a.sum(-1, keepdims=True)
    o = np.einsum("hts,hsd->htd", a, v)
    return o.transpose(1, 0, 2).reshape(T, -1)


def np_rope(x, rot, base, pos):
    """x (H,T,dh): rotate_half rope on the first `rot` dims; pairs (i, i + rot/2)."""
    inv = 1.0 / base ** (np.arange(0, rot, 2, dtype=np.float64) / rot)
    ang = pos[:, None] * inv[None, :]                      # (T, rot/2)
    cos = np.concatenate([np.cos(ang)] * 2, -1)
    sin = np.concatenate([np.sin(ang)] * 2, -1)
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rh = np.concatenate([-xr[..., half:], xr[..., :half]], -1)
    return np.concatenate([xr * cos + rh * sin, xp], -1)


def numpy_forward(name, cfg, W, ids):
    """Independent float64 forward from raw safetensors tensors, per the README conventions."""
    W = {k: v.astype(np.float64) for k, v in W.items()}
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    hs = []
    if name == "gpt2":
        d, H = cfg.n_embd, cfg.n_head
        dh, eps = d // H, cfg.layer_norm_epsilon
        x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:T]
        hs.append(x)
        for l in range(cfg.n_layer):
            p = f"transformer.h.{l}."
            z = np_ln(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
            qkv = z @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]      # (T, 3d)
            q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(T, H, dh).transpose(1, 0, 2) for i in range(3))
            x = x + np_attention(q, k, v, 1 / math.sqrt(dh)) @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
            z = np_ln(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
            m = np_gelu_tanh(z @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
            x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
            hs.append(x)
        pre = x
        y = np_ln(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
        logits = y @ W["transformer.wte.weight"].T                                 # tied
    elif name.startswith("neox"):
        d, H = cfg.hidden_size, cfg.num_attention_heads
        dh, eps = d // H, cfg.layer_norm_eps
        rot = int(dh * cfg.rope_parameters["partial_rotary_factor"])
        base = float(cfg.rope_parameters["rope_theta"])
        x = W["gpt_neox.embed_in.weight"][ids]
        hs.append(x)
        for l in range(cfg.num_hidden_layers):
            p = f"gpt_neox.layers.{l}."
            z = np_ln(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)
            qkv = z @ W[p + "attention.query_key_value.weight"].T + W[p + "attention.query_key_value.bias"]
            qkv = qkv.reshape(T, H, 3, dh).transpose(2, 1, 0, 3)                    # (3, H, T, dh)
            q, k, v = np_rope(qkv[0], rot, base, pos), np_rope(qkv[1], rot, base, pos), qkv[2]
            att = np_attention(q, k, v, 1 / math.sqrt(dh)) @ W[p + "attention.dense.weight"].T \
                + W[p + "attention.dense.bias"]

            def mlp(u):
                hmid = np_gelu_erf(u @ W[p + "mlp.dense_h_to_4h.weight"].T + W[p + "mlp.dense_h_to_4h.bias"])
                return hmid @ W[p + "mlp.dense_4h_to_h.weight"].T + W[p + "mlp.dense_4h_to_h.bias"]
            ln2 = lambda u: np_ln(u, W[p + "post_attention_layernorm.weight"],
                                  W[p + "post_attention_layernorm.bias"], eps)
            if cfg.use_parallel_residual:
                x = x + att + mlp(ln2(x))
            else:
                y = x + att
                x = y + mlp(ln2(y))
            hs.append(x)
        pre = x
        y = np_ln(x, W["gpt_neox.final_layer_norm.weight"], W["gpt_neox.final_layer_norm.bias"], eps)
        logits = y @ W["embed_out.weight"].T if "embed_out.weight" in W else y @ W["lm_head.weight"].T
    else:
        d, H, Hkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        dh, eps = d // H, cfg.rms_norm_eps
        base = float(cfg.rope_parameters["rope_theta"])
        x = W["model.embed_tokens.weight"][ids]
        hs.append(x)
        for l in range(cfg.num_hidden_layers):
            p = f"model.layers.{l}."
            z = np_rms(x, W[p + "input_layernorm.weight"], eps)
            q = (z @ W[p + "self_attn.q_proj.weight"].T).reshape(T, H, dh).transpose(1, 0, 2)
            k = (z @ W[p + "self_attn.k_proj.weight"].T).reshape(T, Hkv, dh).transpose(1, 0, 2)
            v = (z @ W[p + "self_attn.v_proj.weight"].T).reshape(T, Hkv, dh).transpose(1, 0, 2)
            q, k = np_rope(q, dh, base, pos), np_rope(k, dh, base, pos)
            rep = H // Hkv                                  # query head h uses kv head h // rep
            k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
            x = x + np_attention(q, k, v, 1 / math.sqrt(dh)) @ W[p + "self_attn.o_proj.weight"].T
            z = np_rms(x, W[p + "post_attention_layernorm.weight"], eps)
            g = z @ W[p + "mlp.gate_proj.weight"].T
            u = z @ W[p + "mlp.up_proj.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T
            hs.append(x)
        pre = x
        y = np_rms(x, W["model.norm.weight"], eps)
        logits = y @ W["lm_head.weight"].T
    hs[-1] = y      # HF's tuple carries the final-normed state last
    return np.stack(hs), pre, logits


# --------------------------------------------------------------------------- main

def tolist(t):
    return np.asarray(t, dtype=np.float64).tolist()


def build_one(out_dir, name, cls, cfg, save_dtype, seed):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    randomise(model, seed)
    model = model.to(save_dtype)
    model.save_pretrained(d, safe_serialization=True)
    gen_cfg = os.path.join(d, "generation_config.json")     # not needed by sigprop
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)

    g = torch.Generator().manual_seed(seed + 77)
    ids = torch.randint(0, cfg.vocab_size, (1, T_TOKENS), generator=g)

    m64 = cls.from_pretrained(d, dtype=torch.float64, attn_implementation="eager").eval()
    # the loaded float64 model must hold exactly the rounded weights of the in-memory model
    src = dict(model.named_parameters())
    for n, p in m64.named_parameters():
        assert torch.equal(p, src[n].to(torch.float64)), n

    hs_raw, pre_raw, lg_raw = hf_run(m64, ids)
    with patch_float64():
        hs, pre, logits = hf_run(m64, ids)

    # final norm on the last entry: numerically, not only by reading the source
    with patch_float64(), torch.no_grad():
        normed = final_norm_module(m64)(pre[None])[0]
    applied = bool(torch.equal(normed, hs[-1]))
    assert applied, "expected HF to put the final-normed state last in hidden_states"

    # independent numpy forward from the raw file
    raw = load_torch(os.path.join(d, "model.safetensors"))
    for n, t in raw.items():
        assert t.dtype == save_dtype, (n, t.dtype)
    W = {n: t.to(torch.float64).numpy() for n, t in raw.items()}
    nhs, npre, nlog = numpy_forward(name, cfg, W, ids[0].numpy())
    np_err = max(np.abs(nhs - hs.numpy()).max(), np.abs(npre - pre.numpy()).max(),
                 np.abs(nlog - logits.numpy()).max())
    assert np_err < 1e-10, f"{name}: numpy reference differs from HF by {np_err}"

    unpatched = {"hidden_states": float((hs_raw - hs).abs().max()),
                 "pre_final_norm": float((pre_raw - pre).abs().max()),
                 "logits": float((lg_raw - logits).abs().max())}
    gold = {
        "model": name,
        "hf_class": cls.__name__,
        "save_dtype": str(save_dtype).replace("torch.", ""),
        "compute_dtype": "float64",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "T": T_TOKENS,
        "input_ids": ids[0].tolist(),
        "position_ids": list(range(T_TOKENS)),
        "final_norm_applied_to_last": applied,
        "float64_patched": name != "gpt2",
        "hf_unpatched_max_abs_diff": unpatched,
        "numpy_reference_max_abs_diff": float(np_err),
        "hidden_states": tolist(hs),
        "pre_final_norm": tolist(pre),
        "logits": tolist(logits),
    }
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(gold, f, separators=(",", ":"))
        f.write("\n")
    return gold


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder, e.g. tests/golden/hf")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name, cls, cfg, dt, seed in make_configs():
        g = build_one(args.out, name, cls, cfg, dt, seed)
        hs = np.asarray(g["hidden_states"])
        print(f"{name:9s} {g['save_dtype']:8s} |h| rms per layer "
              + " ".join(f"{math.sqrt((x * x).mean()):.3f}" for x in hs)
              + f"  logits rms {math.sqrt((np.asarray(g['logits']) ** 2).mean()):.3f}"
              + f"  numpy diff {g['numpy_reference_max_abs_diff']:.1e}"
              + f"  unpatched HF diff (logits) {g['hf_unpatched_max_abs_diff']['logits']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
