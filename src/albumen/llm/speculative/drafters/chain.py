"""Several drafters in order of preference: the first non-empty proposal wins (e.g. ``lookup+head``: copy from the
prompt when the current suffix occurred before, otherwise ask the trained head).

Every drafter in the chain is started and finished, so each keeps its own cache in step with the accepted tokens
(a drafter that was skipped for a few steps catches up on its next proposal). This module knows nothing about
particular drafters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.drafters.base import Draft, Drafter

__all__ = ["ChainDrafter"]


@dataclass
class _MemberStats:
    """One member's running acceptance (exponentially forgotten) and draft time per token."""

    accepted: float = 0.0
    tried: float = 0.0
    draft_tok_s: float | None = None
    skipped: int = 0  # calls since it last drafted under the length policy
    wait: int = 8  # calls between probes while the policy keeps it at 0 (doubles per probe, up to probe_max)

    def rate(self, prior: float, weight: float) -> float:
        return (self.accepted + prior * weight) / (self.tried + weight)


class ChainDrafter:
    """Asks ``drafters`` in order; returns the first non-empty draft.

    Each member's drafts are judged on their own: the chain sees, at the next ``propose``, how many of its last
    draft's tokens the target kept, and keeps a running acceptance rate and draft time per member. With a length
    policy from the decoding loop (``length_policy(rate, draft_tok_s) -> k``, the controller's best k for that rate
    with the measured verification times), a member drafts the length that suits its own record instead of the
    chain's mixed one: a lookup that copies facts from the prompt at 95 % acceptance drafts long blocks while the head
    behind it stays short. Without a policy every member drafts the ``k`` asked for.
    """

    prior_rate = 0.6  # a member's acceptance before evidence, worth prior_weight drafted tokens
    prior_weight = 2.0
    decay = 0.8
    probe_every = 8  # a member the policy keeps at 0 still drafts 1 token after this many calls, then 16, 32, 64
    probe_max = 64

    def __init__(self, drafters: Sequence[Drafter]) -> None:
        if not drafters:
            raise ValueError("a chain needs at least one drafter")
        self.drafters = list(drafters)
        self.name = "+".join(d.name for d in self.drafters)
        self.cost = max(d.cost for d in self.drafters)
        self.length_policy: Callable[[float, float | None], int] | None = None
        self._stats = [_MemberStats(wait=self.probe_every) for _ in self.drafters]  # kept across sequences
        self._last: tuple[int, int, list[int]] | None = None  # (member, position of its first token, its tokens)

    @property
    def passes(self) -> int:
        """The members' draft forward passes (drafters that do not count them add none)."""
        return sum(getattr(d, "passes", 0) for d in self.drafters)

    def start(self, target: Transformer, prompt_ids: Sequence[int], max_seq_len: int) -> None:
        self._last = None
        for d in self.drafters:
            d.start(target, prompt_ids, max_seq_len)

    def _judge_last(self, tokens: Sequence[int]) -> None:
        """Credit the member that drafted last with the tokens the target kept of its draft."""
        if self._last is None:
            return
        member, at, draft = self._last
        self._last = None
        kept = 0
        while kept < len(draft) and at + kept < len(tokens) and tokens[at + kept] == draft[kept]:
            kept += 1
        if at + min(kept + 1, len(draft)) > len(tokens):
            return  # the sequence ended inside the draft: no verdict
        stats = self._stats[member]
        stats.accepted = self.decay * stats.accepted + kept
        stats.tried = self.decay * stats.tried + min(kept + 1, len(draft))

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

    def member_rate(self, i: int) -> float:
        """Member ``i``'s running acceptance rate (the prior before evidence)."""
        return self._stats[i].rate(self.prior_rate, self.prior_weight)

    def propose(self, tokens: Sequence[int], k: int, cfg: SamplingConfig, generator: torch.Generator | None) -> Draft:
        self._judge_last(tokens)
        for i, d in enumerate(self.drafters):
            stats = self._stats[i]
            k_i = k
            if self.length_policy is not None:
                k_i = self.length_policy(self.member_rate(i), stats.draft_tok_s)
                if k_i <= 0:  # not worth drafting at its record: the next member may be. A 1-token probe now and
                    stats.skipped += 1  # then, so that a member that improves is noticed; each probe while it
                    if stats.skipped < stats.wait:  # stays at 0 doubles the wait (a draft model's probe re-feeds
                        continue  # every token since it last ran: 16 tokens cost more than a plain step)
                    k_i = 1
                    stats.wait = min(2 * stats.wait, self.probe_max)
                else:
                    stats.wait = self.probe_every
                stats.skipped = 0
            t0 = time.perf_counter()
            draft = d.propose(tokens, k_i, cfg, generator)
            if len(draft):
                per_token = (time.perf_counter() - t0) / len(draft)
                stats.draft_tok_s = per_token if stats.draft_tok_s is None else 0.7 * stats.draft_tok_s + 0.3 * per_token
                self._last = (i, len(tokens), list(draft.tokens))
                return draft
        return Draft([])
