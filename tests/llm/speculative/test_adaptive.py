"""The draft-length controller: long drafts when they are accepted, none when they are not, probes at zero."""

from __future__ import annotations

import pytest

from albumen.llm.speculative.adaptive import AdaptiveDraftLength, SpeculativeConfig, StepCosts, expected_tokens


def test_expected_tokens_formula() -> None:
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)


def test_good_drafts_lengthen_and_bad_drafts_stop_speculation() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4, k_max=8), draft_cost=0.05)
    for _ in range(30):
        ctl.update(ctl.next_k(), ctl.next_k())  # everything accepted
    assert ctl.k >= 6
    for _ in range(60):  # a long perfect streak is remembered a while (decay 0.9 per step, 6-8 tokens each)
        k = ctl.next_k()
        ctl.update(k, 0)  # everything rejected
    assert ctl.k == 0
    ks = []
    for _ in range(64):
        ks.append(ctl.next_k())
        ctl.update(ks[-1], 0)
    assert 1 <= ks.count(1) <= 4  # probes, each failed one doubling the wait (8, 16, 32, ...)
    assert ks.count(1) < ks.count(0)


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


class FakeClock:
    """A clock the test advances by hand: the controller's measured costs come only from the test's numbers."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(ctl: AdaptiveDraftLength, steps: int, accept, verify_s, draft_tok_s: float) -> list[int]:
    """Drive the controller like the decoding loop: ``accept(k)`` drafts kept, times from the cost functions."""
    ks = []
    for _ in range(steps):
        k = ctl.next_k()
        ks.append(k)
        ctl.update(k, accept(k), draft_tok_s * k, verify_s(k))
    return ks


def test_poor_drafter_falls_back_to_plain_decoding_and_probes_rarely() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4), draft_cost=0.0, clock=FakeClock())
    # Verification of k + 1 rows costs 10 ms + 2 ms per extra row; a drafted token 3 ms; nothing is ever accepted.
    ks = _run(ctl, 200, lambda k: 0, lambda k: 0.010 + 0.002 * k, 0.003)
    assert ks[:2] == [0, 4]  # a measured plain step first, then the configured length
    assert max(ks[3:]) <= 1 and ks[-1] in (0, 1)  # back to plain decoding within a couple of steps
    assert ks[3:].count(1) <= 6  # probes back off: 8, 16, 32, 64, 64 steps apart
    assert ctl.probes == ks[3:].count(1)
    assert ctl.draft_cost_estimate == pytest.approx(0.3)
    assert ctl.verify_cost_estimate == pytest.approx(0.2)


def test_good_cheap_drafter_lengthens_drafts() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=2), draft_cost=0.5, clock=FakeClock())
    ks = _run(ctl, 40, lambda k: k, lambda k: 0.010 + 0.0005 * k, 0.0002)
    assert ks[-1] == ctl.cfg.k_max and min(ks[1:]) >= 2


def test_measured_costs_override_the_prior() -> None:
    """The drafter claims to be free, but measured drafts cost as much as a target step: a 50 % rate does not pay."""
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=3, prior_rate=0.5), draft_cost=0.0, clock=FakeClock())
    unmeasured = AdaptiveDraftLength(SpeculativeConfig(k=3, prior_rate=0.5), draft_cost=0.0)
    unmeasured.update(2, 1)
    assert unmeasured.k > 0  # the prior alone says: speculate
    _run(ctl, 20, lambda k: k // 2, lambda k: 0.010 + 0.001 * k, 0.010)
    assert ctl.k == 0


def test_rate_recovery_brings_speculation_back() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4), draft_cost=0.0, clock=FakeClock())
    _run(ctl, 30, lambda k: 0, lambda k: 0.010 + 0.001 * k, 0.0001)
    assert ctl.k == 0
    ks = _run(ctl, 80, lambda k: k, lambda k: 0.010 + 0.001 * k, 0.0001)  # drafts become perfect
    assert ks[-1] >= 4


def test_costs_are_shared_across_sequences() -> None:
    """A second controller with the first one's measurements skips the plain measuring step and starts informed."""
    costs = StepCosts(7)
    first = AdaptiveDraftLength(SpeculativeConfig(k=4), draft_cost=0.0, clock=FakeClock(), costs=costs)
    _run(first, 10, lambda k: 0, lambda k: 0.010 + 0.010 * k, 0.0001)
    second = AdaptiveDraftLength(SpeculativeConfig(k=4), draft_cost=0.0, clock=FakeClock(), costs=costs)
    assert second.costs is costs
    assert second.next_k() == 0  # blocks are known to cost 1 + k plain steps: even a 60 % rate does not pay
    cheap = StepCosts(7)
    third = AdaptiveDraftLength(SpeculativeConfig(k=1), draft_cost=0.0, clock=FakeClock(), costs=cheap)
    _run(third, 10, lambda k: k, lambda k: 0.010 + 0.0001 * k, 0.0001)
    fourth = AdaptiveDraftLength(SpeculativeConfig(k=1), draft_cost=0.0, clock=FakeClock(), costs=cheap)
    assert fourth.next_k() > 1  # cheap blocks: start longer than the configured k


