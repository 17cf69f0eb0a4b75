"""A/B of dense-kernel builds: the matrix-vector products of one SmolLM2 decode step, per build, side by side.

    HELPER=engine /tmp/albumen-tools/heavy -t 150 -- .venv/bin/python benchmarks/llm_dense_tiles.py [--rounds 8]
        [--variants current,rows4] [--dtypes fp32,bf16]

Each variant is ``csrc/dense.cpp`` built with other ``-D`` flags (``ALBUMEN_DENSE_ROWS``, ``ALBUMEN_DENSE_PREFETCH``,
``ALBUMEN_DENSE_NEXT_BLOCK_BYTES``; build them before timing: ``--build-only``). One sweep runs every projection of
every layer and the head in model order through ``linear`` (weights streamed from memory, as in decoding); rounds
alternate the variants (A/B, B/A, ...) and the median per variant is printed with its read rate and the ratio to the
first variant.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import ModuleType

import torch

from albumen.llm.kernels.build import load_extension
from albumen.llm.loading import load_model, parse_dtype

SOURCE = Path(__file__).resolve().parents[1] / "src" / "albumen" / "llm" / "kernels" / "csrc" / "dense.cpp"
VARIANTS: dict[str, tuple[str, ...]] = {
    "current": (),
    "rows4": ("-DALBUMEN_DENSE_ROWS=4", "-DALBUMEN_DENSE_NEXT_BLOCK_BYTES=0"),  # the tile before 2026-11-29 11:50
    "rows12": ("-DALBUMEN_DENSE_ROWS=12",),
    "prefetch2048": ("-DALBUMEN_DENSE_PREFETCH=2048",),
}


def build(name: str) -> ModuleType:
    mod = load_extension("albumen_dense", [SOURCE], extra_cflags=VARIANTS[name],
                         depends=[SOURCE.with_name("dense_kernels.h")])
    if mod is None:
        raise SystemExit(f"variant {name} did not build")
    return mod


def sweep_time(mod: ModuleType, weights: list[torch.Tensor], xs: dict[int, torch.Tensor], reps: int = 5) -> float:
    """Median seconds of one pass over ``weights`` (each ``linear(x, w)`` once)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for w in weights:
            mod.linear(xs[w.shape[1]], w, None)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="current,rows4", help=f"from {', '.join(VARIANTS)}")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build-only", action="store_true")
    a = ap.parse_args()
    mods = {n: build(n) for n in a.variants.split(",")}
    if a.build_only:
        return
    torch.set_num_threads(a.threads)
    for dtype in a.dtypes.split(","):
        model, _ = load_model("smollm2-135m", parse_dtype(dtype))
        weights = [w.detach() for layer in model.model.layers for w in (
            layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight,
            layer.self_attn.o_proj.weight, layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight,
            layer.mlp.down_proj.weight)] + [model.lm_head.weight.detach()]
        xs = {k: torch.randn(1, k, dtype=weights[0].dtype) for k in {w.shape[1] for w in weights}}
        nbytes = sum(w.numel() * w.element_size() for w in weights)
        for mod in mods.values():
            sweep_time(mod, weights, xs)  # warm-up
        times: dict[str, list[float]] = {n: [] for n in mods}
        for r in range(a.rounds):
            for n in list(mods) if r % 2 == 0 else list(reversed(mods)):
                times[n].append(sweep_time(mods[n], weights, xs))
        first = statistics.median(times[next(iter(mods))])
        for n, ts in times.items():
            med = statistics.median(ts)
            print(f"{dtype:5s} {n:13s} {med * 1e3:6.2f} ms per step  {nbytes / med / 1e9:5.1f} GB/s  "
                  f"x{first / med:.3f}", flush=True)
        del model


if __name__ == "__main__":
    main()
