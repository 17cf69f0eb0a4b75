"""Sampling: each filter against transformers' logits processors (the oracle), seeded draws, config checks."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.sampling import SamplingConfig, apply_repetition_penalty, logits_to_probs, sample

transformers = pytest.importorskip("transformers")
gen_utils = pytest.importorskip("transformers.generation.logits_process")


def _logits(seed: int = 0, v: int = 50) -> torch.Tensor:
    return torch.randn(2, v, generator=torch.Generator().manual_seed(seed)) * 3


def _hf_probs(logits: torch.Tensor, processors: list) -> torch.Tensor:
    ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)
    for p in processors:
        logits = p(ids, logits)
    return logits.softmax(-1)


@pytest.mark.parametrize(
    ("cfg", "processors"),
    [
        (SamplingConfig(temperature=0.7), lambda: [gen_utils.TemperatureLogitsWarper(0.7)]),
        (SamplingConfig(temperature=1.0, top_k=5), lambda: [gen_utils.TopKLogitsWarper(5)]),
        (SamplingConfig(temperature=1.3, top_p=0.8),
         lambda: [gen_utils.TemperatureLogitsWarper(1.3), gen_utils.TopPLogitsWarper(0.8)]),
        (SamplingConfig(temperature=1.0, top_k=10, top_p=0.5),
         lambda: [gen_utils.TopKLogitsWarper(10), gen_utils.TopPLogitsWarper(0.5)]),
    ],
)
def test_filters_equal_transformers(cfg: SamplingConfig, processors) -> None:  # noqa: ANN001
    for seed in range(5):
        logits = _logits(seed)
        torch.testing.assert_close(logits_to_probs(logits, cfg), _hf_probs(logits, processors()), rtol=1e-5,
                                   atol=1e-6)


def test_min_p_keeps_tokens_above_a_fraction_of_the_top() -> None:
    logits = _logits(3)
    probs = logits_to_probs(logits, SamplingConfig(temperature=1.0, min_p=0.1))
    full = logits.softmax(-1)
    keep = full >= 0.1 * full.amax(-1, keepdim=True)
    assert torch.equal(probs > 0, keep)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    hf = _hf_probs(logits, [gen_utils.MinPLogitsWarper(0.1)])
    torch.testing.assert_close(probs, hf, rtol=1e-5, atol=1e-6)


def test_repetition_penalty_equals_transformers() -> None:
    logits = _logits(4)
    seen = torch.tensor([[1, 2, 2, 7], [0, 3, 49, 5]])
    ours = apply_repetition_penalty(logits, seen, 1.3)
    theirs = gen_utils.RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    torch.testing.assert_close(ours, theirs)


def test_greedy_is_argmax_and_draws_nothing() -> None:
    logits = _logits(5)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert torch.equal(sample(logits, SamplingConfig(), gen), logits.argmax(-1))
    assert torch.equal(gen.get_state(), state)
    assert torch.equal(logits_to_probs(logits, SamplingConfig()).argmax(-1), logits.argmax(-1))


def test_seeded_sampling_is_reproducible_and_follows_the_distribution() -> None:
    cfg = SamplingConfig(temperature=1.0, top_k=4)
    logits = _logits(6)[:1]
    draws = [int(sample(logits, cfg, torch.Generator().manual_seed(s))) for s in range(400)]
    again = [int(sample(logits, cfg, torch.Generator().manual_seed(s))) for s in range(400)]
    assert draws == again
    probs = logits_to_probs(logits, cfg)[0]
    assert set(draws) <= set(torch.nonzero(probs).flatten().tolist())
    top = int(probs.argmax())
    assert abs(draws.count(top) / 400 - float(probs[top])) < 0.08


@pytest.mark.parametrize(
    "bad",
    [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(min_p=1), dict(top_k=-1), dict(max_new_tokens=-1),
     dict(repetition_penalty=0)],
)
def test_invalid_configs_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        SamplingConfig(**bad)
