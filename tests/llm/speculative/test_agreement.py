"""The clock-free draft comparison (speculative/agreement.py): agreement flags with and without a draft vocabulary,
the step replay by hand, and the replay against the real speculative loop (same steps, drafts and acceptances)."""

from __future__ import annotations

import copy

import pytest
import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.agreement import greedy_agreement, predicted_speedup, simulate_steps
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


def test_predicted_speedup_weighs_draft_and_verification() -> None:
    # 2 tokens per step for 2 draft tokens of 10 ms and a 3-row check of 120 ms, plain 100 ms: 200 / 140
    assert predicted_speedup(2.0, 2, 100.0, 10.0, [100.0, 110.0, 120.0]) == pytest.approx(200 / 140)
    with pytest.raises(ValueError, match="rows"):
        predicted_speedup(2.0, 3, 100.0, 10.0, [100.0, 110.0, 120.0])


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