def test_decoding_loop_reports_timings_from_the_clock() -> None:
    """The loop times with the controller's clock; a fake clock that never moves still decodes losslessly."""
    ctl = AdaptiveDraftLength(SpeculativeConfig(), draft_cost=0.1, clock=FakeClock())
    assert ctl.clock() == 0.0
    ctl.update(4, 4, 0.0, 0.0)
    assert ctl.k in range(ctl.cfg.k_max + 1)


def test_fixed_zero_never_probes() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=0, adaptive=False, probe_every=2), draft_cost=0.0)
    ks = []
    for _ in range(20):
        ks.append(ctl.next_k())
        ctl.update(ks[-1], 0)
    assert ks == [0] * 20


def test_a_new_sequence_starts_from_the_last_rate() -> None:
    """After a sequence where nothing was accepted, the next one starts cautious (no speculative first steps); after a
    good one it starts drafting."""
    poor, good = StepCosts(7), StepCosts(7)
    verify = lambda k: 0.010 + 0.0005 * k  # noqa: E731
    _run(AdaptiveDraftLength(SpeculativeConfig(k=4), 0.0, FakeClock(), poor), 30, lambda k: 0, verify, 0.0005)
    _run(AdaptiveDraftLength(SpeculativeConfig(k=4), 0.0, FakeClock(), good), 30, lambda k: k, verify, 0.0005)
    assert poor.rate < 0.2 < 0.9 < good.rate
    assert AdaptiveDraftLength(SpeculativeConfig(k=4), 0.0, FakeClock(), poor).next_k() == 0
    assert AdaptiveDraftLength(SpeculativeConfig(k=4), 0.0, FakeClock(), good).next_k() >= 4


def test_catch_up_after_plain_steps_is_not_a_per_token_draft_cost() -> None:
    """A drafter that is slow only when it resumes after plain steps (a draft model catching up) must not look
    slow per drafted token (otherwise it would idle longer, catch up more, and never draft again); that time is
    the cost of resuming, which spaces the probes instead."""
    import time

    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.decode import _shared_costs, speculative_decode
    from albumen.llm.speculative.drafters.base import Draft
    from albumen.llm.testing import tiny_model

    from .conftest import plain_tokens

    target = tiny_model(seed=3)
    prompt = [5, 6, 7]
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    expected = plain_tokens(target, prompt, cfg)

    class WrongAndSlowToResume:
        name, cost = "slow", 0.0

        def __init__(self) -> None:
            self.last = 0
            self.catch_ups = 0

        def start(self, target, prompt_ids, max_seq_len) -> None:  # noqa: ANN001
            self.last = len(prompt_ids)  # like a draft model that prefilled the prompt

        def finish(self) -> None:
            pass

        def propose(self, tokens, k, cfg, generator):  # noqa: ANN001
            if len(tokens) - self.last >= 2:  # its drafts are always rejected: 2+ new tokens mean plain steps
                time.sleep(0.2)
                self.catch_ups += 1
            self.last = len(tokens)
            done = len(tokens) - len(prompt)
            return Draft([(t + 1) % 256 for t in expected[done : done + k]])  # always rejected

    drafter = WrongAndSlowToResume()
    spec = SpeculativeConfig(k=2)
    assert list(speculative_decode(target, drafter, prompt, cfg, spec)) == expected
    costs = _shared_costs(drafter, target, spec)
    assert costs is not None and drafter.catch_ups > 0
    assert costs.resume_s is not None and costs.resume_s >= 0.2  # the catch-ups went to the resume cost
    # Had a 0.2 s catch-up been counted per drafted token, the mean would be >= 0.2 * 0.3 / 7 (EWMA weight, k_max).
    assert costs.draft_tok_s is None or costs.draft_tok_s < 0.005


