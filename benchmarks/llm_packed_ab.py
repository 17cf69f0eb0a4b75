"""A/B of the bf16 decode routing: every linear on the dense kernel vs large ones on oneDNN's pre-packed copy.

    python benchmarks/llm_packed_ab.py --model qwen2.5-1.5b --new-tokens 40 --rounds 3

One process, one thread, the two settings alternated round by round (median decode tok/s of each and their ratio), so
load on the machine hits both alike. The threshold it tests is ``albumen.llm.model.PACKED_BF16_MIN_NUMEL`` /
``PACKED_BF16_MIN_IN`` (the engine's default routing).
"""

from __future__ import annotations

import argparse
import statistics

import torch

import albumen.llm.model as model_mod
from albumen.llm.bench import bench_prompt_ids, run_once
from albumen.llm.loading import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(1)
    model, tok = load_model(a.model, dtype="bf16")
    model.setup_caches(1, 512)
    ids = bench_prompt_ids(tok, 64)
    default = model_mod.PACKED_BF16_MIN_NUMEL
    settings = {"dense kernel everywhere": 1 << 62, "large rows packed (default)": default}
    rates: dict[str, list[float]] = {label: [] for label in settings}
    for _ in range(a.rounds):
        for label, threshold in settings.items():
            model_mod.PACKED_BF16_MIN_NUMEL = threshold
            packed = model_mod.use_decode_kernels(model, kernels=True) and sum(
                m.__dict__.get("_dense_kernel") is None for m in model.modules() if type(m) is torch.nn.Linear)
            run_once(model, ids, 4)
            rates[label].append(run_once(model, ids, a.new_tokens).decode_tokens_per_s)
            print(f"{label:30s} {rates[label][-1]:6.2f} tok/s ({packed} linears packed)", flush=True)
    model_mod.PACKED_BF16_MIN_NUMEL = default
    base, new = (statistics.median(v) for v in rates.values())
    print(f"{a.model} bf16, 1 thread: dense everywhere {base:.2f} tok/s, default routing {new:.2f} tok/s, "
          f"ratio {new / base:.3f}")


if __name__ == "__main__":
    main()
