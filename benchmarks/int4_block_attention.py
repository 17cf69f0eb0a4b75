"""Attention for a verification block of M rows at Qwen2.5-1.5B's shape (12 heads, 2 KV heads, head dim 128, bf16):
the fused int4 step's per-row C++ single-query attention (``quant.fused.block_attention``) against the module
path's masked ``grouped_attention``, side by side (rounds rotate the order; medians), per layer call.

    HELPER=quantrows /tmp/albumen-tools/heavy -t 120 -- .venv/bin/python benchmarks/int4_block_attention.py
"""

from __future__ import annotations

import statistics
import time

import torch

from albumen.llm.kernels.decode_ops import decode_ops_module
from albumen.llm.model import grouped_attention
from albumen.llm.quant.fused import block_attention


def main(repeats: int = 51) -> None:
    torch.set_num_threads(1)
    ops = decode_ops_module()
    if ops is None:
        raise SystemExit("the engine's C++ decode ops are not built")
    torch.manual_seed(0)
    nh, nkv, hd, dt = 12, 2, 128, torch.bfloat16
    print(f"{'context':>7} {'rows':>4} {'per-row C++ us':>15} {'grouped masked us':>18} {'ratio':>6}")
    for ctx in (64, 512):
        kc, vc = torch.randn(1, nkv, 1024, hd, dtype=dt), torch.randn(1, nkv, 1024, hd, dtype=dt)
        for m in (2, 4, 8):
            start = ctx - m
            q = torch.randn(1, nh, m, hd, dtype=dt)
            pos = torch.arange(start, ctx)
            mask = torch.arange(ctx)[None, :] <= pos[:, None]  # (M, S)
            calls = {"rows": lambda: block_attention(ops, q, kc, vc, start),
                     "grouped": lambda: grouped_attention(q, kc[:, :, :ctx], vc[:, :, :ctx], mask)}
            times = {n: [] for n in calls}
            names = list(calls)
            for r in range(repeats):
                for n in names[r % 2:] + names[:r % 2]:
                    t0 = time.perf_counter()
                    calls[n]()
                    times[n].append(time.perf_counter() - t0)
            a, b = (1e6 * statistics.median(times[n]) for n in names)
            print(f"{ctx:7d} {m:4d} {a:15.1f} {b:18.1f} {a / b:6.2f}")


if __name__ == "__main__":
    main()
