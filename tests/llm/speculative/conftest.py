"""Fakes shared by the speculative-decoding tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch

from albumen.llm.generate import generate_tokens
from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.drafters.base import Draft


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models are latency-bound: one thread is ~10x faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def plain_tokens(model: Transformer, prompt: Sequence[int], cfg: SamplingConfig, eos: Sequence[int] = ()) -> list[int]:
    return list(generate_tokens(model, prompt, cfg, eos))


class RandomDrafter:
    """Proposes uniformly random tokens: mostly rejected, exercises every rollback path."""

    name = "random"
    cost = 0.0

    def __init__(self, vocab: int, seed: int = 0) -> None:
        self.vocab, self.gen = vocab, torch.Generator().manual_seed(seed)

    def start(self, target, prompt_ids, max_seq_len) -> None:  # noqa: ANN001
        pass

    def finish(self) -> None:
        pass

    def propose(self, tokens, k, cfg, generator) -> Draft:  # noqa: ANN001
        return Draft(torch.randint(0, self.vocab, (k,), generator=self.gen).tolist())


class OracleDrafter:
    """Proposes the target's own greedy continuation: everything is accepted (the bonus path)."""

    name = "oracle"
    cost = 0.0

    def __init__(self, continuation: list[int], prompt_len: int, wrong_every: int = 0) -> None:
        self.full, self.prompt_len, self.wrong_every = continuation, prompt_len, wrong_every

    def start(self, target, prompt_ids, max_seq_len) -> None:  # noqa: ANN001
        pass

    def finish(self) -> None:
        pass

    def propose(self, tokens, k, cfg, generator) -> Draft:  # noqa: ANN001
        done = len(tokens) - self.prompt_len
        draft = self.full[done : done + k]
        if self.wrong_every and draft and done % self.wrong_every == 0:
            draft = draft[:-1] + [(draft[-1] + 1) % 260]
        return Draft(draft)


def add_random_lora(target: Transformer, name: str = "style") -> object:
    """An adapter on q, v and down projections with random (non-zero) B, not yet active; returns the registry."""
    from albumen.llm.adapters.config import AdapterConfig
    from albumen.llm.adapters.registry import AdapterRegistry

    registry = AdapterRegistry(target)
    registry.add(name, AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj")))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in target.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return registry
