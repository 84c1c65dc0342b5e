#!/usr/bin/env python3
"""sigprop's GPU Monte Carlo against PyTorch eager on the same Monte Carlo (bench/gpu_check.sh).

For each (d, T) in {256, 1024} x {32, 128}, L = 32, 256 samples, the default stack
(attn+mlp, pre-LN, gelu, causal, H = 8, r = 4):

  sigprop  build/bench/bench_cuda (every sample forward, backward from Delta_L, every metric
           of MODEL.md §2 per layer on the device; weights generated in-kernel from sigprop's
           Philox streams and regenerated in the backward pass);
  torch    the same stack in float32 PyTorch eager on the same GPU, batched over samples:
           weights from torch.randn on the device, autograd for Delta_{l-1} = J_l^T Delta_l
           (no weight gradients: the weights do not require grad), the same metrics
           (tools/torch_stack.py's block/state_metrics/step_metrics when that file exists).

Both are timed after a warm-up, on the same device, in the same script. "model TFLOP/s" is
the same count for both: the matrix products of the forward pass and of the backward pass to
the inputs (not sigprop's recomputation of each block's forward in the backward pass, not the
metrics), divided by the wall time; "% FP32 peak" divides by SMs x 128 FP32 lanes x 2 x the
maximum SM clock (nvidia-smi), the non-tensor FP32 peak (e.g. 67 TFLOP/s on an H100 SXM).

  python3 tools/torch_gpu_bench.py --bench build-gpu/bench/bench_cuda [--quick] [--json out.json]

Needs torch with CUDA. Without torch, prints the sigprop column only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = [(256, 32), (256, 128), (1024, 32), (1024, 128)]
DEPTH, SAMPLES, HEADS, RATIO = 32, 256, 8, 4


def model_flops(d, T, L, H=HEADS, r=RATIO):
    """Matrix-product flops per sample of forward + backward to the inputs (see module doc)."""
    R = r * d
    attn_fwd = 8 * T * d * d + 4 * T * T * d  # QKV, Q K^T, A V, W_O
    attn_bwd = 8 * T * d * d + 8 * T * T * d  # dcat, dA, dV, dQ, dK, dZ
    mlp_fwd = 4 * T * d * R
    mlp_bwd = 4 * T * d * R
    return L * (attn_fwd + attn_bwd + mlp_fwd + mlp_bwd)


def fp32_peak_tflops():
    """SMs x 128 FP32 lanes x 2 flops x max SM clock, from torch and nvidia-smi; None if unknown."""
    try:
        import torch

        sms = torch.cuda.get_device_properties(0).multi_processor_count
        mhz = float(subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                                   capture_output=True, text=True, check=True).stdout.split()[0])
        return sms * 128 * 2 * mhz * 1e6 / 1e12
    except Exception:  # noqa: BLE001 - the table just omits the column
        return None


def run_sigprop(bench, d, T, samples, precision):
    out = subprocess.run([bench, "--width", str(d), "--tokens", str(T), "--depth", str(DEPTH), "--samples",
                          str(samples), "--precision", precision], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench_cuda failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# PyTorch eager


def torch_spec(d, T):
    try:
        import torch_stack

        spec = torch_stack.make_spec(stack__width=d, stack__tokens=T, stack__depth=DEPTH, stack__heads=HEADS,
                                     stack__mlp_ratio=float(RATIO))
        return spec, torch_stack
    except ImportError:
        return None, None


def torch_mc_gpu(spec, ts, samples, batch, device="cuda"):
    """The Monte Carlo of torch_stack.torch_mc, every tensor on `device`. Returns (L+1, 7) means."""
    import torch

    dev = torch.device(device)
    T, d, H, dh, R = ts.dims(spec)
    L = spec["stack"]["depth"]
    ini = spec["init"]
    q0, rho0 = spec["input"]["q0"], spec["input"]["rho0"]
    sums = torch.zeros(L + 1, len(ts.METRICS), dtype=torch.float64, device=dev)
    for b0 in range(0, samples, batch):
        B = min(batch, samples - b0)
        X0 = math.sqrt(q0 * (1 - rho0)) * torch.randn(B, T, d, device=dev) + \
            math.sqrt(q0 * rho0) * torch.randn(B, 1, d, device=dev)
        xs = [X0.requires_grad_(True)]
        sw, sq = math.sqrt(ini["sigma_w2"] / d), math.sqrt(ini["sigma_qk2"] / d)
        for l in range(1, L + 1):
            w = {"wq": torch.randn(B, H, d, dh, device=dev) * sq, "wk": torch.randn(B, H, d, dh, device=dev) * sq,
                 "wv": torch.randn(B, H, d, dh, device=dev) * sw, "wo": torch.randn(B, d, d, device=dev) * sw,
                 "w1": torch.randn(B, d, R, device=dev) * sw,
                 "w2": torch.randn(B, R, d, device=dev) * math.sqrt(ini["sigma_w2"] / R),
                 "b1": torch.randn(B, R, device=dev) * math.sqrt(ini["sigma_b2"]),
                 "b2": torch.randn(B, d, device=dev) * math.sqrt(ini["sigma_b2"])}
            x = ts.block(spec, l, w, xs[-1])
            x.retain_grad()
            xs.append(x)
        DL = torch.randn(B, T, d, device=dev)
        (xs[-1] * DL).sum().backward()
        with torch.no_grad():
            X = torch.stack([x.detach() for x in xs])
            D = torch.stack([x.grad for x in xs])
            q, rho, res, er = ts.state_metrics(X)
            upd, ang = ts.step_metrics(X[:-1], X[1:])
            gv = (D * D).sum((-2, -1)) / (T * d)
            m = torch.zeros(L + 1, B, len(ts.METRICS), device=dev)
            m[:, :, 0], m[:, :, 1], m[:, :, 2], m[:, :, 3], m[:, :, 6] = q, rho, res, er, gv
            m[1:, :, 4], m[1:, :, 5] = upd, ang
            sums += m.double().sum(1)
        del xs, X, D, w
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (sums / samples).cpu()


def torch_batch(d, T, free_bytes):
    """Samples per autograd batch: autograd keeps every layer's weights (12 d^2 floats) and about
    40 (T, d)-sized activations per layer; use half the free memory."""
    per = DEPTH * (12 * d * d + 40 * T * d + 4 * HEADS * T * T) * 4
    return max(1, min(SAMPLES, int(0.5 * free_bytes // per)))


def run_torch(d, T, samples):
    import torch

    spec, ts = torch_spec(d, T)
    if spec is None:
        raise RuntimeError("tools/torch_stack.py not found")
    free, _ = torch.cuda.mem_get_info()
    batch = torch_batch(d, T, free)
    while True:  # the estimate of autograd's memory is rough: halve the batch on out-of-memory
        try:
            torch_mc_gpu(spec, ts, min(samples, batch), batch)  # warm-up: kernels, allocator
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            means = torch_mc_gpu(spec, ts, samples, batch)
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - t0
            torch.cuda.empty_cache()  # give the memory back before the next bench_cuda process starts
            return elapsed, batch, float(means[DEPTH, 0])
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            torch.cuda.empty_cache()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of bench_cuda")
    ap.add_argument("--samples", type=int, default=SAMPLES)
    ap.add_argument("--precision", default="float", choices=["float", "tf32"])
    ap.add_argument("--json", help="also write the rows as JSON")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)

    have_torch = not args.no_torch
    if have_torch:
        try:
            import torch

            have_torch = torch.cuda.is_available()
            torch.backends.cuda.matmul.allow_tf32 = False  # FP32 products, like sigprop --precision float
            torch.backends.cudnn.allow_tf32 = False
        except ImportError:
            have_torch = False
    peak = fp32_peak_tflops() if have_torch else None
    rows = []
    print(f"L = {DEPTH}, {args.samples} samples, H = {HEADS}, r = {RATIO}, precision {args.precision}; "
          f"FP32 peak {peak:.1f} TFLOP/s" if peak else f"L = {DEPTH}, {args.samples} samples")
    hdr = f"{'d':>5} {'T':>4} | {'sigprop s':>9} {'TFLOP/s':>8} {'%peak':>6} | {'torch s':>8} {'TFLOP/s':>8} " \
          f"{'%peak':>6} | {'speed-up':>8} | q_L sigprop / torch"
    print(hdr)
    print("-" * len(hdr))
    for d, T in CASES:
        fl = model_flops(d, T, DEPTH) * args.samples
        s = run_sigprop(args.bench, d, T, args.samples, args.precision)
        row = {"d": d, "T": T, "sigprop_s": s["seconds"], "sigprop_batch": s["batch"], "sigprop_q_L": s["q_L"],
               "flops": fl}
        row["sigprop_tflops"] = fl / s["seconds"] / 1e12
        if have_torch:
            try:
                ts, tb, tq = run_torch(d, T, args.samples)
                row.update(torch_s=ts, torch_batch=tb, torch_q_L=tq, torch_tflops=fl / ts / 1e12)
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: reported in the row
                row["torch_error"] = str(e).splitlines()[0][:80]
        rows.append(row)
        pk = (lambda tf: f"{100 * tf / peak:6.1f}") if peak else (lambda tf: f"{'-':>6}")
        line = f"{d:>5} {T:>4} | {row['sigprop_s']:>9.3f} {row['sigprop_tflops']:>8.2f} {pk(row['sigprop_tflops'])} | "
        if "torch_s" in row:
            line += f"{row['torch_s']:>8.3f} {row['torch_tflops']:>8.2f} {pk(row['torch_tflops'])} | " \
                    f"{row['torch_s'] / row['sigprop_s']:>7.2f}x | {row['sigprop_q_L']:.4g} / {row['torch_q_L']:.4g}"
        else:
            line += f"{'-':>8} {'-':>8} {'-':>6} | {'-':>8} | {row.get('torch_error', 'no torch')}"
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_fp32_tflops": peak, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
