"""Affine (scale / zero-point) weight quantization: per-channel int8 and group-wise int4, plus nibble packing.

Pure tensor functions, no modules, no kernels. The int4 convention is the one torch's ``_weight_int4pack_mm``
kernels use, so a quantized weight feeds them without conversion:

    w ~= (q - 8) * scale + zero,   q in [0, 15],   one (scale, zero) per ``group`` consecutive input weights.

Symmetric int4 is the special case ``zero == 0``. This module knows nothing about which kernel runs the result.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "dequantize_int4",
    "dequantize_int8",
    "pack_nibbles",
    "quantize_int4",
    "quantize_int8",
    "unpack_nibbles",
]

_EPS = 1e-12


def quantize_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-output-channel int8.

    Args:
        w: (N, K) float weight.
    Returns:
        q: (N, K) int8 in [-127, 127]; scale: (N,) float32 with ``w ~= q * scale[:, None]``.
    """
    w = w.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=_EPS) / 127.0  # (N,)
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return q, scale


def dequantize_int8(q: Tensor, scale: Tensor) -> Tensor:
    """(N, K) int8, (N,) -> (N, K) float32."""
    return q.float() * scale.float()[:, None]


def quantize_int4(
    w: Tensor, group: int, symmetric: bool = True, search: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Group-wise int4 along the input dimension.

    Symmetric: the largest magnitude of each group maps to the end of [-8, 7] that has its sign (as llama.cpp's
    Q4_0 does), so no code is wasted on the side the group does not use. Asymmetric: min -> 0 and max -> 15.
    With ``search > 0`` each group then tries ``search`` narrower ranges (down to half) and keeps the one with the
    smallest squared error: clipping a few outliers buys a finer step for all the other weights.

    Args:
        w: (N, K) float weight, K divisible by ``group``.
        group: weights per (scale, zero) pair.
        symmetric: zero point fixed at 0.
        search: number of clipping ratios tried per group (0: full range, no search).
    Returns:
        q: (N, K) uint8 in [0, 15]; scale, zero: (N, K // group) float32.
    """
    n, k = w.shape
    if k % group:
        raise ValueError(f"in_features {k} is not a multiple of the int4 group size {group}")
    wg = w.detach().float().reshape(n, k // group, group)  # (N, G, g)
    if symmetric:
        pos = wg.amax(dim=-1).clamp(min=0)  # (N, G)
        neg = (-wg).amax(dim=-1).clamp(min=0)
        scale = torch.maximum(pos / 7.0, neg / 8.0).clamp(min=_EPS)
        lo = torch.zeros_like(scale)  # unused
    else:
        lo = wg.amin(dim=-1)
        scale = ((wg.amax(dim=-1) - lo) / 15.0).clamp(min=_EPS)
    if search > 0:
        scale, lo = _search_range(wg, scale, lo, symmetric, search)
    if symmetric:
        zero = torch.zeros_like(scale)
        q = torch.round(wg / scale[..., None]).clamp(-8, 7) + 8
    else:
        zero = lo + 8.0 * scale  # so that (q - 8) * scale + zero == lo + q * scale
        q = torch.round((wg - lo[..., None]) / scale[..., None]).clamp(0, 15)
    return q.reshape(n, k).to(torch.uint8), scale, zero


def _search_range(wg: Tensor, scale: Tensor, lo: Tensor, symmetric: bool, steps: int) -> tuple[Tensor, Tensor]:
    """(N, G, g) groups with their full-range (scale, lo) -> the (scale, lo) of least squared error among ``steps``
    ranges shrunk by ratios in [0.5, 1] (around 0 when symmetric, around the range's centre otherwise)."""
    best_s, best_lo = scale, lo
    best_err = torch.full_like(scale, float("inf"))
    centre = lo + 7.5 * scale  # asymmetric: the middle of [min, max]
    for ratio in torch.linspace(1.0, 0.5, steps).tolist():
        s = scale * ratio
        if symmetric:
            deq = torch.round(wg / s[..., None]).clamp(-8, 7) * s[..., None]
            low = lo
        else:
            low = centre - 7.5 * s
            deq = torch.round((wg - low[..., None]) / s[..., None]).clamp(0, 15) * s[..., None] + low[..., None]
        err = (deq - wg).pow(2).sum(dim=-1)  # (N, G)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_s = torch.where(better, s, best_s)
        best_lo = torch.where(better, low, best_lo)
    return best_s, best_lo


def dequantize_int4(q: Tensor, scale: Tensor, zero: Tensor | None, group: int) -> Tensor:
    """(N, K) uint8 codes, (N, G) scale and zero (None: symmetric) -> (N, K) float32."""
    n, k = q.shape
    qg = q.reshape(n, k // group, group).float() - 8.0  # (N, G, g)
    w = qg * scale.float()[..., None]
    if zero is not None:
        w = w + zero.float()[..., None]
    return w.reshape(n, k)


def pack_nibbles(q: Tensor) -> Tensor:
    """(N, K) uint8 values in [0, 15], K even -> (N, K // 2) uint8; element 2j in the low nibble."""
    if q.shape[-1] % 2:
        raise ValueError("nibble packing needs an even number of columns")
    lo = q[..., 0::2]
    hi = q[..., 1::2]
    return (lo | (hi << 4)).to(torch.uint8)


def unpack_nibbles(p: Tensor) -> Tensor:
    """(..., K // 2) uint8 -> (..., K) uint8; the inverse of ``pack_nibbles``."""
    p32 = p.to(torch.int32)  # int32 arithmetic: exporters type uint8 shifts inconsistently
    lo = torch.remainder(p32, 16)
    hi = torch.div(p32, 16, rounding_mode="floor")
    return torch.stack([lo, hi], dim=-1).reshape(*p.shape[:-1], p.shape[-1] * 2).to(torch.uint8)
