"""Quantized linears: shapes, dequantize, kernel path == dequant path, gradients to activations, fallbacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albumen.llm.kernels import quant_gemv
from albumen.llm.quant import Int4Linear, Int8Linear, PalettizedLinear, parse_scheme
from albumen.llm.quant.linear import quantized_linear_class

SCHEMES = ["int8", "int4-g32", "int4-g64", "int4-g128-sym", "int4-g32-sym", "pal2", "pal3-gc16", "pal4", "pal4-gc16",
           "pal4-b32", "pal3-b32-sym"]
# relative weight error each scheme must stay under on Gaussian weights
MAX_REL_ERR = {"int8": 0.01, "int4": 0.12, "pal2": 0.35, "pal3": 0.2, "pal4": 0.1}


def _linear(out_f: int = 64, in_f: int = 256, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_f, out_f, bias=bias)


@pytest.mark.parametrize("name", SCHEMES)
def test_from_float_keeps_shapes_and_weight(name: str) -> None:
    lin = _linear()
    scheme = parse_scheme(name)
    q = quantized_linear_class(scheme).from_float(lin, scheme)
    assert (q.in_features, q.out_features) == (256, 64)
    w = q.dequantize()
    assert w.shape == (64, 256)
    rel = float((w - lin.weight.detach()).norm() / lin.weight.detach().norm())
    assert rel < MAX_REL_ERR[name.split("-")[0]]
    # a zero point per group (int4 default, pal4-b32) costs a bf16 per group on top of the scale
    budget = {"int8": 8.2, "int4-g32": 5.1, "int4-g64": 4.6, "pal4-b32": 5.1, "pal3-b32-sym": 3.6}.get(name, 4.6)
    assert q.bits_per_weight() < budget
    torch.testing.assert_close(q.bias, lin.bias.detach())


@pytest.mark.parametrize("name", SCHEMES)
def test_kernel_path_matches_dequant_path_at_decode(name: str) -> None:
    lin = _linear()
    scheme = parse_scheme(name)
    q = quantized_linear_class(scheme).from_float(lin, scheme)
    x = torch.randn(1, 1, 256)
    with torch.no_grad():
        fast = q(x)
        q.reference = True
        ref = q(x)
    assert fast.shape == (1, 1, 64) and fast.dtype == torch.float32
    # bf16 activations (int4pack, int8pack) cost ~1% of the output scale
    assert float((fast - ref).abs().max()) < 0.03 * float(ref.abs().max())
    torch.testing.assert_close(ref, nn.functional.linear(x, q.dequantize(), q.bias))


def test_inputs_beyond_kernel_max_rows_take_the_exact_dequant_path() -> None:
    q = Int8Linear.from_float(_linear(), parse_scheme("int8"))
    q.kernel_max_rows = 8
    x = torch.randn(2, 16, 256)
    with torch.no_grad():
        torch.testing.assert_close(q(x), nn.functional.linear(x, q.dequantize(), q.bias))


def test_prompt_sized_inputs_take_the_kernel_path() -> None:
    q = Int4Linear.from_float(_linear(), parse_scheme("int4-g32"))
    x = torch.randn(1, 70, 256)
    with torch.no_grad():
        fast = q(x)
        q.reference = True
        ref = q(x)
    # int4pack (bf16 activations) for prompts: alone, or beside our GEMV for 1..8 rows (made on first long input)
    kind, payload = q.runtime()
    assert kind == "int4pack" or (kind == "int4-vnni" and payload.pack() is not None)
    assert not torch.equal(fast, ref)  # bf16 activations: not the dequant path's result, but close to it
    assert float((fast - ref).abs().max()) < 0.03 * float(ref.abs().max())


def test_bf16_activations_give_bf16_outputs() -> None:
    q = Int4Linear.from_float(_linear(bias=False), parse_scheme("int4-g32"))
    with torch.no_grad():
        y = q(torch.randn(1, 256, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and y.shape == (1, 64)


@pytest.mark.parametrize("name", ["int8", "int4-g32", "pal3-gc16"])
def test_gradients_reach_activations_through_frozen_base(name: str) -> None:
    scheme = parse_scheme(name)
    q = quantized_linear_class(scheme).from_float(_linear(), scheme)
    x = torch.randn(1, 3, 256, requires_grad=True)
    q(x).square().sum().backward()
    xx = x.detach().clone().requires_grad_(True)
    nn.functional.linear(xx, q.dequantize(), q.bias).square().sum().backward()
    expected = xx.grad
    torch.testing.assert_close(x.grad, expected)
    assert not any(p.requires_grad for p in q.parameters())


def test_int4_kernel_falls_back_when_out_features_not_multiple_of_16() -> None:
    lin = _linear(out_f=40)
    q = Int4Linear.from_float(lin, parse_scheme("int4-g32"))
    q.kernel = "int4pack"  # torch's kernel needs out_features % 16 == 0
    assert q.kernel_name() == "dequant"
    x = torch.randn(1, 256)
    with torch.no_grad():
        torch.testing.assert_close(q(x), nn.functional.linear(x, q.dequantize(), q.bias))
        if quant_gemv.quant_gemv_available():  # ours takes any out_features; prompts then take the dequant path
            q.kernel = "auto"
            assert q.kernel_name() == "int4-vnni"
            ref = nn.functional.linear(x, q.dequantize(), q.bias)
            assert float((q(x) - ref).abs().max()) < 0.03 * float(ref.abs().max())
            xl = torch.randn(12, 256)
            torch.testing.assert_close(q(xl), nn.functional.linear(xl, q.dequantize(), q.bias))


def test_kernel_choice_is_switchable() -> None:
    q = PalettizedLinear.from_float(_linear(), parse_scheme("pal4"))
    q.kernel = "bf16"
    assert q.kernel_name() == "lut-bf16"
    q.kernel = "dequant"
    assert q.kernel_name() == "dequant"
    q.kernel = "int8pack"
    assert q.kernel_name() == "lut-int8pack"
    x = torch.randn(1, 256)
    with torch.no_grad():
        y = q(x)
    ref = nn.functional.linear(x, q.dequantize(), q.bias)
    assert float((y - ref).abs().max()) < 0.02 * float(ref.abs().max())


def test_palette_int8_expansion_is_exact() -> None:
    q = PalettizedLinear.from_float(_linear(), parse_scheme("pal3-gc16"))
    w8, scale = q.int8_weight()
    assert w8.dtype == torch.int8
    torch.testing.assert_close(w8.float() * scale[:, None], q.dequantize())


@pytest.mark.parametrize("name", SCHEMES)
def test_rows_match_dequantized_rows(name: str) -> None:
    scheme = parse_scheme(name)
    q = quantized_linear_class(scheme).from_float(_linear(), scheme)
    ids = torch.tensor([[3, 17], [63, 0]])
    torch.testing.assert_close(q.rows(ids), q.dequantize()[ids])


def test_ragged_group_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="multiple of group size"):
        Int4Linear.from_float(nn.Linear(40, 16), parse_scheme("int4-g32"))


def test_palette_per_channel_scale_helps_rows_of_different_magnitude() -> None:
    from dataclasses import replace

    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(32, 64, generator=g) * torch.logspace(-2, 0, 32)[:, None])
    scheme = parse_scheme("pal3")
    errs = {}
    for pcs in (False, True):
        mod = PalettizedLinear.from_float(lin, replace(scheme, per_channel_scale=pcs))
        assert (mod.row_scale is not None) == pcs
        errs[pcs] = float((mod.dequantize() - lin.weight.detach()).norm() / lin.weight.detach().norm())
        torch.testing.assert_close(mod.rows(torch.tensor([3, 30])), mod.dequantize()[[3, 30]])
    assert errs[True] < 0.8 * errs[False]


def test_int8pack_takes_weights_at_any_address() -> None:
    """Buffers mapped from a safetensors file sit at arbitrary offsets; the kernel needs aligned ones (it crashed)."""
    from albumen.llm.quant import kernels

    q = torch.randint(-127, 128, (64, 128), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    raw = torch.zeros(q.numel() + 8, dtype=torch.int8)
    shifted = raw[8:].view(64, 128)  # 8 bytes past an aligned allocation
    shifted.copy_(q)
    assert shifted.data_ptr() % 64
    packed = kernels.pack_int8(shifted, torch.full((64,), 0.01), "int8pack")
    assert packed is not None
    x = torch.randn(1, 128)
    torch.testing.assert_close(kernels.int8_linear(x, packed), x @ (q.float() * 0.01).t(), atol=0.05, rtol=0.02)


def test_int8_takes_the_vnni_kernel_only_where_chunks_are_not_mostly_padding() -> None:
    from albumen.llm.kernels.quant_gemv import quant_gemv_available

    if not quant_gemv_available():
        pytest.skip("needs the AVX-512 VNNI build")
    wide = Int8Linear.from_float(_linear(32, 512), parse_scheme("int8"))  # 16 groups of 32: one full chunk
    narrow = Int8Linear.from_float(_linear(32, 576), parse_scheme("int8"))  # 18 groups: a second chunk of 2
    assert wide.kernel_name() == "vnni" and narrow.kernel_name() == "int8pack"
    from albumen.llm.quant import kernels

    q, s = narrow.qweight, narrow.scale
    big = kernels.pack_int8(q.repeat(kernels.VNNI_RAGGED_MIN_NUMEL // q.numel() + 1, 1), s.repeat(
        kernels.VNNI_RAGGED_MIN_NUMEL // q.numel() + 1), "vnni")
    assert big is not None and big.kernel == "vnni"  # a large table (a head) takes ours even on ragged rows
    x = torch.randn(3, 512)
    with torch.no_grad():
        assert float((wide(x) - nn.functional.linear(x, wide.dequantize(), wide.bias)).abs().max()) < 0.02


@pytest.mark.parametrize("name", ["int4-g32", "pal4-b32"])
def test_decode_kernel_rows_are_batch_invariant(name: str) -> None:
    # speculative decoding needs a row scored alone (decode) to equal the same row inside a block of up to 8
    if not quant_gemv.quant_gemv_available():
        pytest.skip("needs the AVX-512 VNNI build")
    scheme = parse_scheme(name)
    q = quantized_linear_class(scheme).from_float(_linear(), scheme)
    x = torch.randn(8, 256)
    with torch.no_grad():
        block = q(x)
        for i in (0, 3, 7):
            assert torch.equal(q(x[i:i + 1]), block[i:i + 1])
