"""The target's own 4-bit copy as its draft, with distilled row gains and norms (speculative/self_draft.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.quant import QuantConfig, quantize_model, quantized_modules
from albumen.llm.quant.linear import Int4Linear, Int8Linear
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.model import ModelDrafter
from albumen.llm.speculative.factory import make_drafter
from albumen.llm.speculative.self_draft import (SelfDraftConfig, _Shadow, agreement, apply_gains, fold_gain,
                                                load_gains, quantized_copy, save_gains, self_draft, train_gains)
from albumen.llm.testing import tiny_model

from .conftest import add_random_lora, plain_tokens


def _seqs(target: torch.nn.Module, n: int, seed: int = 0) -> list[tuple[list[int], int]]:
    """The target's own greedy answers to random prompts: (ids, first reply index)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        prompt = torch.randint(3, 250, (6,), generator=gen).tolist()
        reply = plain_tokens(target, prompt, SamplingConfig(max_new_tokens=24, ignore_eos=True))
        out.append((prompt + reply, len(prompt)))
    return out


def test_quantized_copy_leaves_the_target_alone() -> None:
    target = tiny_model(seed=3)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    draft = quantized_copy(target)
    assert not quantized_modules(target)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())
    mods = quantized_modules(draft)
    assert isinstance(mods["model.layers.0.mlp.down_proj"], Int4Linear) and isinstance(mods["lm_head"], Int8Linear)
    ids = torch.tensor([[5, 9, 33, 70, 2]])
    with torch.no_grad():
        a, b = target(ids), draft(ids)
    assert 0 < (a - b).norm() < 0.2 * a.norm()  # close but not equal: 4-bit weights
    with pytest.raises(ValueError, match="already quantized"):
        quantized_copy(draft)


@pytest.mark.parametrize("scheme", ["int4-g32", "int8"])
def test_fold_gain_scales_each_output_row(scheme: str) -> None:
    model = tiny_model(seed=1)
    quantize_model(model, QuantConfig.from_scheme(scheme))
    layer = model.model.layers[0].mlp.up_proj
    before = layer.dequantize().clone()
    gain = 0.5 + torch.rand(layer.out_features)
    fold_gain(layer, gain)
    # bf16 scales (int4) round each product to 8 bits of mantissa
    assert (layer.dequantize() - before * gain[:, None]).abs().max() < 1e-2 * before.abs().max()
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        layer(x)  # builds the kernel layout
    with pytest.raises(RuntimeError, match="before the first forward"):
        fold_gain(layer, gain)


def test_apply_gains_names_what_does_not_fit() -> None:
    draft = quantized_copy(tiny_model())
    with pytest.raises(ValueError, match="no such gain"):
        apply_gains(draft, {"model.layers.9.mlp.up_proj.gain": torch.ones(128)})
    with pytest.raises(ValueError, match="shape"):
        apply_gains(draft, {"model.norm.weight": torch.ones(3)})
    norm = torch.full((64,), 0.5)
    assert apply_gains(draft, {"model.norm.weight": norm}) == 1
    assert torch.equal(draft.model.norm.weight, norm)


def test_shadow_computes_what_the_draft_computes() -> None:
    target = tiny_model(seed=2)
    draft = quantized_copy(target)
    shadow = _Shadow(target, draft)
    ids = torch.tensor([[5, 9, 33, 70, 2, 19]])
    with torch.no_grad():
        # the int4 kernel rounds activations to 8 bits: the shadow is the draft up to that, far closer than the target
        assert (shadow.model(ids) - draft(ids)).norm() < 0.15 * (target(ids) - draft(ids)).norm()
        gains = {n: 0.8 + 0.4 * torch.rand(g.shape) for n, g in shadow.gains.items()}
        for n, g in gains.items():
            shadow.gains[n].copy_(g)
        trained = quantized_copy(target)
        apply_gains(trained, shadow.tensors())
        assert (shadow.model(ids) - trained(ids)).norm() < 0.15 * (target(ids) - draft(ids)).norm()


