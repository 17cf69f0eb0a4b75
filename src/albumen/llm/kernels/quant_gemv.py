"""Quantized decode kernels (``csrc/quant_gemv.cpp``): 4-bit codes with group scales, and int8 per channel.

``pack_q4`` / ``pack_q8`` turn stored codes into the kernel's blocked layout once: output rows in blocks of 4, each
block one contiguous run of bytes (chunks of 16 groups: codes with 4 bytes of each group side by side per 64-byte
step, then the chunk's scales and zeros), read front to back as one memory stream. ``q4_linear`` / ``q8_linear`` run
1..8 activation rows. ``Q4Layout.rows(lo, hi)`` is the layout of a row slice without a copy (``lo``, ``hi``
multiples of 4): a weight of concatenated matrices serves each part. The activations are quantized to int8 per block of ``group`` inputs inside the kernel (as llama.cpp
does for its Q4/Q8 dot products), so results match the float product of the dequantized weight to ~1e-2 relative,
not exactly: callers that need exact numbers (autograd, export, reference checks) keep their dequant path.

The kernel core (activation quantization, the blocked 4-bit / int8 products) is ``csrc/quant_kernels.h``, shared
with the whole-model int4 decode plan (``quant_plan.py``).

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
    "BLOCK_ROWS",
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
    # -ffp-contract=off as for the decode ops and the int4 decode plan (quant_plan.py), which compiles the same
    # kernel core (quant_kernels.h): every build rounds each product the same way
    mod = load_extension("albumen_quant_gemv", [_SOURCE], extra_cflags=("-ffp-contract=off",),
                         depends=[_SOURCE.with_name("quant_kernels.h")])
    return mod if mod is not None and mod.available() else None


def quant_gemv_available() -> bool:
    return kernels_enabled() and quant_gemv_module() is not None


BLOCK_ROWS = 4  # output rows per block (kBlockRows in the C++ source)


def _blocked(per_group: Tensor, metas: list[Tensor]) -> Tensor:
    """(N, G, B) bytes per group (B % 4 == 0) and (N, G) bf16 per-group tensors (scales, zeros) -> the blocked
    layout (ceil(N / 4), block_bytes) uint8. Padded rows are zero.

    Block b, chunk c (16 groups; the last may have r < 16): its codes as (B // 4 steps, 4 rows, groups, 4 bytes),
    then each meta tensor as (4 rows, groups) bf16.
    """
    n, groups, b = per_group.shape
    nb = -(-n // BLOCK_ROWS)
    chunks = -(-groups // _LANES)
    full, rest = divmod(groups, _LANES)
    pad_rows, pad_groups = nb * BLOCK_ROWS - n, chunks * _LANES - groups
    v = F.pad(per_group, (0, 0, 0, pad_groups, 0, pad_rows))  # (Np, C*16, B)
    v = v.view(nb, BLOCK_ROWS, chunks, _LANES, b // 4, 4).permute(0, 2, 4, 1, 3, 5)  # (Nb, C, S, R, 16, 4)
    step_bytes = (b // 4) * BLOCK_ROWS * _LANES * 4  # codes of one full chunk
    full_parts = [v[:, :full].reshape(nb, full, step_bytes)]
    rest_parts = [v[:, full, :, :, :rest].reshape(nb, -1)] if rest else []
    for t in metas:
        t = F.pad(t.to(torch.bfloat16).view(torch.int16), (0, pad_groups, 0, pad_rows))  # (Np, C*16)
        t = t.view(nb, BLOCK_ROWS, chunks, _LANES).permute(0, 2, 1, 3)  # (Nb, C, R, 16)
        full_parts.append(t[:, :full].contiguous().view(torch.uint8).reshape(nb, full, BLOCK_ROWS * _LANES * 2))
        if rest:
            rest_parts.append(t[:, full, :, :rest].contiguous().view(torch.uint8).reshape(nb, -1))
    return torch.cat([torch.cat(full_parts, -1).reshape(nb, -1), *rest_parts], dim=1).contiguous()


@dataclass
class Q4Layout:
    """4-bit codes with their bf16 scales (and zeros) in the blocked layout; ``lut``: 16 uint8 (palette + 128)."""

    blocks: Tensor  # (ceil(N / 4), block_bytes) uint8
    out_features: int
    in_features: int
    group: int
    has_zero: bool
    lut: Tensor | None

    @property
    def nbytes(self) -> int:
        return self.blocks.numel() + (0 if self.lut is None else self.lut.numel())

    def rows(self, lo: int, hi: int) -> Q4Layout:
        """The layout of output rows [lo, hi) (a view; ``lo`` a multiple of 4, ``hi`` too unless it is the end)."""
        if lo % BLOCK_ROWS or (hi % BLOCK_ROWS and hi != self.out_features) or not 0 <= lo < hi <= self.out_features:
            raise ValueError(f"rows [{lo}, {hi}) do not start and end on {BLOCK_ROWS}-row blocks")
        return Q4Layout(self.blocks[lo // BLOCK_ROWS: -(-hi // BLOCK_ROWS)], hi - lo, self.in_features, self.group,
                        self.has_zero, self.lut)


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
    metas = [scale] if zero is None else [scale, zero]
    return Q4Layout(_blocked(packed, metas), n, k, group, zero is not None, table)


@dataclass
class Q8Layout:
    """int8 weight + 128 in the blocked layout (groups of 32, no per-group metadata) and per-row fp32 scales."""

    blocks: Tensor  # (ceil(N / 4), 4 * K) uint8
    scale: Tensor  # (4 * ceil(N / 4),) fp32, padded
    out_features: int

    @property
    def nbytes(self) -> int:
        return self.blocks.numel() + 4 * self.scale.numel()


def pack_q8(q: Tensor, scale: Tensor) -> Q8Layout:
    """(N, K) int8 weight and (N,) scales (weight = q * scale) -> the kernel layout; K % 32 == 0."""
    n, k = q.shape
    if k % 32:
        raise ValueError(f"the int8 kernel needs in_features % 32 == 0, got {k}")
    u = (q.to(torch.int16) + 128).to(torch.uint8).view(n, k // 32, 32)
    padded = F.pad(scale.float(), (0, -(-n // BLOCK_ROWS) * BLOCK_ROWS - n)).contiguous()
    return Q8Layout(_blocked(u, []), padded, n)


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
    y = mod.q4_linear(_rows(x), w.blocks, w.out_features, w.in_features, w.group, w.has_zero, w.lut, bias)  # (M, N)
    return y.view(*x.shape[:-1], w.out_features).to(x.dtype)


def q8_linear(x: Tensor, w: Q8Layout, bias: Tensor | None = None) -> Tensor:
    """(..., K) activations (1..8 rows) -> (..., N) in x's dtype. Requires ``quant_gemv_available()``."""
    mod = quant_gemv_module()
    if mod is None:
        raise RuntimeError("the quantized GEMV kernel is not available (ALBUMEN_KERNELS=0, build failed or no VNNI)")
    y = mod.q8_linear(_rows(x), w.blocks, w.scale, w.out_features, bias)  # (M, N) fp32
    return y.view(*x.shape[:-1], w.out_features).to(x.dtype)
