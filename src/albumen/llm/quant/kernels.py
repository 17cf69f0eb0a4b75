"""The CPU matmul kernels behind quantized linears, each with a probe and a plain-torch fallback.

Measured on the project machines (``benchmarks/quantization.py`` and ``docs/quantization.md``), batch-1 decode,
one thread, an 8960x1536 weight cycled with 7 others so that it comes from DRAM (fp32 ``F.linear`` = 1.0x):

- int4, 1..8 rows: ``"vnni"``, the project's own GEMV (``albumen.llm.kernels.quant_gemv``, blocked layout: one
  memory stream per 4 rows), activations quantized to int8 per group inside the kernel as llama.cpp does; measured
  faster than int4pack on Qwen2.5-1.5B's shapes (docs/quantization.md). Longer inputs (prompts): int4pack, whose
  layout is made on first use (``Int4Dual``).
- int4, otherwise: ``aten._weight_int4pack_mm_for_cpu`` with bf16 activations, 6.6x. Needs out_features % 16 == 0.
- int8, default for 1..8 rows: ``"vnni"``, the project's own GEMV (``albumen.llm.kernels.quant_gemv``: VPDPBUSD on
  activations quantized to int8 per block of 32, llama.cpp-style), 1.4x int8pack on Qwen's 151936x1536 head;
  longer inputs fall through to int8pack in the same layout object.
- int8, otherwise: ``aten._weight_int8pack_mm`` with bf16 activations (weight-only, exact up to bf16), 3.0x.
  (With two threads on a busy 2-core box every kernel, this one included, drops to ~8 ms: OpenMP barriers wait on
  descheduled threads. That, not the kernel, is the "int8pack is slow at M=1" figure.)
- int8, opt-in ``"fbgemm"``: fbgemm's dynamic-quantized linear (``quantized::linear_dynamic``, activations quantized
  per token on the fly), 7.0x, but the activation rounding costs ~20x the KL of weight-only int8 on SmolLM2
  (LLM activations have outlier channels), so it is never chosen automatically.
- ``torch._int_mm`` with hand-quantized activations (2.8x) and int8 -> bf16 dequant per call (0.1x): measured, dropped.
- everything else: dequantize to the activation dtype and ``F.linear`` (also the path autograd and ONNX see).

This module knows kernels and their layouts; it knows nothing about schemes, modules or checkpoints.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Int4Dual",
    "Int4Packed",
    "Int8Packed",
    "fbgemm_int8_available",
    "int4_dual_linear",
    "int4_linear",
    "int4pack_available",
    "int8_linear",
    "pack_int4",
    "pack_int8",
]


@functools.cache
def int4pack_available() -> bool:
    """True when torch has the CPU int4 packed kernel and it runs here."""
    try:
        q = torch.zeros(16, 32, dtype=torch.int32)
        p = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 8)
        sz = torch.ones(1, 16, 2, dtype=torch.bfloat16)
        torch.ops.aten._weight_int4pack_mm_for_cpu(torch.ones(1, 32, dtype=torch.bfloat16), p, 32, sz)
        return True
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


@functools.cache
def fbgemm_int8_available() -> bool:
    """True when the quantized CPU engine (fbgemm / x86) can prepack and run a dynamic int8 linear."""
    try:
        _prepack_fbgemm(torch.ones(4, 8, dtype=torch.int8), torch.ones(4))
        return True
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class Int4Packed:
    """A weight in the int4pack kernel's layout: packed codes + (K // group, N, 2) bf16 scales and zeros."""

    def __init__(self, packed: Tensor, scales_and_zeros: Tensor, group: int, out_features: int) -> None:
        self.packed = packed
        self.scales_and_zeros = scales_and_zeros
        self.group = group
        self.out_features = out_features

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scales_and_zeros))


def pack_int4(q: Tensor, scale: Tensor, zero: Tensor, group: int) -> Int4Packed | None:
    """(N, K) uint8 codes in [0, 15], (N, G) scale/zero -> the kernel layout, or None if the kernel can't take it."""
    n, _ = q.shape
    if not int4pack_available() or n % 16:
        return None
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 8)
    sz = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)  # (G, N, 2)
    return Int4Packed(packed, sz, group, n)


def int4_linear(x: Tensor, w: Int4Packed, keep_bf16: bool = False) -> Tensor:
    """(..., K) activations (any float dtype) -> (..., N) in x's dtype, through the int4 kernel in bf16.

    ``keep_bf16``: return the kernel's bf16 result uncast (a caller adding an fp32 bias gets fp32 from the
    addition's type promotion: one op fewer per call).
    """
    x2 = x.reshape(-1, x.shape[-1])  # (M, K)
    if x2.dtype is not torch.bfloat16:
        x2 = x2.to(torch.bfloat16)
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, w.packed, w.group, w.scales_and_zeros)  # (M, N)
    y = y.view(*x.shape[:-1], w.out_features)
    return y if keep_bf16 or x.dtype is torch.bfloat16 else y.to(x.dtype)


