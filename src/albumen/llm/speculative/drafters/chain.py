"""Several drafters in order of preference: the first non-empty proposal wins (e.g. ``lookup+head``: copy from the
prompt when the current suffix occurred before, otherwise ask the trained head).

Every drafter in the chain is started and finished, so each keeps its own cache in step with the accepted tokens
(a drafter that was skipped for a few steps catches up on its next proposal). This module knows nothing about
particular drafters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.drafters.base import Draft, Drafter

__all__ = ["ChainDrafter"]


class ChainDrafter:
    """Asks ``drafters`` in order; returns the first non-empty draft."""

    def __init__(self, drafters: Sequence[Drafter]) -> None:
        if not drafters:
            raise ValueError("a chain needs at least one drafter")
        self.drafters = list(drafters)
        self.name = "+".join(d.name for d in self.drafters)
        self.cost = max(d.cost for d in self.drafters)

    def start(self, target: Transformer, prompt_ids: Sequence[int], max_seq_len: int) -> None:
        for d in self.drafters:
            d.start(target, prompt_ids, max_seq_len)

    def finish(self) -> None:
        for d in self.drafters:
            d.finish()

    def release(self) -> bool:
        """Release every drafter in the chain that holds something on the target."""
        released = [bool(d.release()) for d in self.drafters if callable(getattr(d, "release", None))]
        return any(released)

    @property
    def observe(self) -> Callable[[int, torch.Tensor], None] | None:
        """Hands the target's hidden states to every drafter in the chain that reads them; None if none does."""
        observers = [d.observe for d in self.drafters if callable(getattr(d, "observe", None))]
        if not observers:
            return None

        def observe(pos: int, feats: torch.Tensor) -> None:
            for fn in observers:
                fn(pos, feats)
        return observe

    def propose(self, tokens: Sequence[int], k: int, cfg: SamplingConfig, generator: torch.Generator | None) -> Draft:
        for d in self.drafters:
            draft = d.propose(tokens, k, cfg, generator)
            if len(draft):
                return draft
        return Draft([])
