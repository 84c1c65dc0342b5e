"""grad_var and rho against depth for Pre-LN, Post-LN and 1/sqrt(L) stacks.

Theory (infinite width) as lines, Monte Carlo at finite width as points with error bars (one
standard error). Writes a PNG (matplotlib's Agg backend, no display needed):

    .venv/bin/python examples/python/depth_curves.py --out out/depth_curves.png
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import sigprop  # noqa: E402

# label -> spec overrides (table.key)
STACKS: Dict[str, Dict[str, object]] = {
    "Pre-LN": {"stack.norm": "pre"},
    "Post-LN": {"stack.norm": "post"},
    "Pre-LN, a = 1/sqrt(L)": {"stack.norm": "pre", "stack.branch_scale": "1/sqrt(L)"},
}


def curves(
    depth: int, width: int, tokens: int, samples: int, threads: int
) -> List[Tuple[str, sigprop.Profile, sigprop.Profile]]:
    out = []
    for label, keys in STACKS.items():
        spec = dict(keys, **{"stack.depth": depth, "stack.width": width, "stack.tokens": tokens})
        th = sigprop.theory(spec)
        mc = sigprop.simulate(spec, samples=samples, seed=1, threads=threads)
        out.append((label, th, mc))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--depth", type=int, default=24)
    ap.add_argument("--width", type=int, default=128, help="Monte Carlo width d")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--samples", type=int, default=16, help="Monte Carlo stacks per point")
    ap.add_argument("--threads", type=int, default=0, help="Monte Carlo threads (0 = all)")
    ap.add_argument("--out", default="out/depth_curves.png")
    args = ap.parse_args()

    fig, (ax_g, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, th, mc) in enumerate(curves(args.depth, args.width, args.tokens, args.samples, args.threads)):
        color = f"C{i}"
        for ax, metric in ((ax_g, "grad_var"), (ax_r, "rho")):
            ax.plot(th.layers, th[metric], color=color, label=f"{label} (theory)")
            ax.errorbar(
                mc.layers, mc[metric], yerr=mc.se(metric), fmt="o", ms=3, color=color, capsize=2,
                label=f"{label} (d = {args.width}, {args.samples} samples)",
            )
    ax_g.set_yscale("log")
    ax_g.set_xlabel("layer l")
    ax_g.set_ylabel("grad_var (gradient second moment, 1 at layer L)")
    ax_r.set_xlabel("layer l")
    ax_r.set_ylabel("rho: token correlation")
    ax_r.legend(fontsize=7)
    fig.suptitle(f"sigprop {sigprop.version}: depth {args.depth}, {args.tokens} tokens")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(args.out)


if __name__ == "__main__":
    main()
