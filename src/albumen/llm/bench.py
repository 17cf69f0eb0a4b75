"""Measuring the engine: prefill and decode tokens/s and time to first token, batch 1, greedy.

Used by ``albumen llm bench`` and ``benchmarks/llm_decode.py``. This module knows nothing about other engines.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from albumen.llm.generate import GenerationStats, generate_tokens
from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig
from albumen.llm.tokenizer import Tokenizer

__all__ = ["BENCH_TEXT", "BenchResult", "bench_prompt_ids", "measure"]

BENCH_TEXT = (
    "The photos from the summer trip show a long walk along the coast, a picnic in the dunes, a lighthouse at dusk "
    "and a birthday dinner with friends in a small harbour town. Write a short, warm title and three chapters. "
)


@dataclass(frozen=True)
class BenchResult:
    prompt_tokens: int
    new_tokens: int
    ttft_s: float  # prefill + first sample, median
    prefill_tokens_per_s: float
    decode_tokens_per_s: float  # tokens after the first, median

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def bench_prompt_ids(tokenizer: Tokenizer, n_tokens: int) -> list[int]:
    """Exactly ``n_tokens`` ids of ordinary English text (``BENCH_TEXT`` repeated)."""
    text = BENCH_TEXT
    ids = tokenizer.encode(text)
    while len(ids) < n_tokens:
        text += BENCH_TEXT
        ids = tokenizer.encode(text)
    return ids[:n_tokens]


def run_once(model: Transformer, prompt_ids: list[int], new_tokens: int) -> GenerationStats:
    """One greedy generation of exactly ``new_tokens`` tokens (EOS ignored); its stats."""
    stats = GenerationStats()
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=new_tokens, ignore_eos=True)
    for _ in generate_tokens(model, prompt_ids, cfg, stats=stats):
        pass
    return stats


def measure(
    model: Transformer, tokenizer: Tokenizer, prompt_tokens: int = 128, new_tokens: int = 64, repeats: int = 3
) -> BenchResult:
    """Median over ``repeats`` runs after one short warm-up run."""
    ids = bench_prompt_ids(tokenizer, prompt_tokens)
    run_once(model, ids, min(new_tokens, 4))
    runs = [run_once(model, ids, new_tokens) for _ in range(repeats)]
    ttft = statistics.median(r.ttft_s for r in runs)
    return BenchResult(
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        ttft_s=ttft,
        prefill_tokens_per_s=prompt_tokens / ttft if ttft > 0 else 0.0,
        decode_tokens_per_s=statistics.median(r.decode_tokens_per_s for r in runs),
    )
