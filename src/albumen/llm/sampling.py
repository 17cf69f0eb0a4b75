"""Turning logits into the next token: greedy, temperature, top-k, top-p, min-p and repetition penalty.

Pure functions of tensors; the only state is the ``torch.Generator`` the caller passes for seeded sampling. The
speculative decoder uses ``logits_to_probs`` for its acceptance rule, so it must give the exact distribution that
``sample`` draws from. This module knows nothing about models or tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SamplingConfig", "apply_repetition_penalty", "logits_to_probs", "sample"]


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick tokens and when to stop. ``temperature == 0`` means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off; keep tokens with p >= min_p * p_max
    repetition_penalty: float = 1.0  # 1 = off; > 1 discourages tokens already in prompt or output
    max_new_tokens: int = 128
    seed: int | None = 0
    stop: tuple[str, ...] = ()  # stop strings; the text is cut before the first one
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if self.top_k < 0 or self.max_new_tokens < 0:
            raise ValueError("top_k and max_new_tokens must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty (as in HF): for seen tokens, positive logits are divided and negative ones multiplied.

    Args:
        logits: (B, V) float scores.
        seen: (B, N) ids already in the prompt or output (repeats are fine).
        penalty: > 1 discourages repetition; 1 changes nothing.
    Returns:
        (B, V) new logits.
    """
    if penalty == 1.0 or seen.numel() == 0:
        return logits
    picked = logits.gather(-1, seen)  # (B, N)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(-1, seen, picked)


def logits_to_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The distribution ``sample`` draws from: (..., V) logits -> (..., V) probabilities (float32).

    Order as in HF: temperature, then top-k, then top-p (nucleus), then min-p; filtered tokens get probability 0.
    Greedy configs give a one-hot distribution at the argmax.
    """
    logits = logits.float()
    if cfg.greedy:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / cfg.temperature
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p; the top token always stays.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= cfg.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    if cfg.min_p > 0:
        probs = probs.masked_fill(probs < cfg.min_p * probs.amax(-1, keepdim=True), 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(
    logits: torch.Tensor,
    cfg: SamplingConfig,
    generator: torch.Generator | None = None,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick the next token: (B, V) logits -> (B,) ids. Seeded through ``generator``; greedy never draws."""
    if seen is not None and cfg.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits.float(), seen, cfg.repetition_penalty)
    if cfg.greedy:
        return logits.argmax(-1)
    probs = logits_to_probs(logits, cfg)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
