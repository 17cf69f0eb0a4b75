"""The whole-model int4 decode plan (quant/plan.py, kernels/csrc/quant_plan.cpp) against the fused module path:
equal logits bit for bit, block rows equal to single rows, clean declines."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.kernels.quant_plan import quant_plan_module
from albumen.llm.quant import QuantConfig, quantize_model, set_kernel
from albumen.llm.quant.fused import disable_fused_decode, enable_fused_decode
from albumen.llm.quant.plan import quant_decode_plan
from albumen.llm.testing import tiny_model

pytestmark = pytest.mark.skipif(quant_plan_module() is None, reason="needs the AVX-512 VNNI build")

PROMPT = list(range(3, 14))  # 11 tokens: the prefill runs as modules
TOKENS = [5, 9, 17, 33, 2, 71, 40, 8, 99, 12, 6, 1]


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():  # as generate runs (the plan bypasses autograd: it declines while gradients are on)
        yield


def _quantized(scheme: str, arch: str, dtype: torch.dtype) -> torch.nn.Module:
    # dim 512: 16 groups of 32 per row, so an int8 head takes our GEMV (ragged rows fall back to int8pack);
    # the -all preset (int4 head and table) on dim 128 keeps that case small
    model = tiny_model(arch=arch, dim=128 if scheme.endswith("-all") else 512, seed=1)
    quantize_model(model, QuantConfig.from_scheme(scheme))
    return model.to(dtype)


def _prefill(model: torch.nn.Module) -> None:
    model.setup_caches(1, 64)
    model(torch.tensor([PROMPT]), torch.arange(len(PROMPT)))


def _module_logits(model: torch.nn.Module) -> torch.Tensor:
    """(len(TOKENS), V): one token per step through the module path (the fused int4 layers)."""
    _prefill(model)
    at = len(PROMPT)
    return torch.cat([model(torch.tensor([[t]]), torch.tensor([at + i]))[0] for i, t in enumerate(TOKENS)])


CASES = [("int4-g32", "qwen2"), ("int4-g32", "llama"), ("int4-g32-all", "qwen2"), ("pal4-b32", "qwen2")]


@pytest.mark.parametrize("scheme,arch", CASES)  # int8 head + int8 table; int4 head + int4 table; block palettes
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_plan_logits_equal_the_module_path(scheme: str, arch: str, dtype: torch.dtype) -> None:
    model = _quantized(scheme, arch, dtype)
    ref = _module_logits(model)
    _prefill(model)  # the same history again (the plan overwrites the caches from here)
    plan = quant_decode_plan(model)
    assert plan is not None and plan.max_positions == 64
    got = torch.cat([plan.logits(t, len(PROMPT) + i) for i, t in enumerate(TOKENS)])
    assert got.dtype == dtype and got.shape == ref.shape
    assert torch.equal(got, ref)
    _prefill(model)
    greedy = [plan.argmax(t, len(PROMPT) + i) for i, t in enumerate(TOKENS)]
    assert greedy == ref.float().argmax(-1).tolist()


@pytest.mark.parametrize("scheme,arch", CASES[::2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_block_of_rows_equals_the_rows_alone(scheme: str, arch: str, dtype: torch.dtype) -> None:
    model = _quantized(scheme, arch, dtype)
    _prefill(model)
    plan = quant_decode_plan(model)
    at = len(PROMPT)
    single = torch.cat([plan.logits(t, at + i) for i, t in enumerate(TOKENS)])
    _prefill(model)
    blocks, i = [], 0
    for n in (2, 8, 1, 1):  # verification blocks of k + 1 rows
        blocks.append(plan.block_logits(TOKENS[i:i + n], at + i))
        i += n
    assert torch.equal(torch.cat(blocks), single)  # batch-invariant: bit for bit
    _prefill(model)
    assert plan.block_argmax(TOKENS[:5], at) == single[:5].float().argmax(-1).tolist()
    assert plan.features().shape == (5, model.args.dim)


def test_bad_calls_raise_clear_errors() -> None:
    model = _quantized("int4-g32-all", "qwen2", torch.float32)
    _prefill(model)
    plan = quant_decode_plan(model)
    with pytest.raises(RuntimeError, match="1..8 tokens"):
        plan.block_logits(list(range(9)), 20)
    with pytest.raises(RuntimeError, match="beyond the cache"):
        plan.logits(3, 64)
    with pytest.raises(RuntimeError, match="out of range"):
        plan.logits(10_000, 20)


def test_declines_where_the_module_path_must_run() -> None:
    model = _quantized("int4-g32-all", "qwen2", torch.float32)
    assert quant_decode_plan(model) is None  # no caches
    _prefill(model)
    assert quant_decode_plan(model) is not None
    with torch.enable_grad():
        assert quant_decode_plan(model) is None  # the norms' weights would want gradients
    handle = model.model.layers[1].mlp.up_proj.register_forward_hook(lambda m, i, o: None)
    assert quant_decode_plan(model) is None  # a hook must run
    handle.remove()
    disable_fused_decode(model)
    assert quant_decode_plan(model) is None  # no fused layer steps to share
    enable_fused_decode(model)
    assert quant_decode_plan(model) is not None
    set_kernel(model, "int4pack")  # torch's kernel: the fused Python step runs it, the plan does not
    assert quant_decode_plan(model) is None
    set_kernel(model, "auto")
    model.model.layers[0].mlp.down_proj = torch.nn.Linear(256, 128)  # a swapped module (as LoRA does)
    assert quant_decode_plan(model) is None
    unquantized = tiny_model(arch="qwen2", dim=128)
    unquantized.setup_caches(1, 16)
    assert quant_decode_plan(unquantized) is None


def test_enable_installs_the_plan_builder() -> None:
    model = _quantized("int4-g32-all", "qwen2", torch.float32)
    assert model.__dict__.get("_quant_plan") is quant_decode_plan  # quantize_model enabled the fused step
    disable_fused_decode(model)
    assert "_quant_plan" not in model.__dict__
