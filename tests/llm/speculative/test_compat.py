"""Speculation on top of the other engine features: quantized weights and an active LoRA adapter (tiny fakes)."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.quant import QuantConfig, quantize_model, quantized_modules
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.head import DraftHead, HeadConfig, HeadDrafter
from albumen.llm.speculative.drafters.lookup import LookupDrafter
from albumen.llm.speculative.drafters.model import ModelDrafter
from albumen.llm.speculative.invariance import batch_dependent_layers, batch_invariant_kernels
from albumen.llm.testing import tiny_model

from .conftest import add_random_lora, plain_tokens

CFG = SamplingConfig(max_new_tokens=32, ignore_eos=True)
PROMPT = [10, 20, 30, 10, 20, 40, 50, 10, 20]


def test_fbgemm_layers_are_switched_to_a_row_independent_kernel() -> None:
    target = tiny_model(seed=2, dim=64)
    quantize_model(target, QuantConfig.from_scheme("int8"))
    for m in quantized_modules(target).values():
        m.kernel = "fbgemm"
    if not batch_dependent_layers(target):
        pytest.skip("fbgemm int8 kernel not available")
    assert batch_invariant_kernels(target)
    assert batch_dependent_layers(target) == []


def _drafters(target):
    torch.manual_seed(0)
    head = DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(260)).eval()
    draft = tiny_model(seed=9, dim=32)
    quantize_model(draft, QuantConfig.from_scheme("int8"))
    return {"lookup": LookupDrafter(), "model-int8": ModelDrafter(draft), "head": HeadDrafter(head)}


def _assert_every_drafter_identical(target) -> None:  # noqa: ANN001
    """Greedy speculation with each drafter gives plain greedy decoding's tokens, and the drafters did draft."""
    expected = plain_tokens(target, PROMPT, CFG)
    for name, drafter in _drafters(target).items():
        stats = SpeculativeStats()
        got = list(speculative_decode(target, drafter, PROMPT, CFG, SpeculativeConfig(k=4), stats=stats))
        assert got == expected, name
        assert stats.drafted > 0


@pytest.mark.parametrize("scheme", ["int8", "int4-g32", "pal4-gc16"])
def test_greedy_identical_with_quantized_target(scheme: str) -> None:
    target = tiny_model(seed=2, dim=64)
    quantize_model(target, QuantConfig.from_scheme(scheme))
    batch_invariant_kernels(target)  # fbgemm's per-call activation scale would couple the block's rows
    assert batch_dependent_layers(target) == []
    _assert_every_drafter_identical(target)


def test_greedy_identical_with_an_active_lora_adapter() -> None:
    target = tiny_model(seed=3, dim=64)
    registry = add_random_lora(target)
    base = plain_tokens(target, PROMPT, CFG)
    registry.activate("style")
    expected = plain_tokens(target, PROMPT, CFG)
    assert expected != base  # the adapter really changes the output
    for name, drafter in _drafters(target).items():
        assert list(speculative_decode(target, drafter, PROMPT, CFG, SpeculativeConfig(k=4))) == expected, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_greedy_identical_with_a_target_on_packed_weights(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """A target whose products run on packed copies (the packed kernels, as Qwen2.5-1.5B's large bf16 linears and
    SmolLM2's fp32 ones do): the decode plan verifies blocks, a row inside a block is the row alone, so greedy
    speculation is token-identical (bf16 was not on oneDNN's packed copy)."""
    import albumen.llm.model as model_mod

    target = tiny_model(seed=4, dim=64, dtype=dtype)
    for name in ("PACKED_MIN_NUMEL", "PACKED_MIN_IN"):
        monkeypatch.setattr(model_mod, name, 1)
    model_mod.use_decode_kernels(target)
    target.setup_caches(1, 64)
    with torch.inference_mode():
        if target.decode_plan() is None:
            pytest.skip("decode ops not built")
    assert all(m.__dict__.get("_packed") for m in target.modules() if type(m) is torch.nn.Linear)
    _assert_every_drafter_identical(target)
