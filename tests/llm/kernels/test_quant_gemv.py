"""The quantized GEMV kernels against the float product of the dequantized weight (activations are quantized to
int8 per block inside the kernel, so agreement is ~1e-2 relative, not exact)."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.kernels import quant_gemv as qg
from albumen.llm.quant.affine import dequantize_int4, quantize_int4, quantize_int8

pytestmark = pytest.mark.skipif(not qg.quant_gemv_available(), reason="needs the AVX-512 VNNI build")

# (out, in, group): full 16-group chunks, a ragged last chunk (576 = 18 groups, 8960 = 280), odd out_features
SHAPES = [(48, 1536, 32), (37, 576, 32), (16, 8960, 32), (20, 896, 128), (24, 192, 64)]


def _rel(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).norm() / ref.norm())


@pytest.mark.parametrize("n,k,group", SHAPES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_matches_dequantized_weight(n: int, k: int, group: int, symmetric: bool) -> None:
    g = torch.Generator().manual_seed(n + k)
    w = torch.randn(n, k, generator=g) * 0.02
    q, scale, zero = quantize_int4(w, group, symmetric)
    zero_or_none = None if symmetric else zero
    wd = dequantize_int4(q, scale.bfloat16().float(), None if symmetric else zero.bfloat16().float(), group)
    layout = qg.pack_q4(q, scale, zero_or_none, group)
    meta = (1 if symmetric else 2) * 2 * (k // group)  # bf16 scale (+ zero) per group
    assert layout.blocks.numel() == -(-n // 4) * 4 * (k // 2 + meta)  # nibbles + metadata, rows padded to blocks of 4
    bias = torch.randn(n, generator=g)
    for m in range(1, 9):
        x = torch.randn(m, k, generator=g)
        ref = x @ wd.T + bias
        assert _rel(qg.q4_linear(x, layout, bias), ref) < 0.02


@pytest.mark.parametrize("n,k,group", SHAPES[:3])
def test_palette_lut_matches_table_lookup(n: int, k: int, group: int) -> None:
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16, (n, k), generator=g, dtype=torch.uint8)
    lut = torch.randint(-127, 128, (16,), generator=g).to(torch.int8)
    scale = torch.rand(n, k // group, generator=g) * 1e-3 + 1e-4
    zero = torch.randn(n, k // group, generator=g) * 1e-3
    w = (lut.float()[codes.long()].view(n, -1, group) * scale.bfloat16().float()[..., None]
         + zero.bfloat16().float()[..., None]).view(n, k)
    layout = qg.pack_q4(codes, scale, zero, group, lut)
    x = torch.randn(3, k, generator=g, dtype=torch.bfloat16)
    y = qg.q4_linear(x, layout)
    assert y.dtype == torch.bfloat16 and y.shape == (3, n)
    assert _rel(y.float(), x.float() @ w.T) < 0.02


@pytest.mark.parametrize("n,k", [(48, 1536), (37, 576), (16, 8960)])
def test_int8_matches_dequantized_weight(n: int, k: int) -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(n, k, generator=g) * 0.02
    q, scale = quantize_int8(w)
    layout = qg.pack_q8(q, scale)
    for m in (1, 2, 5, 8):
        x = torch.randn(m, k, generator=g)
        assert _rel(qg.q8_linear(x, layout), x @ (q.float() * scale[:, None]).T) < 0.02


def test_leading_dims_and_zero_activations() -> None:
    w = torch.randn(32, 256) * 0.02
    q, s, z = quantize_int4(w, 32, False)
    layout = qg.pack_q4(q, s, z, 32)
    x = torch.zeros(1, 2, 256)  # an all-zero block has scale 0: no division by zero
    y = qg.q4_linear(x, layout)
    assert y.shape == (1, 2, 32) and torch.isfinite(y).all() and float(y.abs().max()) == 0.0


def test_bad_inputs_are_clear_errors() -> None:
    q, s, z = quantize_int4(torch.randn(16, 64), 32, False)
    layout = qg.pack_q4(q, s, z, 32)
    with pytest.raises(ValueError, match="1..8 rows"):
        qg.q4_linear(torch.randn(9, 64), layout)
    with pytest.raises(ValueError, match="multiple of 8"):
        qg.pack_q4(q, s, z, 12)
    with pytest.raises(ValueError, match="% 32"):
        qg.pack_q8(torch.zeros(4, 48, dtype=torch.int8), torch.ones(4))


def test_switched_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALBUMEN_KERNELS", "0")
    assert not qg.quant_gemv_available()


def test_row_slices_of_a_layout_are_layouts() -> None:
    g = torch.Generator().manual_seed(3)
    q, s, z = quantize_int4(torch.randn(40, 576, generator=g) * 0.02, 32, False)  # a ragged last chunk (18 groups)
    whole = qg.pack_q4(q, s, z, 32)
    x = torch.randn(2, 576, generator=g)
    for lo, hi in ((0, 16), (16, 28), (28, 40)):
        part = whole.rows(lo, hi)
        assert torch.equal(part.blocks, qg.pack_q4(q[lo:hi], s[lo:hi], z[lo:hi], 32).blocks)
        assert torch.equal(qg.q4_linear(x, part), qg.q4_linear(x, whole)[:, lo:hi])  # rows are independent
    with pytest.raises(ValueError, match="blocks"):
        whole.rows(2, 16)
