"""What a drafter is: something that proposes the next few tokens cheaply. The decode loop (decode.py) owns the
target and the acceptance rule; a drafter only sees the accepted tokens so far and, if it wants them, the target's
last hidden states.

This module knows nothing about particular drafters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig

__all__ = ["Draft", "Drafter", "unsure"]


@dataclass
class Draft:
    """Proposed tokens and the distributions they were drawn from.

    ``probs`` is (len(tokens), V) for a drafter that samples, or None for a deterministic one (each q_i is one-hot
    at tokens[i]); V must equal the target's vocabulary. Under greedy decoding q is never read, so model drafters
    draft by argmax and leave it None.

    ``alternatives`` (greedy only): (i, token) pairs, each another guess for position i (1-based: tokens[i - 1]'s
    slot) after tokens[:i - 1]. Where the target's decode plan verifies small trees, such a leaf is scored in the same
    call and kept if the chain is rejected exactly there and the target picks it (decode.py); elsewhere ignored.
    """

    tokens: list[int]
    probs: torch.Tensor | None = None
    alternatives: tuple[tuple[int, int], ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)


def unsure(logits: torch.Tensor, min_confidence: float) -> bool:
    """A drafter's confidence rule: the top-1 probability of the draft's next-token logits (1, V) is below
    ``min_confidence`` (never, at 0). It reads only the draft's own distribution, so drafts stay exact."""
    return min_confidence > 0 and float(torch.softmax(logits.float(), -1).amax()) < min_confidence


class Drafter(Protocol):
    """Proposes tokens for the speculative decoder.

    The loop calls ``start`` once per sequence, then alternates ``propose`` (tokens = prompt + every accepted token
    so far) and the target's verification; ``finish`` always runs at the end. A drafter with a KV cache rolls it back
    itself by comparing ``tokens`` with what it fed before. Optionally ``release()`` lets go of whatever it holds on
    the target (a forward hook) when the loop knows it will not ask for drafts again this sequence; it returns
    True if it held something. A drafter that reads the target's hidden states (the head) has ``observe(pos,
    feats)``: where the target decodes on its single-call plan, the loop releases the drafter's hook after the
    prompt and hands over the final normed hidden states (T, D) of every step's rows from position ``pos``.
    """

    name: str
    cost: float  # one drafted token's cost relative to one target step (used to pick the draft length)

    def start(self, target: Transformer, prompt_ids: Sequence[int], max_seq_len: int) -> None: ...

    def propose(self, tokens: Sequence[int], k: int, cfg: SamplingConfig, generator: torch.Generator | None) -> Draft:
        """Up to ``k`` tokens that should follow ``tokens`` (fewer, or none, when it has no good guess)."""
        ...

    def finish(self) -> None: ...
