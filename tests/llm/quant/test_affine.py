"""Affine int8 / int4 math: ranges, error bounds, the kernel convention, nibble packing."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.quant.affine import (
    dequantize_int4,
    dequantize_int8,
    pack_nibbles,
    quantize_int4,
    quantize_int8,
    unpack_nibbles,
)


def _w(n: int = 48, k: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed))


def test_int8_error_is_at_most_half_a_step() -> None:
    w = _w()
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (48,)
    assert int(q.abs().max()) == 127  # the largest magnitude of each row uses the full range
    err = (dequantize_int8(q, scale) - w).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-6).all())


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_error_is_at_most_half_a_step(group: int, symmetric: bool) -> None:
    w = _w()
    q, scale, zero = quantize_int4(w, group, symmetric)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    assert scale.shape == zero.shape == (48, 128 // group)
    err = (dequantize_int4(q, scale, zero, group) - w).abs().reshape(48, -1, group)
    assert bool((err <= scale[..., None] / 2 + 1e-5).all())
    if symmetric:
        assert bool((zero == 0).all())


def test_int4_asymmetric_hits_min_and_max_exactly() -> None:
    w = _w(16, 64) + 3.0  # all positive: a symmetric grid would waste half its codes
    q, scale, zero = quantize_int4(w, 32, symmetric=False)
    deq = dequantize_int4(q, scale, zero, 32).reshape(16, 2, 32)
    wg = w.reshape(16, 2, 32)
    torch.testing.assert_close(deq.amin(-1), wg.amin(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(deq.amax(-1), wg.amax(-1), atol=1e-5, rtol=0)
    q_sym, s_sym, z_sym = quantize_int4(w, 32, symmetric=True)
    err_asym = (dequantize_int4(q, scale, zero, 32) - w).pow(2).mean()
    err_sym = (dequantize_int4(q_sym, s_sym, z_sym, 32) - w).pow(2).mean()
    assert err_asym < err_sym


def test_int4_symmetric_maps_signed_extreme_to_code_end() -> None:
    w = torch.tensor([[-8.0, 1.0, 2.0, 7.0] * 8])
    q, scale, _ = quantize_int4(w, 32, symmetric=True)
    assert float(scale) == pytest.approx(1.0)
    assert int(q.min()) == 0 and int(q.max()) == 15


def test_int4_rejects_ragged_groups() -> None:
    with pytest.raises(ValueError, match="multiple of the int4 group"):
        quantize_int4(_w(4, 40), 32)


def test_nibbles_round_trip() -> None:
    q = torch.randint(0, 16, (5, 12), dtype=torch.uint8)
    p = pack_nibbles(q)
    assert p.shape == (5, 6)
    assert torch.equal(unpack_nibbles(p), q)
    assert torch.equal(unpack_nibbles(p[[4, 0]]), q[[4, 0]])


@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_range_search_never_increases_the_error(symmetric: bool) -> None:
    w = _w(64, 256)
    w[::7, ::13] *= 6.0  # outliers: clipping them pays off
    full = quantize_int4(w, 32, symmetric)
    searched = quantize_int4(w, 32, symmetric, search=16)

    def err(res: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return (dequantize_int4(res[0], res[1], res[2], 32) - w).pow(2).reshape(64, 8, 32).sum(-1)  # (N, G)

    assert bool((err(searched) <= err(full) + 1e-5).all())
    assert float(err(searched).sum()) < 0.95 * float(err(full).sum())
    if symmetric:
        assert bool((searched[2] == 0).all())
