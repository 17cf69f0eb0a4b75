"""The clock-free draft comparison (speculative/agreement.py): agreement flags with and without a draft vocabulary,
the step replay by hand, and the replay against the real speculative loop (same steps, drafts and acceptances)."""

from __future__ import annotations

import copy

import pytest
import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.agreement import (
    draft_confidence,
    greedy_agreement,
    predicted_speedup,
    replay_drafter,
    simulate_steps,
    target_features,
)
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.model import ModelDrafter
from albumen.llm.testing import tiny_model

from .conftest import plain_tokens


def test_agreement_is_argmax_equality_within_the_allowed_ids() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 9.0], [1.0, 0.0, 4.0, 0.0]])
    reply = torch.tensor([1, 0, 2])
    assert greedy_agreement(logits, reply).tolist() == [True, False, True]
    # without id 3 the second row's best allowed id is 0; without id 1 the first row picks 3
    assert greedy_agreement(logits, reply, torch.tensor([0, 1, 2])).tolist() == [True, True, True]
    assert greedy_agreement(logits, reply, torch.tensor([0, 2, 3])).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="expected"):
        greedy_agreement(logits, reply[:2])


def test_replay_by_hand() -> None:
    agree = [True, True, False, True, False, False, True]
    # k = 2: draft 2 at t=0 (both kept, +1: t=3); draft 2 at t=3 (one kept: t=5); at t=5 one token may be drafted
    # before the last (rejected: t=6); at t=6 the last token, nothing drafted, the target's own (t=7)
    r = simulate_steps(agree, 2)
    assert (r.tokens, r.steps, r.drafted, r.accepted) == (7, 4, 5, 3)
    assert r.tokens_per_step == pytest.approx(7 / 4) and r.acceptance == pytest.approx(3 / 5)
    plain = simulate_steps(agree, 0)
    assert (plain.tokens, plain.steps, plain.drafted) == (7, 7, 0)
    every = simulate_steps([True] * 9, 4)  # 9 tokens: steps of 5 and 4
    assert (every.tokens, every.steps) == (9, 2)
    assert simulate_steps([], 3).steps == 0
    with pytest.raises(ValueError):
        simulate_steps(agree, -1)


def test_confidence_threshold_stops_drafts_before_unsure_tokens() -> None:
    agree = [True, True, False, True, True, True]
    conf = [0.9, 0.8, 0.3, 0.95, 0.2, 0.9]
    r = simulate_steps(agree, 3, conf, threshold=0.5)
    # t=0: 0.9, 0.8 proposed and kept, 0.3 stops the draft (a third pass paid): +1 -> t=3; t=3: 0.95 kept, 0.2 stops:
    # t=5: the last token, nothing to draft
    assert r.lengths == (2, 1, 0) and r.computed == (3, 2, 0)
    assert (r.tokens, r.accepted) == (6, 3)
    # after a wrong token the draft is assumed to go on to k: its own text's confidence is unknown
    miss = simulate_steps([False, True, True, True], 3, [0.9, 0.1, 0.1, 0.9], threshold=0.5)
    assert miss.lengths[0] == 3 and miss.accepted == 0
    assert simulate_steps(agree, 3, conf, threshold=0.0) == simulate_steps(agree, 3)
    with pytest.raises(ValueError, match="confidences"):
        simulate_steps(agree, 3, conf[:2], threshold=0.5)


def test_draft_confidence_is_the_top_probability_within_the_allowed_ids() -> None:
    logits = torch.tensor([[0.0, 0.0, 10.0], [1.0, 1.0, 0.0]])
    assert draft_confidence(logits).tolist() == pytest.approx([torch.softmax(logits[0], 0)[2].item(), 0.4223],
                                                              abs=1e-4)
    assert draft_confidence(logits, torch.tensor([0, 1]))[0].item() == pytest.approx(0.5)


