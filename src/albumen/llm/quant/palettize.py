"""Palettization as in Core ML: each weight becomes an index into a small k-means look-up table (LUT).

``bits`` index bits give ``2**bits`` LUT entries. One LUT per tensor (``palettize_tensor``) or one per group of
``channel_group`` consecutive output channels (``palettize_grouped_channels``, Core ML's "per grouped channel").
Both run the same batched 1-D k-means. LUT entries are snapped to an int8 grid with one scale per LUT (error far
below the k-means error) so a LUT expands losslessly into an int8 weight for the fast int8 kernel.

Also here: packing of b-bit indices into bytes (2, 3, 4 ... bits), because a 3-bit index must cost 3 bits on disk.
Pure functions of tensors; this module knows nothing about modules or kernels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "dequantize_palette",
    "kmeans_1d",
    "pack_bits",
    "palettize",
    "palettize_blocks",
    "palettize_grouped_channels",
    "palettize_tensor",
    "unpack_bits",
]


def kmeans_1d(values: Tensor, k: int, iters: int = 12, init: Tensor | None = None) -> Tensor:
    """Lloyd's k-means on rows of scalars, batched: one independent clustering per row.

    In 1-D the clusters are intervals of the sorted values, so each step is: boundaries = midpoints between
    neighbouring centroids; each centroid = mean of the sorted values between its boundaries (prefix sums).
    Initialised at quantiles, which already is a good clustering for bell-shaped weights.

    Args:
        values: (R, n) float values; each row is clustered on its own.
        k: clusters per row.
        iters: Lloyd iterations.
        init: (k,) starting centroids (sorted) for every row instead of the quantiles.
    Returns:
        (R, k) float32 centroids, sorted ascending per row.
    """
    v, _ = torch.sort(values.detach().float(), dim=1)  # (R, n)
    r, n = v.shape
    csum = torch.nn.functional.pad(v.double().cumsum(dim=1), (1, 0))  # (R, n + 1)
    qs = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    idx0 = (qs * (n - 1)).round().long().clamp(0, n - 1)
    cent = v[:, idx0].double() if init is None else init.double().expand(r, k).clone()  # (R, k)
    for _ in range(iters):
        mids = (cent[:, 1:] + cent[:, :-1]) / 2  # (R, k - 1)
        # cut[j] = number of sorted values below boundary j
        cuts = torch.searchsorted(v.double().contiguous(), mids.contiguous())  # (R, k - 1)
        lo = torch.nn.functional.pad(cuts, (1, 0), value=0)  # (R, k)
        hi = torch.nn.functional.pad(cuts, (0, 1), value=n)  # (R, k)
        count = (hi - lo).double()
        total = csum.gather(1, hi) - csum.gather(1, lo)
        # an empty cluster keeps its centroid
        cent = torch.where(count > 0, total / count.clamp(min=1), cent)
        cent, _ = torch.sort(cent, dim=1)
    return cent.float()


def _snap_to_int8_grid(lut: Tensor) -> tuple[Tensor, Tensor]:
    """(G, k) LUTs -> (G, k) int8 LUTs and (G,) scales with lut ~= lut_q * scale."""
    scale = lut.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    return torch.round(lut / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _assign(w_rows: Tensor, lut: Tensor) -> Tensor:
    """(G, n) values, (G, k) sorted LUT -> (G, n) uint8 index of the nearest entry."""
    mids = ((lut[:, 1:] + lut[:, :-1]) / 2).contiguous()  # (G, k - 1)
    return torch.searchsorted(mids, w_rows.contiguous()).to(torch.uint8)


def palettize(w: Tensor, bits: int, channel_group: int | None, iters: int = 12) -> tuple[Tensor, Tensor, Tensor]:
    """K-means palettization of a weight matrix.

    Args:
        w: (N, K) float weight.
        bits: index bits; the LUT has ``2**bits`` entries.
        channel_group: output channels per LUT, or None for one LUT for the whole tensor.
        iters: k-means iterations.
    Returns:
        idx: (N, K) uint8 indices; lut: (G, 2**bits) int8 entries; lut_scale: (G,) float32, where
        G = 1 per tensor or N // channel_group, and ``w[n, j] ~= lut[g(n), idx[n, j]] * lut_scale[g(n)]``.
    """
    n, k = w.shape
    w = w.detach().float()
    if channel_group is None:
        rows = w.reshape(1, n * k)
    else:
        if n % channel_group:
            raise ValueError(f"out_features {n} is not a multiple of the palette channel group {channel_group}")
        rows = w.reshape(n // channel_group, channel_group * k)  # (G, cg * K)
    lut = kmeans_1d(rows, 2**bits, iters)  # (G, 2**bits)
    lut_q, lut_scale = _snap_to_int8_grid(lut)
    snapped = lut_q.float() * lut_scale[:, None]
    idx = _assign(rows, snapped).reshape(n, k)
    return idx, lut_q, lut_scale


def palettize_tensor(w: Tensor, bits: int, iters: int = 12) -> tuple[Tensor, Tensor, Tensor]:
    """One LUT for the whole tensor; see ``palettize``."""
    return palettize(w, bits, None, iters)


def palettize_grouped_channels(w: Tensor, bits: int, channel_group: int, iters: int = 12) -> tuple[Tensor, Tensor, Tensor]:
    """One LUT per ``channel_group`` output channels; see ``palettize``."""
    return palettize(w, bits, channel_group, iters)


def dequantize_palette(idx: Tensor, lut: Tensor, lut_scale: Tensor) -> Tensor:
    """(N, K) indices, (G, k) int8 LUT, (G,) scales -> (N, K) float32."""
    n, k = idx.shape
    g = lut.shape[0]
    table = lut.float() * lut_scale.float()[:, None]  # (G, k)
    rows_per_lut = n // g
    lut_of_row = torch.arange(n) // rows_per_lut  # (N,)
    return table[lut_of_row[:, None], idx.long()]


def pack_bits(idx: Tensor, bits: int) -> Tensor:
    """(N, K) uint8 values < 2**bits -> (N, ceil(K * bits / 8)) uint8, little-endian bit order within a row."""
    n, k = idx.shape
    a = idx.cpu().numpy().astype(np.uint8)
    planes = np.unpackbits(a[..., None], axis=-1, bitorder="little")[..., :bits]  # (N, K, bits)
    packed = np.packbits(planes.reshape(n, k * bits), axis=-1, bitorder="little")
    return torch.from_numpy(packed)


def unpack_bits(packed: Tensor, bits: int, k: int) -> Tensor:
    """The inverse of ``pack_bits``: (N, ceil(K * bits / 8)) uint8 -> (N, K) uint8.

    Plain torch ops (no numpy), so it also runs inside traced / exported graphs.
    """
    n = packed.shape[0]
    # int32 arithmetic instead of uint8 shifts: exporters type uint8 shifts inconsistently
    powers = 2 ** torch.arange(8, dtype=torch.int32)  # (8,)
    planes = torch.remainder(torch.div(packed.to(torch.int32)[..., None], powers, rounding_mode="floor"), 2)
    planes = planes.reshape(n, -1)[:, : k * bits].reshape(n, k, bits)  # (N, K, bits), little-endian
    return (planes * powers[:bits]).sum(-1).to(torch.uint8)


def palettize_blocks(
    w: Tensor, bits: int, block: int, symmetric: bool = False, iters: int = 12, refits: int = 2,
    sample: int = 1 << 22,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """A palette with per-block scales: one k-means LUT shared by the tensor, learned on block-normalised weights.

    Core ML's per-channel scale idea at block granularity (a learned NF4): every block of ``block`` inputs is first
    mapped to [-1, 1] (asymmetric: by its min and max; symmetric: by its max |w|), the LUT is k-means on those
    normalised values (a random ``sample`` of them for big tensors), entries snapped to an int8 grid, and then, for
    ``refits`` rounds, each block's scale (and offset) is re-fitted by least squares to its assigned entries and the
    weights are re-assigned.

    Args:
        w: (N, K) float weight, K divisible by ``block``.
        bits: index bits (2**bits LUT entries).
        block: inputs per (scale, offset).
        symmetric: no offset (scale only).
    Returns:
        idx: (N, K) uint8; lut: (1, 2**bits) int8 (sorted); scale, zero: (N, K // block) float32 (zero None when
        symmetric), with ``w[n, j] ~= lut[idx[n, j]] * scale[n, j // block] + zero[n, j // block]``.
    """
    n, k = w.shape
    if k % block:
        raise ValueError(f"in_features {k} is not a multiple of the palette block {block}")
    wg = w.detach().float().reshape(n, k // block, block)  # (N, G, b)
    if symmetric:
        zero = torch.zeros(n, k // block)
        half = wg.abs().amax(dim=-1).clamp(min=1e-12)  # (N, G)
    else:
        lo, hi = wg.amin(dim=-1), wg.amax(dim=-1)
        zero, half = (hi + lo) / 2, ((hi - lo) / 2).clamp(min=1e-12)
    u = (wg - zero[..., None]) / half[..., None]  # (N, G, b) in [-1, 1]
    flat = u.reshape(1, -1)
    if flat.shape[1] > sample:
        pick = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(0))[:sample]
        flat = flat[:, pick]
    # Start from an even grid: every block reaches -1 and +1 (asymmetric) so the extremes are always populated,
    # and weights that already lie on a uniform 4-bit grid per block (GGUF Q4 checkpoints) are found exactly.
    lut = kmeans_1d(flat, 2**bits, iters, init=torch.linspace(-1.0, 1.0, 2**bits))  # (1, 2**bits) in [-1, 1]
    lut_q = torch.round(lut * 127.0).clamp(-127, 127)  # int8 grid; the block scale absorbs the 1/127
    scale, zero = half / 127.0, zero
    table = lut_q[0]
    for _ in range(refits + 1):
        idx = _assign(((wg - zero[..., None]) / scale[..., None]).reshape(1, -1), lut_q).reshape(n, -1, block)
        c = table[idx.long()]  # (N, G, b) assigned integer entries
        if symmetric:
            scale = ((c * wg).sum(-1) / (c * c).sum(-1).clamp(min=1e-12)).clamp(min=1e-12)
        else:  # ordinary least squares of w on c per block
            cm, wm = c.mean(-1), wg.mean(-1)
            var = ((c - cm[..., None]) ** 2).sum(-1)
            cov = ((c - cm[..., None]) * (wg - wm[..., None])).sum(-1)
            scale = torch.where(var > 0, cov / var.clamp(min=1e-12), scale).clamp(min=1e-12)
            zero = wm - scale * cm
    return idx.reshape(n, k).to(torch.uint8), lut_q.to(torch.int8), scale, None if symmetric else zero