def test_training_brings_the_draft_closer_and_round_trips(tmp_path: Path) -> None:
    target = tiny_model(seed=4, n_layers=2)
    target.requires_grad_(False)
    seqs = _seqs(target, 12)
    draft = quantized_copy(target)
    result = train_gains(target, draft, seqs, SelfDraftConfig(lr=1e-2, batch_size=4, steps=60, minutes=2),
                         log=lambda line: None)
    assert result["steps"] == 60 and result["loss_last"] < 0.7 * result["loss_first"]
    path = tmp_path / "gains.safetensors"
    save_gains(path, result["tensors"], {"scheme": "int4-g32", "steps": result["steps"]})
    tensors, meta = load_gains(path)
    assert meta["steps"] == 60 and set(tensors) == set(result["tensors"])
    trained = self_draft(target, path)
    assert agreement(trained, target, seqs) >= agreement(quantized_copy(target), target, seqs)
    ids = torch.tensor([seqs[0][0]])
    with torch.no_grad():
        kl_before = torch.nn.functional.kl_div(draft(ids).log_softmax(-1), target(ids).log_softmax(-1),
                                               log_target=True, reduction="batchmean")
        kl_after = torch.nn.functional.kl_div(trained(ids).log_softmax(-1), target(ids).log_softmax(-1),
                                              log_target=True, reduction="batchmean")
    assert kl_after < kl_before
    with pytest.raises(FileNotFoundError, match="self_draft train"):
        load_gains(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("seed", range(2))
def test_self_drafter_is_exact(tmp_path: Path, seed: int) -> None:
    target = tiny_model(seed=seed)
    prompt = [11, 12, 13, 40, 41, 42, 11, 12][seed:]
    cfg = SamplingConfig(max_new_tokens=32, ignore_eos=True)
    expected = plain_tokens(target, prompt, cfg)
    drafter = make_drafter("self:untrained:a0.6", target, "tiny")
    assert isinstance(drafter, ModelDrafter) and drafter.keep_unsure and drafter.min_confidence == 0.6
    stats = SpeculativeStats()
    got = list(speculative_decode(target, drafter, prompt, cfg, SpeculativeConfig(k=3, adaptive=False, measure=False),
                                  stats=stats))
    assert got == expected and stats.drafted > 0
    assert stats.accepted / stats.drafted > 0.5  # the same model at 4 bits agrees with itself most of the time


def test_self_specs(tmp_path: Path) -> None:
    from albumen.llm.speculative.factory import default_self_gains_path
    from albumen.llm.speculative.vocab import save_draft_vocab

    target = tiny_model()
    shadow = _Shadow(target, quantized_copy(target))
    save_gains(tmp_path / "g.safetensors", shadow.tensors(), {"scheme": "int4-g32"})
    save_draft_vocab(tmp_path / "v.json", torch.arange(100), {})
    d = make_drafter(f"self:{tmp_path / 'g.safetensors'}:{tmp_path / 'v.json'}", target, "tiny")
    assert isinstance(d, ModelDrafter) and d.vocab is not None and d.vocab.numel() == 100
    assert make_drafter("self:full", target, "tiny").vocab is None
    assert "untrained" in make_drafter("self", target, "tiny").name  # nothing trained for this target
    assert default_self_gains_path("tiny") is None
    with pytest.raises(ValueError, match="unknown option"):
        make_drafter("self:bogus", target, "tiny")


def test_a_lora_target_drafts_with_its_adapter_folded_in() -> None:
    target = tiny_model(seed=3)
    registry = add_random_lora(target)
    bare = quantized_copy(target)  # no adapter active yet: the base
    registry.activate("style")
    cfg = SamplingConfig(max_new_tokens=32, ignore_eos=True)
    prompt = [11, 12, 13, 40, 41, 42]
    expected = plain_tokens(target, prompt, cfg)
    folded = quantized_copy(target)
    ids = torch.tensor([[5, 9, 33, 70, 2, 19]])
    with torch.no_grad():
        target.clear_caches()
        want = target(ids)
        assert (folded(ids) - want).norm() < 0.5 * (bare(ids) - want).norm()
    stats = SpeculativeStats()
    got = list(speculative_decode(target, make_drafter("self:untrained", target, "tiny"), prompt, cfg,
                                  SpeculativeConfig(k=3, adaptive=False, measure=False), stats=stats))
    assert got == expected and stats.accepted / stats.drafted > 0.5