def test_predicted_speedup_weighs_draft_and_verification() -> None:
    # one step: 2 tokens proposed and kept (+1) for 2 draft passes of 10 ms and a 3-row check of 120 ms; plain 100 ms
    r = simulate_steps([True, True, True], 2)
    assert (r.tokens, r.lengths, r.computed) == (3, (2,), (2,))
    assert predicted_speedup(r, 100.0, 10.0, [100.0, 110.0, 120.0]) == pytest.approx(300 / 140)
    with pytest.raises(ValueError, match="rows"):
        predicted_speedup(simulate_steps([True] * 5, 3), 100.0, 10.0, [100.0, 110.0, 120.0])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_replay_matches_the_speculative_loop(k: int) -> None:
    """A teacher-forced pass of the draft over the target's greedy answer predicts every step of the real loop."""
    target = tiny_model(seed=3, dim=32, n_layers=1, tie_word_embeddings=False)
    draft = copy.deepcopy(target)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        w = draft.lm_head.weight
        w.add_(torch.randn(w.shape, generator=g) * 0.5 * w.std())  # agrees often, not always
    prompt = [7, 3, 9, 12, 40]
    cfg = SamplingConfig(max_new_tokens=48, ignore_eos=True)
    reply = plain_tokens(target, prompt, cfg)
    with torch.inference_mode():
        draft.clear_caches()
        logits = draft(torch.tensor([prompt + reply[:-1]]))[0, len(prompt) - 1:]
    agree = greedy_agreement(logits, torch.tensor(reply))
    assert 0.2 < float(agree.float().mean()) < 0.95  # both outcomes occur
    stats = SpeculativeStats()
    got = list(speculative_decode(target, ModelDrafter(draft), prompt, cfg, SpeculativeConfig(k=k, adaptive=False),
                                  stats=stats))
    assert got == reply
    replay = simulate_steps(agree[1:], k)
    assert (replay.steps, replay.drafted, replay.accepted) == (stats.target_steps, stats.drafted, stats.accepted)


def _pair(seed: int = 3, noise: float = 0.5, sharpen: float = 1.0):
    target = tiny_model(seed=seed, dim=32, n_layers=1, tie_word_embeddings=False)
    with torch.no_grad():
        target.lm_head.weight.mul_(sharpen)  # peakier distributions: confident and unsure tokens both occur
    draft = copy.deepcopy(target)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        w = draft.lm_head.weight
        w.add_(torch.randn(w.shape, generator=g) * noise * w.std())
    return target, draft


@pytest.mark.parametrize("confidence", [0.0, 0.6])
def test_live_replay_matches_the_speculative_loop(confidence: float) -> None:
    """replay_drafter with a real drafter (a confidence rule included) reproduces the loop's steps and drafts."""
    target, draft = _pair()
    prompt = [7, 3, 9, 12, 40]
    cfg = SamplingConfig(max_new_tokens=48, ignore_eos=True)
    reply = plain_tokens(target, prompt, cfg)
    stats = SpeculativeStats()
    drafter = ModelDrafter(draft, min_confidence=confidence)
    got = list(speculative_decode(target, drafter, prompt, cfg, SpeculativeConfig(k=4, adaptive=False), stats=stats))
    assert got == reply
    r = replay_drafter(ModelDrafter(draft, min_confidence=confidence), target, prompt, reply, 4)
    assert (r.steps, r.drafted, r.accepted, r.tokens) == (stats.target_steps, stats.drafted, stats.accepted, 47)
    assert sum(r.computed) >= r.drafted
    if confidence:
        assert min(r.lengths[:-1]) < 4 and sum(r.computed) > r.drafted  # some drafts stopped early, a pass paid


def test_confidence_rule_keeps_greedy_identical_and_drafts_less() -> None:
    target, draft = _pair(seed=5, noise=0.8, sharpen=6.0)
    prompt = [1, 2, 3, 4]
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    reply = plain_tokens(target, prompt, cfg)
    loose = replay_drafter(ModelDrafter(draft), target, prompt, reply, 4)
    strict = replay_drafter(ModelDrafter(draft, min_confidence=0.5), target, prompt, reply, 4)
    assert 0 < strict.drafted < loose.drafted and strict.acceptance > loose.acceptance
    for conf in (0.3, 0.7):
        out = list(speculative_decode(target, ModelDrafter(draft, min_confidence=conf), prompt, cfg))
        assert out == reply
    with pytest.raises(ValueError, match="min_confidence"):
        ModelDrafter(draft, min_confidence=1.0)


