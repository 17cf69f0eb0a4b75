"""Single-query attention over the KV cache (``decode_attention``): the AVX-512 path vs the plain loop, side by side.

    HELPER=engine /tmp/albumen-tools/heavy -t 120 -- .venv/bin/python benchmarks/llm_attention.py \\
        [--lengths 141,1000,4000] [--rounds 6]

The plain loop is ``csrc/decode_ops.cpp`` built with ``-DALBUMEN_ATTENTION_LOOP`` (build both first:
``--build-only``). Shapes of one layer: SmolLM2 (9 query heads, 3 KV heads, head size 64) and Qwen2.5-1.5B (12, 2,
128), fp32 and bf16, 1 thread; rounds alternate the builds and medians are printed per layer and per token.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import ModuleType

import torch

from albumen.llm.kernels.build import load_extension

SOURCE = Path(__file__).resolve().parents[1] / "src" / "albumen" / "llm" / "kernels" / "csrc" / "decode_ops.cpp"
SHAPES = {"smollm2-135m": (9, 3, 64, 30), "qwen2.5-1.5b": (12, 2, 128, 28)}  # heads, kv heads, head size, layers


def build(loop: bool) -> ModuleType:
    flags = ("-ffp-contract=off",) + (("-DALBUMEN_ATTENTION_LOOP",) if loop else ())
    mod = load_extension("albumen_decode_ops", [SOURCE], extra_cflags=flags,
                         depends=[SOURCE.with_name("dense_kernels.h")])
    if mod is None:
        raise SystemExit("decode_ops did not build")
    return mod


def per_call(mod: ModuleType, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, calls: int = 300) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        mod.decode_attention(q, k, v)
    return (time.perf_counter() - t) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="141,1000,4000")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--build-only", action="store_true")
    a = ap.parse_args()
    mods = {"avx512": build(False), "loop": build(True)}
    if a.build_only:
        return
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    for model, (nh, nkv, hd, layers) in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            for length in (int(x) for x in a.lengths.split(",")):
                q = torch.randn(1, nh, 1, hd, generator=gen).to(dtype)
                k, v = (torch.randn(1, nkv, length, hd, generator=gen).to(dtype) for _ in range(2))
                times: dict[str, list[float]] = {n: [] for n in mods}
                for m in mods.values():
                    per_call(m, q, k, v, 20)
                for r in range(a.rounds):
                    for n in list(mods) if r % 2 == 0 else list(reversed(mods)):
                        times[n].append(per_call(mods[n], q, k, v))
                med = {n: statistics.median(ts) for n, ts in times.items()}
                print(f"{model:13s} {str(dtype)[6:]:8s} {length:5d} positions: " + ", ".join(
                    f"{n} {t * 1e6:6.1f} us/layer ({t * layers * 1e3:5.2f} ms/token)" for n, t in med.items())
                    + f", x{med['loop'] / med['avx512']:.2f}", flush=True)


if __name__ == "__main__":
    main()
