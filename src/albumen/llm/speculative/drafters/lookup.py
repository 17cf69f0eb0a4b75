"""Prompt-lookup drafting (Saxena 2023, "prompt lookup decoding"): if the last few tokens occurred earlier in the
prompt or the text so far, propose what followed them there. No model, no cost; strong when the output copies
names, places and dates from the prompt, as memory stories grounded in photo facts do.

An index maps every n-gram (``min_ngram`` <= n <= ``max_ngram``) to the latest position after which it was followed
by a token; it grows incrementally, so a lookup is O(1) and an update O(new tokens). Longer matches are tried first.
The drafter is deterministic: each proposed token has q = 1 (one-hot), which the acceptance rule handles exactly.

This module knows nothing about models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.drafters.base import Draft

__all__ = ["LookupConfig", "LookupDrafter"]


@dataclass(frozen=True)
class LookupConfig:
    max_ngram: int = 4
    min_ngram: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {self.min_ngram}, {self.max_ngram}")


class LookupDrafter:
    """Drafts by copying what followed the latest earlier occurrence of the current suffix."""

    name = "lookup"
    cost = 0.0
    passes = 0  # no forward passes: proposals are free

    def __init__(self, cfg: LookupConfig = LookupConfig()) -> None:
        self.cfg = cfg
        self._index: dict[tuple[int, ...], int] = {}
        self._seen: list[int] = []  # the tokens the index covers

    def start(self, target: Transformer | None, prompt_ids: Sequence[int], max_seq_len: int) -> None:
        self._index.clear()
        self._seen = []

    def finish(self) -> None:
        pass

    def _extend(self, tokens: Sequence[int]) -> None:
        """Index every n-gram that ends before the last token (so that something follows it)."""
        if tokens[: len(self._seen)] != self._seen:  # rolled back or a new sequence: rebuild
            self._index.clear()
            self._seen = []
        old = len(self._seen)
        self._seen = list(tokens)
        for end in range(max(old, 1), len(tokens)):  # the n-gram tokens[end-n:end] is followed by tokens[end]
            for n in range(self.cfg.min_ngram, min(self.cfg.max_ngram, end) + 1):
                self._index[tuple(tokens[end - n : end])] = end

    def propose(
        self, tokens: Sequence[int], k: int, cfg: SamplingConfig | None = None, generator: torch.Generator | None = None
    ) -> Draft:
        tokens = list(tokens)
        self._extend(tokens)
        for n in range(min(self.cfg.max_ngram, len(tokens)), self.cfg.min_ngram - 1, -1):
            end = self._index.get(tuple(tokens[-n:]))
            if end is not None:
                return Draft(tokens[end : end + k])
        return Draft([])
