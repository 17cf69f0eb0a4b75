"""A smaller model with the same tokenizer as the drafter (Qwen2.5-0.5B for Qwen2.5-1.5B).

The draft model keeps its own static KV cache. Before drafting it compares the accepted tokens with what it has fed
so far and re-feeds only from the first difference (rolling back is decoding again from an earlier position), so
drafts the target accepted are never recomputed. Drafts are drawn from the draft model's distribution under the same
sampling settings as the target (argmax when greedy) and reported with their probabilities.

This module knows nothing about model files: pass a loaded ``Transformer``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig, logits_to_probs
from albumen.llm.speculative.drafters.base import Draft

__all__ = ["ModelDrafter", "parameter_cost"]


def parameter_cost(draft: Transformer, target: Transformer) -> float:
    """A draft token's cost relative to a target step, estimated by bytes of weights read per token."""

    def weight_bytes(m: Transformer) -> int:
        seen: set[int] = set()
        total = 0
        buffers = [b for n, b in m.named_buffers() if "kv_cache" not in n]  # weights only, not the caches
        for t in [*m.parameters(), *buffers]:
            if t.data_ptr() not in seen and not t.is_meta:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total

    return min(1.0, weight_bytes(draft) / max(1, weight_bytes(target)))


class ModelDrafter:
    """Drafts with a small causal LM that shares the target's vocabulary."""

    def __init__(self, model: Transformer, name: str = "model", cost: float | None = None) -> None:
        self.model = model
        self.name = name
        self._cost = cost
        self.cost = cost if cost is not None else 0.25
        self._fed: list[int] = []  # the tokens whose keys/values sit in the draft cache, by position

    def start(self, target: Transformer, prompt_ids: Sequence[int], max_seq_len: int) -> None:
        if self.model.args.vocab_size != target.args.vocab_size:
            raise ValueError(f"the draft model's vocabulary ({self.model.args.vocab_size}) differs from the "
                             f"target's ({target.args.vocab_size}): they must share a tokenizer")
        if self._cost is None:
            self.cost = parameter_cost(self.model, target)
        self.model.setup_caches(1, min(max_seq_len, self.model.args.max_seq_len))
        self._fed = []
        if len(prompt_ids) > 1:  # prefill the prompt with the target's (so it counts in the time to first token)
            with torch.inference_mode():
                self.model(torch.tensor([list(prompt_ids[:-1])]), torch.arange(len(prompt_ids) - 1), last_only=True)
            self._fed = list(prompt_ids[:-1])

    def finish(self) -> None:
        pass

    def _valid_prefix(self, tokens: Sequence[int]) -> int:
        n = min(len(self._fed), len(tokens))
        for i in range(n):
            if self._fed[i] != tokens[i]:
                return i
        return n

    def propose(self, tokens: Sequence[int], k: int, cfg: SamplingConfig, generator: torch.Generator | None) -> Draft:
        if k <= 0:
            return Draft([])
        tokens = list(tokens)
        if len(tokens) + k > self.model.max_seq_len:
            return Draft([])  # the draft cache is full: let the target go on alone
        valid = min(self._valid_prefix(tokens), len(tokens) - 1)  # the last token is always fed, for its logits
        block = torch.tensor([tokens[valid:]])  # (1, T)
        base = len(tokens)
        logits = self.model(block, torch.arange(valid, base), last_only=True)[:, -1]  # (1, V)
        self._fed = tokens  # a private copy: drafts are appended as they are fed
        drafted: list[int] = []
        probs: list[torch.Tensor] = []
        for i in range(k):
            if cfg.greedy:  # greedy verification never reads q
                token = int(logits.argmax(-1))
            else:
                q = logits_to_probs(logits, cfg)  # (1, V)
                token = int(torch.multinomial(q, 1, generator=generator))
                probs.append(q[0])
            drafted.append(token)
            if i + 1 < k:
                logits = self.model(torch.tensor([[token]]), torch.tensor([base + i]))[:, -1]
                self._fed.append(token)
        return Draft(drafted, torch.stack(probs) if probs else None)  # probs: (k, V) when sampling
