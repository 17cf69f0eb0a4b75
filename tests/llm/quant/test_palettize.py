"""K-means palettization: cluster recovery, LUT sizes, bit packing, error falling with bits."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.quant.palettize import (
    dequantize_palette,
    kmeans_1d,
    pack_bits,
    palettize,
    palettize_blocks,
    palettize_grouped_channels,
    palettize_tensor,
    unpack_bits,
)


def test_kmeans_finds_well_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([-3.0, -1.0, 0.5, 4.0])
    values = (centers[torch.randint(0, 4, (4000,), generator=g)] + 0.01 * torch.randn(4000, generator=g))[None]
    found = kmeans_1d(values, 4)
    torch.testing.assert_close(found[0], centers, atol=0.01, rtol=0)


def test_kmeans_is_batched_per_row() -> None:
    rows = torch.stack([torch.linspace(0, 1, 100), torch.linspace(10, 20, 100)])
    c = kmeans_1d(rows, 2)
    assert c.shape == (2, 2)
    assert bool((c[0] < 1).all()) and bool((c[1] > 10).all())


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8])
def test_pack_bits_round_trip(bits: int) -> None:
    idx = torch.randint(0, 2**bits, (3, 37), dtype=torch.uint8, generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(idx, bits)
    assert packed.shape == (3, (37 * bits + 7) // 8)
    assert torch.equal(unpack_bits(packed, bits, 37), idx)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_tensor_palette_uses_at_most_two_to_the_bits_values(bits: int) -> None:
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    idx, lut, lut_scale = palettize_tensor(w, bits)
    assert lut.shape == (1, 2**bits) and lut.dtype == torch.int8
    deq = dequantize_palette(idx, lut, lut_scale)
    assert deq.unique().numel() <= 2**bits


def test_grouped_channel_palette_has_one_lut_per_group() -> None:
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(2))
    w[16:] *= 10  # the second group of channels has a much wider range
    idx, lut, lut_scale = palettize_grouped_channels(w, 3, channel_group=16)
    assert lut.shape == (2, 8) and lut_scale.shape == (2,)
    deq = dequantize_palette(idx, lut, lut_scale)
    for g in range(2):
        assert deq[g * 16:(g + 1) * 16].unique().numel() <= 8
    per_tensor = dequantize_palette(*palettize_tensor(w, 3))
    err_gc = (deq[:16] - w[:16]).pow(2).mean()
    err_t = (per_tensor[:16] - w[:16]).pow(2).mean()
    assert err_gc < err_t  # the narrow group gets its own table


def test_error_falls_with_more_bits() -> None:
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    errs = [float((dequantize_palette(*palettize_tensor(w, b)) - w).pow(2).mean()) for b in (2, 3, 4)]
    assert errs[0] > errs[1] > errs[2]
    # 4-bit k-means on Gaussian weights: close to the Lloyd-Max optimum (~0.0095 sigma^2)
    assert errs[2] < 0.013


def test_channel_group_must_divide_out_features() -> None:
    with pytest.raises(ValueError, match="channel group"):
        palettize_grouped_channels(torch.randn(20, 8), 2, channel_group=16)


def test_block_palette_finds_a_per_block_uniform_grid() -> None:
    # weights that already lie on an affine 16-level grid per block of 32 (what a GGUF Q4 checkpoint holds)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (64, 256), generator=g).float()
    codes[:, ::32], codes[:, 1::32] = 0.0, 15.0  # every block reaches both ends
    lo = torch.randn(64, 8, 1, generator=g) * 0.01
    step = torch.rand(64, 8, 1, generator=g) * 1e-3 + 1e-4
    w = (lo + codes.view(64, 8, 32) * step).view(64, 256)
    idx, lut, scale, zero = palettize_blocks(w, 4, 32)
    assert lut.shape == (1, 16) and lut.dtype == torch.int8 and zero is not None
    rec = (lut[0].float()[idx.long()].view(64, 8, 32) * scale[..., None] + zero[..., None]).view(64, 256)
    assert float((rec - w).norm() / w.norm()) < 0.01  # only the int8 snapping of the LUT is lost


@pytest.mark.parametrize("symmetric", [True, False])
def test_block_palette_beats_a_per_tensor_palette_on_gaussian_weights(symmetric: bool) -> None:
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(1)) * torch.logspace(-3, -1, 64)[:, None]
    idx, lut, scale, zero = palettize_blocks(w, 4, 32, symmetric)
    assert (zero is None) == symmetric
    rec = lut[0].float()[idx.long()].view(64, 8, 32) * scale[..., None]
    rec = (rec if zero is None else rec + zero[..., None]).view(64, 256)
    i2, l2, s2 = palettize(w, 4, None)
    per_tensor = dequantize_palette(i2, l2, s2)
    assert float((rec - w).norm()) < 0.5 * float((per_tensor - w).norm())


def test_block_palette_rejects_ragged_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of the palette block"):
        palettize_blocks(torch.randn(4, 40), 4, 32)