class Int4Dual:
    """An int4 weight for two kernels: the VNNI GEMV layout (``own``) for 1..8 rows, and int4pack for longer inputs,
    made by ``make_pack`` on the first such input (decode-only use never builds it)."""

    def __init__(self, own: Any, make_pack: Callable[[], Int4Packed | None]) -> None:
        self.own = own  # quant_gemv.Q4Layout
        self._make_pack = make_pack
        self._pack: Int4Packed | None = None
        self._pack_made = False

    @property
    def out_features(self) -> int:
        return self.own.out_features

    def pack(self) -> Int4Packed | None:
        if not self._pack_made:
            self._pack, self._pack_made = self._make_pack(), True
        return self._pack

    @property
    def nbytes(self) -> int:
        return self.own.nbytes + (self._pack.nbytes if self._pack is not None else 0)


def int4_dual_linear(x: Tensor, w: Int4Dual, dequant: Callable[[], Tensor]) -> Tensor:
    """(..., K) -> (..., N) in x's dtype: the VNNI GEMV for 1..8 rows, int4pack (else ``dequant()`` + F.linear)
    for more."""
    from albumen.llm.kernels import quant_gemv

    rows = x.numel() // x.shape[-1]
    if rows <= quant_gemv.MAX_ROWS:
        return quant_gemv.q4_linear(x, w.own)
    pack = w.pack()
    if pack is not None:
        return int4_linear(x, pack)
    return dequant_linear(x, dequant(), None)


VNNI_RAGGED_MIN_NUMEL = 8 * 1024 * 1024  # int8 weights at least this large take our kernel even on ragged rows


class Int8Packed:
    """An int8 per-channel weight in the layout of one int8 kernel: ``"vnni"``, ``"fbgemm"`` or ``"int8pack"``."""

    def __init__(self, kernel: str, payload: Any, out_features: int, nbytes: int = 0) -> None:
        self.kernel = kernel
        self.payload = payload
        self.out_features = out_features
        self.nbytes = nbytes  # fbgemm's packed weight is opaque: its int8 size plus the scales


def _prepack_fbgemm(q: Tensor, scale: Tensor) -> Any:
    n = q.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch flags quantized tensors as deprecated; the kernel is what we want
        qw = torch._make_per_channel_quantized_tensor(q.contiguous(), scale.double(), torch.zeros(n, dtype=torch.long), 0)
        return torch.ops.quantized.linear_prepack(qw, None)


def pack_int8(q: Tensor, scale: Tensor, kernel: str = "fbgemm") -> Int8Packed | None:
    """(N, K) int8 and (N,) scales -> a packed weight for ``kernel``, or None when that kernel is missing."""
    if kernel == "fbgemm":
        if not fbgemm_int8_available():
            return None
        return Int8Packed("fbgemm", _prepack_fbgemm(q, scale), q.shape[0], q.numel() + 8 * q.shape[0])
    if kernel == "vnni":
        from albumen.llm.kernels import quant_gemv

        groups = q.shape[1] // 32
        ragged = -(-groups // 16) * 16 > 1.25 * groups
        if not quant_gemv.quant_gemv_available() or q.shape[1] % 32 or (ragged and q.numel() < VNNI_RAGGED_MIN_NUMEL):
            # a ragged last chunk reads no extra bytes but computes masked lanes: on 576-wide rows (18 groups of
            # 16-lane chunks: 32 computed) small layers ran faster on int8pack; a large table such as SmolLM2's
            # 49152x576 head is bandwidth-bound and ran 1.5x faster on ours (docs/quantization.md)
            return None
        rest = pack_int8(q, scale, "int8pack")  # for inputs of more than 8 rows
        return Int8Packed("vnni", (quant_gemv.pack_q8(q, scale), rest), q.shape[0],
                          2 * q.numel() + 8 * q.shape[0])
    if kernel == "int8pack":
        if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
            return None
        q = q.contiguous()
        if q.data_ptr() % 64:  # tensors mapped from a safetensors file can sit at any offset: the kernel crashes
            q = q.clone()
        return Int8Packed("int8pack", (q, scale.float()), q.shape[0], q.numel() + 4 * q.shape[0])
    raise ValueError(f"unknown int8 kernel {kernel!r}; expected 'vnni', 'fbgemm' or 'int8pack'")


def int8_linear(x: Tensor, w: Int8Packed) -> Tensor:
    """(..., K) activations -> (..., N) in x's dtype."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])  # (M, K)
    if w.kernel == "vnni":
        from albumen.llm.kernels import quant_gemv

        layout, rest = w.payload
        if x2.shape[0] <= quant_gemv.MAX_ROWS or rest is None:
            return quant_gemv.q8_linear(x2, layout).reshape(*lead, w.out_features).to(x.dtype)
        w = rest
    if w.kernel == "fbgemm":
        # reduce_range=True keeps the u8*s8 products from saturating the 16-bit accumulation of the AVX2 path.
        y = torch.ops.quantized.linear_dynamic(x2.float(), w.payload, True)
    else:
        q, scale = w.payload
        xb = x2.to(torch.bfloat16)
        y = torch.ops.aten._weight_int8pack_mm(xb, q, scale.to(torch.bfloat16))
    return y.reshape(*lead, w.out_features).to(x.dtype)


def dequant_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The reference path: (..., K) x, (N, K) float weight -> (..., N), computed in x's dtype."""
    return F.linear(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))
