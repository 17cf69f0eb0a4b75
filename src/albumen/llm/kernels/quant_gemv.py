"""Quantized decode kernels (``csrc/quant_gemv.cpp``): 4-bit codes with group scales, and int8 per channel.

``pack_q4`` / ``pack_q8`` turn stored codes into the kernel's "lane per group" layout once (a chunk = 16 groups of
one row; each 64-byte step holds 4 bytes of each group side by side); ``q4_linear`` / ``q8_linear`` run 1..8
activation rows. The activations are quantized to int8 per block of ``group`` inputs inside the kernel (as llama.cpp
does for its Q4/Q8 dot products), so results match the float product of the dequantized weight to ~1e-2 relative,
not exactly: callers that need exact numbers (autograd, export, reference checks) keep their dequant path.

This module knows layouts and the compiled module; it knows nothing about schemes or ``nn.Module``s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from albumen.llm.kernels.build import kernels_enabled, load_extension

__all__ = [
    "MAX_ROWS",
    "Q4Layout",
    "Q8Layout",
    "pack_q4",
    "pack_q8",
    "q4_linear",
    "q8_linear",
    "quant_gemv_available",
    "quant_gemv_module",
]

MAX_ROWS = 8
_LANES = 16
_SOURCE = Path(__file__).with_name("csrc") / "quant_gemv.cpp"


def quant_gemv_module() -> ModuleType | None:
    """The compiled module, or None (kernels off, build failed with one warning, or no AVX-512 VNNI)."""
    mod = load_extension("albumen_quant_gemv", [_SOURCE])
    return mod if mod is not None and mod.available() else None


def quant_gemv_available() -> bool:
    return kernels_enabled() and quant_gemv_module() is not None


def _lane_layout(v: Tensor) -> Tensor:
    """(N, G, B) bytes per group (B % 4 == 0) -> (N, G * B) in the kernel's order.

    Chunks of 16 groups; in a chunk, B // 4 steps of 16 groups x 4 bytes; a last chunk of r < 16 groups keeps only
    its r groups per step (r * 4 bytes), so the layout is exactly as large as the codes.
    """
    n, groups, b = v.shape
    chunks = -(-groups // _LANES)
    full, rest = divmod(groups, _LANES)
    vp = F.pad(v, (0, 0, 0, chunks * _LANES - groups))  # (N, C*16, B)
    vp = vp.view(n, chunks, _LANES, b // 4, 4).permute(0, 1, 3, 2, 4)  # (N, C, S, 16, 4)
    parts = [vp[:, :full].reshape(n, -1)]
    if rest:
        parts.append(vp[:, full, :, :rest, :].reshape(n, -1))
    return torch.cat(parts, dim=1).contiguous()


@dataclass
class Q4Layout:
    """4-bit codes in the kernel layout + (N, G) bf16 scales (and zeros); ``lut``: 16 uint8 (palette + 128)."""

    codes: Tensor  # (N, K // 2) uint8
    scale: Tensor  # (N, G) bf16
    zero: Tensor | None
    lut: Tensor | None
    group: int

    @property
    def nbytes(self) -> int:
        ts = [self.codes, self.scale] + [t for t in (self.zero, self.lut) if t is not None]
        return sum(t.numel() * t.element_size() for t in ts)


def pack_q4(codes: Tensor, scale: Tensor, zero: Tensor | None, group: int, lut: Tensor | None = None) -> Q4Layout:
    """(N, K) uint8 codes in [0, 15] with (N, K // group) scales / zeros -> the kernel layout.

    Weight = (code - 8) * scale + zero for int4; lut[code] * scale + zero for a palette (``lut``: 16 int8 values).
    """
    n, k = codes.shape
    if group % 8 or k % group:
        raise ValueError(f"group {group} must be a multiple of 8 dividing in_features {k}")
    q = codes.to(torch.uint8).view(n, k // group, group)  # (N, G, g)
    half = group // 2
    packed = q[..., :half] | (q[..., half:] << 4)  # code i in the low nibble, i + g/2 in the high one
    table = None
    if lut is not None:
        if lut.numel() != 16 or lut.dtype != torch.int8:
            raise ValueError("the palette must be 16 int8 entries")
        table = (lut.to(torch.int16) + 128).to(torch.uint8).contiguous()
    return Q4Layout(_lane_layout(packed), scale.to(torch.bfloat16).contiguous(),
                    None if zero is None else zero.to(torch.bfloat16).contiguous(), table, group)


@dataclass
class Q8Layout:
    """int8 weight + 128 in the kernel layout (groups of 32) and (N,) fp32 scales."""

    codes: Tensor  # (N, K) uint8
    scale: Tensor  # (N,) fp32

    @property
    def nbytes(self) -> int:
        return self.codes.numel() + 4 * self.scale.numel()


def pack_q8(q: Tensor, scale: Tensor) -> Q8Layout:
    """(N, K) int8 weight and (N,) scales (weight = q * scale) -> the kernel layout; K % 32 == 0."""
    n, k = q.shape
    if k % 32:
        raise ValueError(f"the int8 kernel needs in_features % 32 == 0, got {k}")
    u = (q.to(torch.int16) + 128).to(torch.uint8).view(n, k // 32, 32)
    return Q8Layout(_lane_layout(u), scale.float().contiguous())


def _rows(x: Tensor) -> Tensor:
    x2 = x.reshape(-1, x.shape[-1])  # (M, K)
    if not 1 <= x2.shape[0] <= MAX_ROWS:
        raise ValueError(f"the kernel takes 1..{MAX_ROWS} rows, got {x2.shape[0]}")
    return x2


def q4_linear(x: Tensor, w: Q4Layout, bias: Tensor | None = None) -> Tensor:
    """(..., K) activations (1..8 rows) -> (..., N) in x's dtype. Requires ``quant_gemv_available()``."""
    mod = quant_gemv_module()
    if mod is None:
        raise RuntimeError("the quantized GEMV kernel is not available (ALBUMEN_KERNELS=0, build failed or no VNNI)")
    y = mod.q4_linear(_rows(x), w.codes, w.scale, w.zero, w.lut, w.group, bias)  # (M, N) fp32
    return y.view(*x.shape[:-1], w.codes.shape[0]).to(x.dtype)


def q8_linear(x: Tensor, w: Q8Layout, bias: Tensor | None = None) -> Tensor:
    """(..., K) activations (1..8 rows) -> (..., N) in x's dtype. Requires ``quant_gemv_available()``."""
    mod = quant_gemv_module()
    if mod is None:
        raise RuntimeError("the quantized GEMV kernel is not available (ALBUMEN_KERNELS=0, build failed or no VNNI)")
    y = mod.q8_linear(_rows(x), w.codes, w.scale, bias)  # (M, N) fp32
    return y.view(*x.shape[:-1], w.codes.shape[0]).to(x.dtype)