def test_probes_back_off_when_even_accepted_drafts_do_not_pay() -> None:
    """A block of 2 rows costs 2 plain steps (bf16 linears without a multi-row kernel): an accepted probe still does
    not make drafting worth it, so probes back off as after rejections, and the next sequence keeps the wait."""
    costs = StepCosts(SpeculativeConfig().k_max)
    first = AdaptiveDraftLength(SpeculativeConfig(k=4), draft_cost=0.0, clock=FakeClock(), costs=costs)
    ks = _run(first, 200, lambda k: k, lambda k: 0.010 * (1 if k == 0 else 2 + k), 0.002)
    assert ks[3:].count(1) <= 6 and costs.probe_wait == 64
    second = AdaptiveDraftLength(SpeculativeConfig(k=4), draft_cost=0.0, clock=FakeClock(), costs=costs)
    assert _run(second, 60, lambda k: k, lambda k: 0.010 * (1 if k == 0 else 2 + k), 0.002) == [0] * 60


def test_expensive_probes_are_spaced_to_the_budget() -> None:
    """A probe whose resume (a draft model's catch-up) costs 4 plain steps waits >= 4 / 0.02 = 200 plain steps."""
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=0), draft_cost=0.5, clock=FakeClock())
    ks = []
    for _ in range(500):
        k = ctl.next_k()
        ks.append(k)
        # plain 10 ms; a 2-row block 12 ms; a resumed draft 40 ms; drafts always rejected
        ctl.update(k, 0, None, 0.010 + 0.002 * k, resume_s=0.040 if k else None)
    probes = [i for i, k in enumerate(ks) if k]
    assert probes and probes[0] < 10  # the first probe comes before its cost is known
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert gaps and min(gaps) >= 210  # (40 + 2) ms / (0.02 * 10 ms)


def test_an_inflated_plain_step_does_not_make_drafting_look_free() -> None:
    """One plain step measured at 2 s (a stall) must not lift every block to 2 s (which made k = 7 look best): it is
    capped at the cheapest measured block, so at 30 % acceptance the controller drafts at most one token."""
    ratio = [1.0, 1.32, 1.54, 1.74, 2.76, 2.98, 3.2, 3.42]
    costs = StepCosts(7)
    costs.verify_s = [2.0] + [0.045 * r for r in ratio[1:]]
    costs.draft_tok_s = 0.015
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4, prior_rate=0.3), draft_cost=0.3, clock=FakeClock(), costs=costs)
    assert ctl.best_k() <= 1
    assert ctl.step_times()[0] <= 0.045 * 1.32


def test_steps_until_probe() -> None:
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=0), draft_cost=0.5, clock=FakeClock())
    assert ctl.steps_until_probe() is None  # a fresh controller measures a plain step first
    assert ctl.next_k() == 0
    ctl.update(0, 0, None, 0.01)
    assert ctl.steps_until_probe() == 8  # the first wait
    ctl.next_k()
    assert ctl.steps_until_probe() == 7
    assert AdaptiveDraftLength(SpeculativeConfig(k=0, adaptive=False), 0.0).steps_until_probe() >= 1 << 20
    drafting = AdaptiveDraftLength(SpeculativeConfig(k=3, adaptive=False), 0.0)
    assert drafting.steps_until_probe() is None


def test_acceptance_is_tracked_per_draft_position() -> None:
    """A drafter whose first token is always right and second always wrong: position 1's rate goes up, position 2's
    down, and the controller drafts exactly one token (the pooled rate, 50 %, would suggest more)."""
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4, k_max=7, measure=False, verify_cost=0.1), draft_cost=0.02)
    for _ in range(40):
        k = ctl.next_k()
        ctl.update(k, min(k, 1))
    rates = ctl.position_rates()
    assert rates[0] > 0.9 and rates[1] < 0.3  # shrunk towards the pooled rate (mostly 1-token drafts: 0.67)
    assert ctl.k == 1
    assert ctl.best_k_at(ctl.rate) >= 2  # the pooled rate alone would draft longer