def test_stopping_after_the_doubted_token_proposes_it_and_pays_no_extra_pass() -> None:
    """keep_unsure (spec ``:aP``): the doubted token is proposed and the draft stops after it, so every forward pass
    drafts a token (none is spent on a token the rule drops); drafts are the 'before' rule's plus that token, and the
    greedy output stays identical; under sampling the doubted token carries its q like any other."""
    target, draft = _pair(seed=5, noise=0.8, sharpen=6.0)
    prompt = [1, 2, 3, 4]
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    reply = plain_tokens(target, prompt, cfg)
    before = replay_drafter(ModelDrafter(draft, min_confidence=0.5), target, prompt, reply, 4)
    after = replay_drafter(ModelDrafter(draft, min_confidence=0.5, keep_unsure=True), target, prompt, reply, 4)
    loose = replay_drafter(ModelDrafter(draft), target, prompt, reply, 4)
    assert sum(after.computed) == after.drafted and sum(before.computed) > before.drafted
    assert before.drafted / before.steps < after.drafted / after.steps < loose.drafted / loose.steps
    assert list(speculative_decode(target, ModelDrafter(draft, min_confidence=0.5, keep_unsure=True), prompt,
                                   cfg)) == reply
    sampled = SamplingConfig(max_new_tokens=30, temperature=0.8, seed=3, ignore_eos=True)
    drafter = ModelDrafter(draft, min_confidence=0.5, keep_unsure=True)
    lengths = set()
    with torch.inference_mode():
        drafter.start(target, prompt, 64)
        for t in range(len(reply)):  # under sampling every proposed token, the doubted one too, comes with its q row
            proposal = drafter.propose(prompt + reply[:t], 4, sampled, torch.Generator().manual_seed(t))
            assert proposal.probs is not None and proposal.probs.shape[0] == len(proposal.tokens) > 0
            lengths.add(len(proposal.tokens))
        drafter.finish()
    assert len(lengths) > 1  # some drafts stopped at a doubted token


def test_live_replay_of_a_head_matches_the_speculative_loop() -> None:
    """A head replayed on the target's features along its answer (target_features) makes the loop's steps; which
    drafts the confidence rule cuts depends on those features (zeros instead change them)."""
    from albumen.llm.speculative.drafters.head import HeadDrafter

    from .test_head import random_head

    target = tiny_model(seed=6)
    with torch.no_grad():
        target.lm_head.weight.mul_(20.0)  # confident and unsure drafts both occur
    prompt = list(range(20, 44))
    cfg = SamplingConfig(max_new_tokens=30, ignore_eos=True)
    reply = plain_tokens(target, prompt, cfg)
    stats = SpeculativeStats()
    got = list(speculative_decode(target, HeadDrafter(random_head(target, 2), min_confidence=0.5), prompt, cfg,
                                  SpeculativeConfig(k=3, adaptive=False), stats=stats))
    assert got == reply
    feats = target_features(target, prompt + reply[:-1])
    assert feats.shape == (len(prompt) + len(reply) - 1, target.args.dim)
    r = replay_drafter(HeadDrafter(random_head(target, 2), min_confidence=0.5), target, prompt, reply, 3,
                       features=feats)
    assert (r.steps, r.drafted, r.accepted, r.lengths) == (stats.target_steps, stats.drafted, stats.accepted,
                                                           tuple(stats.draft_lengths))
    assert 0 < r.drafted < 3 * (r.steps - 1)  # some drafts cut short, some not
    assert sum(r.computed) > r.drafted  # a cut draft paid for the pass that doubted
    blind = replay_drafter(HeadDrafter(random_head(target, 2), min_confidence=0.5), target, prompt, reply, 3,
                           features=torch.zeros_like(feats))
    assert blind.lengths != r.lengths
