"""The chain of drafters: the first proposal wins, each member's acceptance is judged on its own, and with a length
policy each member drafts the length its own record calls for (never past k_max); output stays plain decoding's."""

from __future__ import annotations

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.base import Draft
from albumen.llm.speculative.drafters.chain import ChainDrafter
from albumen.llm.testing import tiny_model

from .conftest import OracleDrafter, plain_tokens

CFG = SamplingConfig(max_new_tokens=40, ignore_eos=True)


class _Wrong(OracleDrafter):
    """Always proposes a token the target never picks next (its continuation shifted by one id)."""

    name = "wrong"

    def propose(self, tokens, k, cfg, generator) -> Draft:  # noqa: ANN001
        return Draft([(t + 1) % 260 for t in super().propose(tokens, k, cfg, generator).tokens])


class _Sometimes(OracleDrafter):
    """The oracle on every other call only (else nothing), so the member behind it gets its turns."""

    def __init__(self, continuation: list[int], prompt_len: int) -> None:
        super().__init__(continuation, prompt_len)
        self.calls = 0

    def propose(self, tokens, k, cfg, generator) -> Draft:  # noqa: ANN001
        self.calls += 1
        return super().propose(tokens, k, cfg, generator) if self.calls % 2 else Draft([])


def test_members_are_judged_apart_and_draft_their_own_lengths() -> None:
    target = tiny_model(seed=3)
    prompt = [5, 6, 7, 8]
    expected = plain_tokens(target, prompt, CFG)
    chain = ChainDrafter([_Sometimes(expected, len(prompt)), _Wrong(expected, len(prompt))])
    lengths: list[int] = []
    asked: list[tuple[float, float | None]] = []

    def policy(rate: float, draft_tok_s: float | None) -> int:  # long for a reliable member, none for a bad one
        asked.append((rate, draft_tok_s))
        return 6 if rate > 0.8 else 2 if rate > 0.4 else 0

    original = chain.propose

    def propose(tokens, k, cfg, gen):  # noqa: ANN001
        chain.length_policy = policy  # the loop installs its own; this test's is deterministic
        out = original(tokens, k, cfg, gen)
        lengths.append(len(out))
        return out

    chain.propose = propose  # type: ignore[method-assign]
    stats = SpeculativeStats()
    got = list(speculative_decode(target, chain, prompt, CFG, SpeculativeConfig(k=1, adaptive=False, measure=False),
                                  stats=stats))
    assert got == expected
    assert chain.member_rate(0) > 0.8 and chain.member_rate(1) < 0.45  # the prior (0.6) pulled down by misses
    assert max(lengths) == 6  # the reliable member drafted past the controller's k = 1
    assert all(n <= SpeculativeConfig().k_max for n in lengths)
    assert any(c is not None for _, c in asked)  # draft times were measured per member


def test_without_a_policy_every_member_drafts_k() -> None:
    target = tiny_model(seed=3)
    prompt = [5, 6, 7, 8]
    expected = plain_tokens(target, prompt, CFG)
    chain = ChainDrafter([_Wrong(expected, len(prompt)), OracleDrafter(expected, len(prompt))])
    stats = SpeculativeStats()
    got = list(speculative_decode(target, chain, prompt, CFG, SpeculativeConfig(k=3, adaptive=False, measure=False),
                                  stats=stats))
    assert got == expected and chain.length_policy is None
    assert set(stats.draft_lengths) <= {3, 2, 1, 0}
    assert chain.member_rate(0) < 0.4  # the first member always answers, and is always wrong