def test_an_accepted_probe_keeps_the_wait_where_drafting_could_pay() -> None:
    """A borderline drafter whose running rate dipped: its accepted probes do not double the wait (cheap blocks), so
    it gets its chances back; rejected probes still do."""
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=1, measure=False), draft_cost=0.2)
    for _ in range(40):
        k = ctl.next_k()
        ctl.update(k, 0)  # everything rejected: down to k = 0, probes backing off
    assert ctl.k == 0
    waits = []
    for _ in range(200):
        k = ctl.next_k()
        ctl.update(k, k)  # a probe is accepted ...
        if k:
            waits.append(ctl._wait)
            if ctl.k:  # ... until drafting comes back
                break
    assert waits and all(w == waits[0] for w in waits)  # never doubled by an accepted probe


def test_a_drafter_that_stops_on_its_own_is_costed_by_what_it_drafts() -> None:
    """A drafter with a stopping rule proposes fewer tokens than allowed: the controller learns how often drafts go
    on (continue rates, from ``allowed``) and prices an allowance by the tokens it will really draft and verify.
    Here every draft stops after two tokens, all accepted; without the evidence a 7-token allowance is priced as 7
    drafted (and 7 accepted) tokens. The rates carry over to the next sequence with the costs (as the acceptance
    rates do: worth ``prior_weight`` steps)."""
    cfg = SpeculativeConfig(k=4, measure=True, draft_cost=0.2, verify_cost=0.3)
    costs = StepCosts(cfg.k_max)
    blind, told = AdaptiveDraftLength(cfg, 0.2), AdaptiveDraftLength(cfg, 0.2, costs=costs)
    for _ in range(30):
        blind.update(2, 2)
        told.update(2, 2, allowed=7)
    assert blind.continue_rates() == [1.0] * cfg.k_max
    assert blind.outlook()[1] == [float(k) for k in range(cfg.k_max + 1)]
    cont = told.continue_rates()
    assert cont[0] > 0.99 and cont[1] > 0.99 and cont[2] < 0.25  # the prior (1.0) fades with decay
    assert cont[3:] == [1.0] * (cfg.k_max - 3)  # never reached: no evidence (the prior)
    expected, drafted = told.outlook()
    assert drafted[2] > 1.99 and drafted[7] < 2.9 and expected[7] < 3.9  # blind: 7 drafted, 8 expected
    later = AdaptiveDraftLength(cfg, 0.2, costs=costs)  # the next sequence starts from what this one learned,
    assert later.continue_rates()[2] == pytest.approx((cont[2] + 1) / 2)  # worth prior_weight steps against the prior


def test_unmeasured_longer_blocks_follow_the_measured_per_row_cost() -> None:
    """Blocks measured only at 1 and 2 rows, with the 2nd row costing 0.3 of a step (an int4 target, compute-bound):
    longer blocks are priced on that slope, not on the cheap prior shape, so a carried good rate does not open a
    sequence with a 6-row block that costs 2.5 steps."""
    costs = StepCosts(7)
    costs.record(0, None, 0.010, 1.0)
    costs.record(1, 0.001, 0.013, 1.0)
    ctl = AdaptiveDraftLength(SpeculativeConfig(k=4, verify_cost=0.03), draft_cost=0.3, clock=FakeClock(), costs=costs)
    verify = ctl._verify_times()
    assert verify[5] == pytest.approx(0.013 + 4 * 0.003)
    cheap = StepCosts(7)
    cheap.record(0, None, 0.010, 1.0)
    cheap.record(1, 0.001, 0.010, 1.0)  # a flat measured slope: the prior's per-row cost is the floor
    flat = AdaptiveDraftLength(SpeculativeConfig(k=4, verify_cost=0.03), draft_cost=0.3, clock=FakeClock(),
                               costs=cheap)._verify_times()
    assert flat[5] == pytest.approx(0.010 + 4 * 0.010 * 0.03 / 1.03)
