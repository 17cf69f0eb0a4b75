"""Sensitivity-driven mixed precision: measurements, budget, and that it beats a uniform plan at equal bits."""

from __future__ import annotations

import torch

from albumen.llm.quant import QuantConfig, parse_scheme, quantize_model
from albumen.llm.quant.sensitivity import (
    kl_divergence,
    layer_sensitivity,
    mixed_precision_config,
    plan_mixed_precision,
    scheme_bits,
)
from albumen.llm.testing import tiny_model

LOW, HIGH = parse_scheme("pal2-gc16"), parse_scheme("pal4-gc16")


def _batches() -> list[torch.Tensor]:
    return [torch.randint(0, 260, (2, 32), generator=torch.Generator().manual_seed(7))]


def test_kl_is_zero_for_equal_and_positive_otherwise() -> None:
    a = torch.randn(3, 5, 11)
    assert float(kl_divergence(a, a)) == 0.0
    assert float(kl_divergence(a, a + torch.randn(3, 5, 11))) > 0


def test_sensitivity_restores_the_model() -> None:
    model = tiny_model()
    ids = _batches()[0]
    with torch.no_grad():
        before = model(ids)
    sens = layer_sensitivity(model, _batches(), LOW)
    assert len(sens) == 14 and all(v > 0 for v in sens.values())
    with torch.no_grad():
        torch.testing.assert_close(model(ids), before, rtol=0, atol=0)


def test_plan_respects_budget_and_prefers_sensitive_layers() -> None:
    sens = {"a": 1.0, "b": 0.01, "c": 0.5}
    shapes = {n: (16, 64) for n in sens}
    plan = plan_mixed_precision(sens, shapes, LOW, HIGH, target_bits=2.7)
    assert plan["a"] == HIGH and plan["b"] == LOW
    mean = sum(scheme_bits(s, 64) for s in plan.values()) / 3
    assert mean <= 2.7


def test_mixed_beats_uniform_at_equal_bits() -> None:
    model = tiny_model(n_layers=2, seed=3)
    batches = _batches()
    config, _ = mixed_precision_config(model, batches, LOW, HIGH, target_bits=3.0)
    with torch.no_grad():
        ref = model(batches[0])
    mixed = tiny_model(n_layers=2, seed=3)
    quantize_model(mixed, config)
    uniform = tiny_model(n_layers=2, seed=3)
    quantize_model(uniform, QuantConfig(default=parse_scheme("pal3-gc16"), lm_head=config.lm_head,
                                        embedding=config.embedding))
    with torch.no_grad():
        kl_mixed = float(kl_divergence(ref, mixed(batches[0])))
        kl_uniform = float(kl_divergence(ref, uniform(batches[0])))
    assert kl_mixed < kl_uniform
