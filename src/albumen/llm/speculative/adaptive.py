"""Choosing the draft length from the running acceptance rate, so that poor drafts cost little.

With a per-token acceptance rate a, drafting k tokens yields on average (1 - a^(k+1)) / (1 - a) tokens per target
step (the accepted prefix plus the target's own token), at a cost of 1 + (c + v) k target steps, where c is one
drafted token's cost and v the extra cost of verifying one more position. The controller picks the k that maximises
tokens per unit cost; k = 0 is plain decoding. While at k = 0 it probes with k = 1 every ``probe_every`` steps so
that it notices when drafts become good again.

This module knows nothing about models or tokens; it is deterministic (no clocks), so seeded runs repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AdaptiveDraftLength", "SpeculativeConfig", "expected_tokens"]


@dataclass(frozen=True)
class SpeculativeConfig:
    """Draft length policy. ``adaptive=False`` always drafts ``k`` tokens."""

    k: int = 4  # the starting (or fixed) draft length
    k_max: int = 7  # a block of k_max + 1 = 8 rows stays on the quantized kernels' decode path
    adaptive: bool = True
    prior_rate: float = 0.6  # acceptance rate assumed before any evidence
    prior_weight: float = 2.0  # how many drafted tokens that prior is worth
    decay: float = 0.8  # per target step: older evidence fades
    verify_cost: float = 0.03  # extra target cost per verified position, relative to one step
    draft_cost: float | None = None  # None: the drafter's own estimate
    probe_every: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.k <= self.k_max:
            raise ValueError(f"need 0 <= k <= k_max, got k={self.k}, k_max={self.k_max}")
        if not 0 < self.decay <= 1 or not 0 <= self.prior_rate <= 1:
            raise ValueError("decay must be in (0, 1] and prior_rate in [0, 1]")


def expected_tokens(rate: float, k: int) -> float:
    """Mean tokens per target step when each of k drafts survives with probability ``rate``."""
    if rate >= 1.0:
        return float(k + 1)
    return (1.0 - rate ** (k + 1)) / (1.0 - rate)


class AdaptiveDraftLength:
    """Running acceptance statistics and the draft length they call for."""

    def __init__(self, cfg: SpeculativeConfig, draft_cost: float) -> None:
        self.cfg = cfg
        self.cost = cfg.draft_cost if cfg.draft_cost is not None else draft_cost
        self.accepted = cfg.prior_rate * cfg.prior_weight
        self.tried = cfg.prior_weight
        self.k = cfg.k
        self._idle = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.tried if self.tried > 0 else self.cfg.prior_rate

    def update(self, drafted: int, accepted: int) -> None:
        """Record one verification: ``drafted`` tokens proposed, the first ``accepted`` kept."""
        if drafted == 0:  # nothing was proposed: no evidence either way
            return
        examined = min(accepted + 1, drafted)  # tokens after the first rejection were never judged
        self.accepted = self.cfg.decay * self.accepted + accepted
        self.tried = self.cfg.decay * self.tried + examined
        if self.cfg.adaptive:
            self.k = self._best_k()

    def next_k(self) -> int:
        """The draft length for the next step (a k = 1 probe now and then while at 0)."""
        if self.k > 0:
            self._idle = 0
            return self.k
        self._idle += 1
        if self._idle >= self.cfg.probe_every:
            self._idle = 0
            return 1
        return 0

    def _best_k(self) -> int:
        rate = self.rate
        per_token = self.cost + self.cfg.verify_cost
        scores = [expected_tokens(rate, k) / (1.0 + per_token * k) for k in range(self.cfg.k_max + 1)]
        return max(range(len(scores)), key=scores.__getitem__)
