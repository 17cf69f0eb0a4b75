"""The draft-length controller: long drafts when they are accepted, none when they are not, probes at zero."""

from __future__ import annotations

import pytest

from albumen.llm.speculative.adaptive import AdaptiveDraftLength, SpeculativeConfig, expected_tokens


def test_expected_tokens_formula() -> None:
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)


def test_good_drafts_lengthen_and_bad_drafts_stop_speculation() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4, k_max=8), draft_cost=0.05)
    for _ in range(30):
        ctl.update(ctl.next_k(), ctl.next_k())  # everything accepted
    assert ctl.k >= 6
    for _ in range(30):
        k = ctl.next_k()
        ctl.update(k, 0)  # everything rejected
    assert ctl.k == 0
    ks = [ctl.next_k() for _ in range(16)]
    assert ks.count(1) == 2 and ks.count(0) == 14  # a probe every 8 steps


def test_expensive_drafts_need_a_higher_rate() -> None:
    cheap = AdaptiveDraftLength(SpeculativeConfig(prior_rate=0.5), draft_cost=0.0)
    dear = AdaptiveDraftLength(SpeculativeConfig(prior_rate=0.5), draft_cost=0.6)
    cheap.update(2, 1)
    dear.update(2, 1)
    assert cheap.k > dear.k


def test_fixed_length_when_not_adaptive() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=3, adaptive=False), draft_cost=0.5)
    ctl.update(3, 0)
    assert ctl.next_k() == 3
    with pytest.raises(ValueError):
        SpeculativeConfig(k=9, k_max=8)
