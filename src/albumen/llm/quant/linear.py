"""Quantized drop-in replacements for ``nn.Linear``: ``Int8Linear``, ``Int4Linear``, ``PalettizedLinear``.

Each keeps ``in_features`` / ``out_features``, is built with ``from_float(linear, scheme)``, gives back its float
weight with ``dequantize()``, and takes (..., in_features) activations in any float dtype. The compressed weight
is stored in persistent buffers (what a checkpoint saves); the kernel layout is derived from them on first use and
cached (never saved). Three forward paths:

- kernel: the fastest measured kernel (see ``kernels.py``), for inputs of up to ``kernel_max_rows`` rows: decode
  and prompt prefill alike. Measured on a 1536x576 layer, 1 thread: at 16 / 70 / 256 rows int4pack takes 0.5 / 2.4 /
  5.8 ms where rebuilding the float weight and ``F.linear`` takes 7.9 / 8.1 / 17.6 ms (fp32 ``nn.Linear``: 0.8 /
  2.7 / 9.2 ms), and a 4-bit palette's bit unpacking alone costs ~100 ms;
- dequant: float weight + ``F.linear`` in the activation dtype (weight-only exact), when autograd needs a gradient
  through the layer (QLoRA: the base is frozen but earlier adapters need d/dx), for very long inputs, when the
  kernel is missing, or when ``reference`` is set (ONNX export, exact checks).

This module knows one matrix at a time; it knows nothing about model structure or checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from albumen.llm.kernels import quant_gemv
from albumen.llm.quant import kernels
from albumen.llm.quant.affine import dequantize_int4, pack_nibbles, quantize_int4, quantize_int8, unpack_nibbles
from albumen.llm.quant.config import LayerScheme
from albumen.llm.quant.palettize import pack_bits, palettize, palettize_blocks, unpack_bits

__all__ = [
    "BlockPalettizedLinear",
    "Int4Linear",
    "Int8Linear",
    "PalettizedLinear",
    "QuantizedLinear",
    "quantized_linear_class",
]


class QuantizedLinear(nn.Module):
    """Base class: shapes, bias, the choice between kernel and dequant paths, runtime cache."""

    scheme: LayerScheme

    def __init__(self, in_features: int, out_features: int, scheme: LayerScheme, bias: bool) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.scheme = scheme
        self.reference = False  # True: always the dequant path (export, debugging)
        self.kernel = "auto"
        self.kernel_max_rows = 2048
        self._runtime: Any = None
        self._runtime_key: tuple[Any, ...] | None = None
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    # -- what subclasses provide -------------------------------------------------------------------------------------
    def dequantize(self) -> Tensor:
        """(out_features, in_features) float32 weight this module stands for."""
        raise NotImplementedError

    def rows(self, ids: Tensor) -> Tensor:
        """(...,) row indices -> (..., in_features) float32 dequantized rows (embedding lookup on a shared table)."""
        raise NotImplementedError

    def _build_runtime(self) -> tuple[str, Any] | None:
        """(path name, packed weight) for the fastest kernel, or None when only the dequant path works."""
        return None

    def _run_kernel(self, x: Tensor, runtime: tuple[str, Any]) -> Tensor:
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------------------------------
    def bits_per_weight(self) -> float:
        """Stored bits per weight, scales and tables included, bias excluded."""
        total = sum(b.numel() * b.element_size() for n, b in self.named_buffers() if n != "bias" and b is not None)
        return 8.0 * total / (self.in_features * self.out_features)

    def runtime(self) -> tuple[str, Any] | None:
        key = (self.kernel,)
        if self._runtime_key != key:
            self._runtime = self._build_runtime()
            self._runtime_key = key
        return self._runtime

    def runtime_bytes(self) -> int:
        """Bytes of the kernel layout built so far (0 before the first kernel-path forward); an int4 layout
        replaces nothing, so memory = stored buffers + this."""
        if self._runtime is None:
            return 0
        payload = self._runtime[1]
        if isinstance(payload, Tensor):
            return payload.numel() * payload.element_size()
        return int(getattr(payload, "nbytes", 0))

    def kernel_name(self) -> str:
        rt = self.runtime()
        return "dequant" if rt is None else rt[0]

    def forward(self, x: Tensor) -> Tensor:  # (..., in_features) -> (..., out_features)
        # Decode calls this ~200 times per token: keep the kernel path to a few attribute reads (measured: the
        # wrapper cost as much as a 256x1536 int4 product before).
        needs_grad = x.requires_grad and torch.is_grad_enabled()
        if self.reference or needs_grad or x.numel() > self.kernel_max_rows * self.in_features:
            rt = None
        elif self._runtime_key is not None and self._runtime_key[0] == self.kernel:
            rt = self._runtime
        else:
            rt = self.runtime()
        bias = self.bias
        if rt is None:
            return kernels.dequant_linear(x, self.dequantize(), bias)
        y = self._run_kernel(x, rt)
        if bias is None:
            return y
        if x.dtype is torch.float32:  # fp32 bias + bf16 / fp32 y -> fp32 by type promotion, one op
            return torch.add(bias, y)
        return y + bias.to(y.dtype)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._runtime_key = None  # new weights: repack on next use

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scheme={self.scheme.name}"

    @classmethod
    def empty(cls, in_features: int, out_features: int, scheme: LayerScheme, bias: bool) -> QuantizedLinear:
        """A module with zeroed buffers of the right shapes, to load a checkpoint into."""
        return cls(in_features, out_features, scheme, bias)

    @classmethod
    def from_float(cls, linear: nn.Linear, scheme: LayerScheme) -> QuantizedLinear:
        """Quantize ``linear.weight`` (out, in) with ``scheme``; the bias stays float32."""
        w = linear.weight.detach()
        mod = cls(linear.in_features, linear.out_features, scheme, linear.bias is not None)
        mod._quantize_from(w.float())
        if linear.bias is not None:
            mod.bias = linear.bias.detach().float().clone()
        return mod

    def _quantize_from(self, w: Tensor) -> None:
        raise NotImplementedError


class Int8Linear(QuantizedLinear):
    """Symmetric per-channel int8 weight; ``kernel`` = "auto" | "vnni" | "fbgemm" | "int8pack" | "dequant"."""

    def __init__(self, in_features: int, out_features: int, scheme: LayerScheme, bias: bool) -> None:
        super().__init__(in_features, out_features, scheme, bias)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))

    def _quantize_from(self, w: Tensor) -> None:
        self.qweight, self.scale = quantize_int8(w)

    def dequantize(self) -> Tensor:
        return self.qweight.float() * self.scale[:, None]

    def rows(self, ids: Tensor) -> Tensor:
        return self.qweight[ids].float() * self.scale[ids][..., None]

    def _build_runtime(self) -> tuple[str, Any] | None:
        order = {"auto": ("vnni", "int8pack", "fbgemm"), "vnni": ("vnni",), "fbgemm": ("fbgemm",),
                 "int8pack": ("int8pack",)}.get(self.kernel, ())
        for name in order:
            packed = kernels.pack_int8(self.qweight, self.scale, name)
            if packed is not None:
                return name, packed
        return None

    def _run_kernel(self, x: Tensor, runtime: tuple[str, Any]) -> Tensor:
        return kernels.int8_linear(x, runtime[1])


class Int4Linear(QuantizedLinear):
    """Group-wise int4 weight (nibble-packed), bf16 scales (and zeros when asymmetric).

    ``kernel``: "auto" (our VNNI GEMV for 1..8 rows, int4pack for prompts), "vnni", "int4pack" or "dequant".

    The frozen base of QLoRA: its forward takes (..., in_features) activations and lets gradients reach them.
    """

    def __init__(self, in_features: int, out_features: int, scheme: LayerScheme, bias: bool) -> None:
        super().__init__(in_features, out_features, scheme, bias)
        if in_features % scheme.group_size:
            raise ValueError(f"in_features {in_features} is not a multiple of group size {scheme.group_size}")
        groups = in_features // scheme.group_size
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(out_features, groups, dtype=torch.bfloat16))
        zero = None if scheme.symmetric else torch.zeros(out_features, groups, dtype=torch.bfloat16)
        self.register_buffer("zero", zero)

    def _quantize_from(self, w: Tensor) -> None:
        q, scale, zero = quantize_int4(w, self.scheme.group_size, self.scheme.symmetric, self.scheme.range_search)
        self.qweight = pack_nibbles(q)
        self.scale = scale.to(torch.bfloat16)
        if not self.scheme.symmetric:
            self.zero = zero.to(torch.bfloat16)

    def _zero(self) -> Tensor:
        return torch.zeros_like(self.scale) if self.zero is None else self.zero

    def codes(self) -> Tensor:
        """(out, in) uint8 codes in [0, 15]."""
        return unpack_nibbles(self.qweight)

    def dequantize(self) -> Tensor:
        zero = None if self.zero is None else self.zero.float()
        return dequantize_int4(self.codes(), self.scale.float(), zero, self.scheme.group_size)

    def rows(self, ids: Tensor) -> Tensor:
        g = self.scheme.group_size
        q = unpack_nibbles(self.qweight[ids]).float() - 8.0  # (..., K)
        lead = q.shape[:-1]
        qg = q.reshape(*lead, self.in_features // g, g)  # (..., G, g)
        w = qg * self.scale[ids].float()[..., None]
        if self.zero is not None:
            w = w + self.zero[ids].float()[..., None]
        return w.reshape(*lead, self.in_features)

    def _int4pack(self) -> kernels.Int4Packed | None:
        return kernels.pack_int4(self.codes(), self.scale.float(), self._zero().float(), self.scheme.group_size)

    def _build_runtime(self) -> tuple[str, Any] | None:
        # "auto": our VNNI GEMV for 1..8 rows (+ int4pack for prompts, made on first use), else int4pack alone
        if self.kernel in ("auto", "vnni") and quant_gemv.quant_gemv_available():
            own = quant_gemv.pack_q4(self.codes(), self.scale, self.zero, self.scheme.group_size)
            return "int4-vnni", kernels.Int4Dual(own, self._int4pack)
        if self.kernel not in ("auto", "int4pack"):
            return None
        packed = self._int4pack()
        return None if packed is None else ("int4pack", packed)

    def _run_kernel(self, x: Tensor, runtime: tuple[str, Any]) -> Tensor:
        if runtime[0] == "int4-vnni":
            return kernels.int4_dual_linear(x, runtime[1], self.dequantize)
        return kernels.int4_linear(x, runtime[1], keep_bf16=self.bias is not None and x.dtype is torch.float32)


class PalettizedLinear(QuantizedLinear):
    """K-means palettized weight: b-bit packed indices + int8 LUTs with one scale per LUT (+ one per row).

    Runtime: the indices are looked up once into an int8 per-channel weight (exact: LUT entries lie on an int8
    grid) that runs on the int8 kernel; ``kernel="bf16"`` looks them up into bf16 instead.
    """

    def __init__(self, in_features: int, out_features: int, scheme: LayerScheme, bias: bool) -> None:
        super().__init__(in_features, out_features, scheme, bias)
        n_lut = 1 if scheme.granularity == "tensor" else out_features // scheme.channel_group
        if scheme.granularity == "channel_group" and out_features % scheme.channel_group:
            raise ValueError(f"out_features {out_features} is not a multiple of channel group {scheme.channel_group}")
        row_bytes = (in_features * scheme.bits + 7) // 8
        self.register_buffer("qindex", torch.zeros(out_features, row_bytes, dtype=torch.uint8))
        self.register_buffer("lut", torch.zeros(n_lut, 2**scheme.bits, dtype=torch.int8))
        self.register_buffer("lut_scale", torch.ones(n_lut))
        self.register_buffer("row_scale", torch.ones(out_features) if scheme.per_channel_scale else None)

    def _quantize_from(self, w: Tensor) -> None:
        cg = None if self.scheme.granularity == "tensor" else self.scheme.channel_group
        if self.row_scale is not None:
            self.row_scale = w.abs().amax(dim=1).clamp(min=1e-12)  # (N,)
            w = w / self.row_scale[:, None]
        idx, self.lut, self.lut_scale = palettize(w, self.scheme.bits, cg, self.scheme.kmeans_iters)
        self.qindex = pack_bits(idx, self.scheme.bits)

    def indices(self) -> Tensor:
        """(out, in) uint8 LUT indices."""
        return unpack_bits(self.qindex, self.scheme.bits, self.in_features)

    def _lut_of_row(self, rows: Tensor) -> Tensor:
        return rows // (self.out_features // self.lut.shape[0])

    def int8_weight(self) -> tuple[Tensor, Tensor]:
        """(out, in) int8 weight and (out,) scales that reproduce this palette exactly."""
        g = self._lut_of_row(torch.arange(self.out_features))  # (N,)
        q = self.lut[g[:, None], self.indices().long()]  # (N, K) int8
        scale = self.lut_scale[g]
        return q, scale if self.row_scale is None else scale * self.row_scale

    def dequantize(self) -> Tensor:
        q, scale = self.int8_weight()
        return q.float() * scale[:, None]

    def rows(self, ids: Tensor) -> Tensor:
        idx = unpack_bits(self.qindex[ids.reshape(-1)], self.scheme.bits, self.in_features)  # (M, K)
        g = self._lut_of_row(ids.reshape(-1))
        scale = self.lut_scale[g] if self.row_scale is None else self.lut_scale[g] * self.row_scale[ids.reshape(-1)]
        w = self.lut[g[:, None], idx.long()].float() * scale[:, None]
        return w.reshape(*ids.shape, self.in_features)

    def _build_runtime(self) -> tuple[str, Any] | None:
        if self.kernel == "bf16":
            return "lut-bf16", self.dequantize().to(torch.bfloat16)
        if self.kernel not in ("auto", "vnni", "fbgemm", "int8pack"):
            return None
        q, scale = self.int8_weight()
        for name in ("vnni", "int8pack", "fbgemm") if self.kernel == "auto" else (self.kernel,):
            packed = kernels.pack_int8(q, scale, name)
            if packed is not None:
                return f"lut-{name}", packed
        return None

    def _run_kernel(self, x: Tensor, runtime: tuple[str, Any]) -> Tensor:
        name, payload = runtime
        if name == "lut-bf16":
            return torch.nn.functional.linear(x.to(torch.bfloat16), payload).to(x.dtype)
        return kernels.int8_linear(x, payload)


class BlockPalettizedLinear(QuantizedLinear):
    """A palette with per-block scales (``pal4-b32``): b-bit indices into one int8 LUT per tensor, and a bf16 scale
    (and offset) per block of ``group_size`` inputs; weight = lut[idx] * scale + zero.

    Runtime: for up to 8 rows the quantized GEMV kernel looks the 4-bit codes up in its 16-entry table inside the
    product (``kernels.quant_gemv``, the same speed class as int4: 5 bits/weight read); longer inputs run it in
    8-row slices up to ``slice_rows_max`` rows, then the dequant path. ``kernel="bf16"`` expands once to a bf16
    weight instead.
    """

    slice_rows_max = 64

    def __init__(self, in_features: int, out_features: int, scheme: LayerScheme, bias: bool) -> None:
        super().__init__(in_features, out_features, scheme, bias)
        if in_features % scheme.group_size:
            raise ValueError(f"in_features {in_features} is not a multiple of palette block {scheme.group_size}")
        groups = in_features // scheme.group_size
        row_bytes = (in_features * scheme.bits + 7) // 8
        self.register_buffer("qindex", torch.zeros(out_features, row_bytes, dtype=torch.uint8))
        self.register_buffer("lut", torch.zeros(1, 2**scheme.bits, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features, groups, dtype=torch.bfloat16))
        zero = None if scheme.symmetric else torch.zeros(out_features, groups, dtype=torch.bfloat16)
        self.register_buffer("zero", zero)
        self.kernel_max_rows = quant_gemv.MAX_ROWS  # longer inputs: 8-row slices (``forward``), then dequant

    def _quantize_from(self, w: Tensor) -> None:
        s = self.scheme
        idx, self.lut, scale, zero = palettize_blocks(w, s.bits, s.group_size, s.symmetric, s.kmeans_iters)
        self.qindex = pack_bits(idx, s.bits)
        self.scale = scale.to(torch.bfloat16)
        if zero is not None:
            self.zero = zero.to(torch.bfloat16)

    def indices(self) -> Tensor:
        """(out, in) uint8 LUT indices."""
        return unpack_bits(self.qindex, self.scheme.bits, self.in_features)

    def _expand(self, idx: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        g = self.scheme.group_size
        w = self.lut[0].float()[idx.long()]  # (..., K)
        lead = w.shape[:-1]
        w = w.reshape(*lead, -1, g) * scale.float()[..., None]  # (..., G, g)
        if zero is not None:
            w = w + zero.float()[..., None]
        return w.reshape(*lead, self.in_features)

    def dequantize(self) -> Tensor:
        return self._expand(self.indices(), self.scale, self.zero)

    def rows(self, ids: Tensor) -> Tensor:
        flat = ids.reshape(-1)
        idx = unpack_bits(self.qindex[flat], self.scheme.bits, self.in_features)  # (M, K)
        w = self._expand(idx, self.scale[flat], None if self.zero is None else self.zero[flat])
        return w.reshape(*ids.shape, self.in_features)

    def _build_runtime(self) -> tuple[str, Any] | None:
        if self.kernel == "bf16":
            return "lut-bf16", self.dequantize().to(torch.bfloat16)
        if self.kernel not in ("auto", "vnni") or self.scheme.bits > 4 or not quant_gemv.quant_gemv_available():
            return None
        lut = torch.zeros(16, dtype=torch.int8)
        lut[: self.lut.shape[1]] = self.lut[0]
        return "lut-vnni", quant_gemv.pack_q4(self.indices(), self.scale, self.zero, self.scheme.group_size, lut)

    def forward(self, x: Tensor) -> Tensor:  # (..., in_features) -> (..., out_features)
        rows = x.numel() // max(self.in_features, 1)
        if (rows <= self.kernel_max_rows or rows > self.slice_rows_max or self.reference
                or (torch.is_grad_enabled() and x.requires_grad)):
            return super().forward(x)
        rt = self.runtime()
        if rt is None or rt[0] != "lut-vnni":
            return super().forward(x)
        x2 = x.reshape(rows, self.in_features)  # (M, K) in slices of 8 rows: each slice reads the weight once
        step = quant_gemv.MAX_ROWS
        y = torch.cat([self._run_kernel(x2[i:i + step], rt) for i in range(0, rows, step)])  # (M, N)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def _run_kernel(self, x: Tensor, runtime: tuple[str, Any]) -> Tensor:
        name, payload = runtime
        if name == "lut-bf16":
            return torch.nn.functional.linear(x.to(torch.bfloat16), payload).to(x.dtype)
        return quant_gemv.q4_linear(x, payload)


def quantized_linear_class(scheme: LayerScheme) -> type[QuantizedLinear]:
    """The module class for a scheme kind."""
    if scheme.kind == "palette" and scheme.granularity == "block":
        return BlockPalettizedLinear
    classes: dict[str, type[QuantizedLinear]] = {"int8": Int8Linear, "int4": Int4Linear, "palette": PalettizedLinear}
    if scheme.kind not in classes:
        raise ValueError(f"no quantized linear for kind {scheme.kind!r}")
    return classes[scheme.kind]
