"""Greedy verification of a chain plus alternative leaves in one plan call (DecodePlan.tree_argmax, decode.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.base import Draft
from albumen.llm.speculative.drafters.model import ModelDrafter
from albumen.llm.speculative.factory import make_drafter
from albumen.llm.testing import tiny_model

from .conftest import plain_tokens

PROMPT = [5, 17, 99, 3, 42, 8]


def _plan(model: torch.nn.Module) -> object:
    model.setup_caches(1, 64)
    plan = model.decode_plan()
    if plan is None or not hasattr(plan, "tree_argmax"):
        pytest.skip("decode plan not built")
    for i, t in enumerate(PROMPT[:-1]):
        plan.argmax(t, i)
    return plan


def _caches(model: torch.nn.Module, upto: int) -> list[torch.Tensor]:
    return [t[:, :, :upto].clone() for layer in model.model.layers
            for t in (layer.self_attn.kv_cache.k_cache, layer.self_attn.kv_cache.v_cache)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_leaves_score_as_their_own_chains_bit_for_bit(dtype: torch.dtype) -> None:
    pos = len(PROMPT) - 1
    chain, leaves = [PROMPT[-1], 30, 31, 32], [(2, 77), (3, 78), (1, 79)]
    with torch.inference_mode():
        model = tiny_model(seed=7, dtype=dtype)
        plan = _plan(model)
        best = plan.tree_argmax(chain + [t for _, t in leaves], pos, [0, 1, 2, 3] + [d for d, _ in leaves])
        feats = plan.features()
        after_tree = _caches(model, pos + len(chain))
        expected_rows, expected_feats = [], []
        for d, t in [(3, chain[3])] + leaves:  # each row alone: its own chain from pos
            ref = tiny_model(seed=7, dtype=dtype)
            ref_plan = _plan(ref)
            own = ref_plan.block_argmax(chain[:d] + [t], pos)
            expected_rows.append(own)
            expected_feats.append(ref_plan.features())
        assert best[:4] == expected_rows[0]
        assert torch.equal(feats[:4], expected_feats[0])
        for row, ((d, _), own, f) in enumerate(zip(leaves, expected_rows[1:], expected_feats[1:]), start=4):
            assert best[row] == own[d] and torch.equal(feats[row], f[d])
        # the chain's cache entries are untouched by the leaves (they were swapped back)
        ref = tiny_model(seed=7, dtype=dtype)
        ref_plan = _plan(ref)
        ref_plan.block_argmax(chain, pos)
        assert all(torch.equal(a, b) for a, b in zip(after_tree, _caches(ref, pos + len(chain))))
        # an accepted leaf's key/value moves to its position: the cache is then what its own chain wrote
        plan.move_kv(pos + 4, pos + 2)
        ref = tiny_model(seed=7, dtype=dtype)
        ref_plan = _plan(ref)
        ref_plan.block_argmax(chain[:2] + [77], pos)
        assert all(torch.equal(a, b) for a, b in zip(_caches(model, pos + 3), _caches(ref, pos + 3)))


def test_bad_trees_are_refused() -> None:
    with torch.inference_mode():
        plan = _plan(tiny_model())
        with pytest.raises(RuntimeError, match="depth"):
            plan.tree_argmax([1, 2, 3, 4], 5, [0, 1, 2, 0])  # a leaf cannot replace the committed token
        with pytest.raises(RuntimeError, match="depth"):
            plan.tree_argmax([1, 2, 3, 4], 5, [0, 1, 2, 3 + 1])
        with pytest.raises(RuntimeError, match="depths"):
            plan.tree_argmax([1, 2, 3], 5, [0, 1])


class _Oracle:
    """Knows the target's greedy continuation; drafts it with one wrong token at ``miss`` and the right one there
    as an alternative: every step is rescued by the leaf."""

    name, cost = "oracle", 0.1

    def __init__(self, truth: Sequence[int], miss: int, k: int = 4) -> None:
        self.truth, self.miss, self.k = list(truth), miss, k

    def start(self, target, prompt_ids, max_seq_len) -> None:  # noqa: ANN001
        self.base = len(prompt_ids)

    def propose(self, tokens, k, cfg, gen) -> Draft:  # noqa: ANN001
        at = len(tokens) - self.base
        right = self.truth[at:at + min(k, self.k)]
        if len(right) < self.miss:
            return Draft(right)
        wrong = list(right[:self.miss])
        good = wrong[self.miss - 1]
        wrong[self.miss - 1] = (good + 1) % 250
        return Draft(wrong, None, ((self.miss, good),))

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("miss", [1, 2, 3])
def test_an_accepted_leaf_keeps_the_output_identical(miss: int) -> None:
    target = tiny_model(seed=3)
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    truth = plain_tokens(target, PROMPT, cfg)
    stats = SpeculativeStats()
    got = list(speculative_decode(target, _Oracle(truth, miss), PROMPT, cfg,
                                  SpeculativeConfig(k=4, adaptive=False, measure=False), stats=stats))
    assert got == truth
    # every step keeps the miss - 1 right drafts, the leaf and the target's token after it
    assert stats.tokens_per_step >= miss + 0.5 and stats.accepted >= miss * (stats.target_steps - 1)


def test_leaves_are_ignored_when_sampling() -> None:
    target = tiny_model(seed=3)
    greedy = SamplingConfig(max_new_tokens=30, ignore_eos=True)
    truth = plain_tokens(target, PROMPT, greedy)
    cfg = SamplingConfig(max_new_tokens=30, temperature=0.9, seed=1, ignore_eos=True)
    expected = plain_tokens(target, PROMPT, cfg)
    got = list(speculative_decode(target, _Oracle(truth, 2), PROMPT, cfg, SpeculativeConfig(k=3, adaptive=False)))
    assert len(got) == len(expected)  # exactness under sampling is the rule's (test_decode); leaves change nothing


@pytest.mark.parametrize("seed", range(3))
def test_model_drafter_offers_its_second_choice(seed: int) -> None:
    target = tiny_model(seed=seed)
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    expected = plain_tokens(target, PROMPT, cfg)
    drafter = make_drafter("self:untrained:s0.9", target, "tiny")
    assert isinstance(drafter, ModelDrafter) and drafter.alternative and drafter.keep_unsure
    offered: list[tuple[int, int]] = []
    original = drafter.propose

    def propose(tokens, k, c, gen):  # noqa: ANN001
        out = original(tokens, k, c, gen)
        offered.extend(out.alternatives)
        assert all(i == len(out.tokens) and t != out.tokens[-1] for i, t in out.alternatives)
        return out

    drafter.propose = propose  # type: ignore[method-assign]
    got = list(speculative_decode(target, drafter, PROMPT, cfg, SpeculativeConfig(k=4, adaptive=False)))
    assert got == expected and offered
    with pytest.raises(ValueError, match="confidence rule"):
        ModelDrafter(tiny_model(), alternative=True)


@pytest.mark.parametrize("miss", [1, 3])
def test_the_clock_free_replay_counts_leaves_as_the_loop_does(miss: int) -> None:
    from albumen.llm.speculative.agreement import predicted_speedup, replay_drafter

    target = tiny_model(seed=3)
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    truth = plain_tokens(target, PROMPT, cfg)
    stats = SpeculativeStats()
    list(speculative_decode(target, _Oracle(truth, miss), PROMPT, cfg,
                            SpeculativeConfig(k=4, adaptive=False, measure=False), stats=stats))
    replay = replay_drafter(_Oracle(truth, miss), target, PROMPT, truth, 4)
    assert (replay.steps, replay.accepted, replay.tokens) == (stats.target_steps, stats.accepted, len(truth) - 1)
    assert replay.leaves and all(n == 1 for n in replay.leaves[:-1])
    costs = [1.0 + 0.01 * i for i in range(8)]
    with_leaves = predicted_speedup(replay, 1.0, 0.1, costs)
    assert with_leaves < predicted_speedup(type(replay)(*[getattr(replay, f) for f in (
        "tokens", "steps", "drafted", "accepted", "lengths", "computed")]), 1.0, 0.1, costs)  # leaves cost rows
