"""A/B/C of the decode routing for large matrices, side by side in one process, one thread:

    python benchmarks/llm_packed_ab.py --model qwen2.5-1.5b --new-tokens 40 --rounds 3 [--json out.json]
    python benchmarks/llm_packed_ab.py --model smollm2-135m --dtype fp32 --settings dense,packed --new-tokens 96

- ``dense``: every linear on the row-major dense kernel (kernels/csrc/dense_kernels.h);
- ``onednn``: large bf16 matrices on oneDNN's pre-packed batch-1 copy, run module by module (the routing before the
  packed bf16 kernel; what ``ALBUMEN_KERNELS=0`` still does);
- ``packed`` (the default): the matrices the packing rule picks on the packed kernel (kernels/csrc/packed_kernels.h),
  the whole step on the decode plan.

"Large" is the engine's rule (``albumen.llm.model.packed_rule``). Each round runs
the three settings in turn (so load on the machine hits all alike) and measures plain greedy decoding (tokens/s) and
the cost of a verification block of 1..8 rows after a 64-token prompt (the decode plan's ``block_argmax`` where a plan
exists, else the model's forward): medians over rounds, and each block relative to the same setting's single row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import albumen.llm.model as model_mod
from albumen.llm.bench import bench_prompt_ids, run_once
from albumen.llm.loading import load_model


def _route(model: torch.nn.Module, setting: str) -> None:
    if setting == "dense":
        model_mod.use_decode_kernels(model, kernels=True, pack=False)
        return
    model_mod.use_decode_kernels(model, kernels=True)
    if setting == "onednn":  # the large matrices leave the kernels: oneDNN's packed copy, layer by layer
        for m in model.modules():
            if type(m) is torch.nn.Linear and m.__dict__.get("_packed"):
                m.__dict__["_dense_kernel"] = None
                m.__dict__["_packed"] = False


@torch.inference_mode()
def _blocks(model: Any, ids: list[int], repeats: int = 5) -> tuple[bool, dict[int, float]]:
    """ms per verification block of 1..8 rows at position len(ids), after prefilling ids."""
    model(torch.tensor([ids]), torch.arange(len(ids)), last_only=True)
    plan = model.decode_plan()
    pos, out = len(ids), {}
    for rows in range(1, 9):
        block = ids[:rows]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            if plan is None:
                model(torch.tensor([block]), torch.arange(pos, pos + rows))
            elif rows == 1:
                plan.argmax(block[0], pos)
            else:
                plan.block_argmax(block, pos)
            times.append(time.perf_counter() - t0)
        out[rows] = 1e3 * statistics.median(times)
    return plan is not None, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-1.5b")
    p.add_argument("--new-tokens", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", default="dense,onednn,packed", help="onednn: bf16 only")
    p.add_argument("--dtype", default="bf16", help="bf16 or fp32")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    model, tok = load_model(a.model, dtype=a.dtype)
    model.setup_caches(1, 512)
    ids = bench_prompt_ids(tok, 64)
    settings = [s for s in a.settings.split(",") if s]
    rates: dict[str, list[float]] = {s: [] for s in settings}
    blocks: dict[str, list[dict[int, float]]] = {s: [] for s in settings}
    planned: dict[str, bool] = {}
    for r in range(a.rounds):
        for s in settings:
            _route(model, s)
            run_once(model, ids, 4)  # warm-up (packs made on first use)
            rates[s].append(run_once(model, ids, a.new_tokens).decode_tokens_per_s)
            planned[s], ms = _blocks(model, ids)
            blocks[s].append(ms)
            print(f"round {r} {s:7s} {rates[s][-1]:6.2f} tok/s, blocks ms "
                  + " ".join(f"{k}:{v:.1f}" for k, v in ms.items()), flush=True)
    _route(model, "packed")
    result: dict[str, Any] = {"model": a.model, "dtype": a.dtype, "threads": 1, "settings": {}}
    base = statistics.median(rates[settings[0]])
    print(f"{a.model} {a.dtype}, 1 thread, medians of {a.rounds} rounds")
    print(f"{'setting':8s} {'plan':5s} {'tok/s':>6s} {'ratio':>6s}  block of 1..8 rows (ms, x one row)")
    for s in settings:
        rate = statistics.median(rates[s])
        ms = {k: statistics.median(b[k] for b in blocks[s]) for k in range(1, 9)}
        result["settings"][s] = {"plan": planned[s], "tokens_per_s": rate, "block_ms": ms,
                                 "block_ratio": {k: v / ms[1] for k, v in ms.items()}}
        print(f"{s:8s} {str(planned[s]):5s} {rate:6.2f} {rate / base:5.2f}x  "
              + " ".join(f"{k}:{v:.1f}({v / ms[1]:.2f}x)" for k, v in ms.items()))
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
