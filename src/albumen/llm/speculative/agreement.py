"""How well a draft model agrees with its target, measured without a clock.

Greedy verification accepts a draft token exactly when it is the target's argmax given the same prefix, and while the
draft agrees its own prefix is the target's. So one teacher-forced pass of the draft over the target's greedy reply
decides every step of greedy speculative decoding: ``agree[t]`` says whether the draft's argmax after ``reply[:t]``
is ``reply[t]``, and a step that starts at ``t`` with draft length ``k`` accepts the run of agreements
``agree[t:t + k]`` and adds the target's own token (``reply[0]`` comes from the prefill, so steps replay
``agree[1:]``). ``simulate_steps`` replays that exactly, so tokens per target step
at any fixed k come out free of the run-to-run timing noise that the speed benchmark carries; with measured step costs
they predict the speed-up (``predicted_speedup``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["StepReplay", "greedy_agreement", "predicted_speedup", "simulate_steps"]


def greedy_agreement(logits: torch.Tensor, reply: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(T,) bool: the argmax of ``logits[t]`` (T, V), over ``allowed`` ids only when given (a draft vocabulary),
    equals ``reply[t]`` (T,)."""
    if logits.dim() != 2 or reply.shape != logits.shape[:1]:
        raise ValueError(f"logits (T, V) and reply (T,) expected, got {tuple(logits.shape)} and {tuple(reply.shape)}")
    if allowed is None:
        return logits.argmax(-1) == reply
    allowed = allowed.long()
    pick = allowed[logits.index_select(-1, allowed).argmax(-1)]
    return pick == reply


@dataclass(frozen=True)
class StepReplay:
    tokens: int  # tokens emitted (accepted drafts + the target's own token per step)
    steps: int  # target (verification) steps
    drafted: int  # draft tokens proposed
    accepted: int  # draft tokens accepted

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def simulate_steps(agree: Sequence[bool] | torch.Tensor, k: int) -> StepReplay:
    """Replay greedy speculative decoding with a fixed draft length ``k`` over the tokens that follow the reply's first
    one (which the prompt's prefill makes), given their per-position draft agreement ``agree``: each step drafts
    min(k, tokens left - 1) tokens (the last token always comes from the target, as in the engine), accepts the leading
    agreements and emits one more token from the target."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    flags = [bool(a) for a in (agree.tolist() if isinstance(agree, torch.Tensor) else agree)]
    n = len(flags)
    t = tokens = steps = drafted = accepted = 0
    while t < n:
        kk = min(k, n - t - 1)
        run = 0
        while run < kk and flags[t + run]:
            run += 1
        drafted += kk
        accepted += run
        tokens += run + 1
        steps += 1
        t += run + 1
    return StepReplay(tokens, steps, drafted, accepted)


def predicted_speedup(tokens_per_step: float, k: int, plain_ms: float, draft_ms: float,
                      verify_ms: Sequence[float]) -> float:
    """Plain decoding's time per token over speculation's: a step costs k draft tokens plus a verification of k + 1
    rows (``verify_ms[k]``, with ``verify_ms[0]`` = one plain step) and emits ``tokens_per_step`` tokens."""
    if k >= len(verify_ms):
        raise ValueError(f"no verification cost for {k + 1} rows (have {len(verify_ms)})")
    step = k * draft_ms + verify_ms[k]
    return plain_ms * tokens_per_step / step
