"""One decode step of a decoder layer whose projections are all 4-bit (``Int4Linear``, or block palettes
``BlockPalettizedLinear``), in as few calls as possible.

Per layer and token the module path makes 7 products, each wrapped in ``QuantizedLinear.forward`` with its
casts, plus the norms, RoPE and attention as separate modules: ~25 Python module calls and ~80 ATen ops, which on
SmolLM2 cost more than the products. Here, for int4, q/k/v are one product and gate/up another, on weights
concatenated along the output rows at first use (block palettes keep one product per matrix: each has its own
table); the norms, RoPE and single-query attention are the engine's C++ decode ops
(``kernels/decode_ops``); the products call the compiled GEMV (``kernels/quant_gemv``, the default for 1..8 rows)
or ``_weight_int4pack_mm_for_cpu`` directly, whichever the parts' ``kernel`` uses. Same ops, same order, same
dtypes as the module path: the logits are equal (tests check it bit for bit).

Memory: both layouts are blocked by output rows (4 for our GEMV, 64 for int4pack), so a row slice of the
concatenated layout *is* the layout of each part. The modules' own layouts become those slices (int4pack's scales
copied, ~1/64 of the codes), so the module path and the fused step share one copy.

Blocks of 2..8 new tokens (speculative verification) take the same step: one GEMV call per product for all rows,
the single-query attention per row (causal inside the block), so a row inside a block is computed exactly as the
row alone (``block_attention``).

The engine calls ``layer._quant_step(ops, x, cos, sin, pos)`` (see ``DecoderLayer._fused_step`` in model.py) where
``enable_fused_decode`` installed it; it returns None whenever the layer is not as it was when fused (a module
swapped, e.g. by LoRA; a hook; new weights; another kernel chosen), and the module path runs.
The whole-model form of this step (every layer, embedding, norm and head in one C++ call, bit-identical to it) is
``quant/plan.py``'s ``QuantDecodePlan``, which reads the packs built here.
This module knows the engine's decoder layer and int4 layouts; it knows nothing about files or generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albumen.llm.kernels import quant_gemv
from albumen.llm.model import DecoderLayer
from albumen.llm.quant import kernels
from albumen.llm.quant.linear import BlockPalettizedLinear, Int4Linear

__all__ = [
    "MAX_BLOCK_ROWS", "FusedInt4Layer", "block_attention", "disable_fused_decode", "enable_fused_decode", "fuse_int4",
    "int4_decode_step",
    "set_max_block_rows",
]

MAX_BLOCK_ROWS = 8  # the GEMV reads each weight once for up to 8 rows (speculative verification: k + 1 <= 8)
_PACK_ROW_BLOCK = 64  # int4pack's CPU layout interleaves rows in blocks of 64: slices must start on a block

Weight = Union[quant_gemv.Q4Layout, kernels.Int4Packed]


def _concat_rows(parts: list[Int4Linear]) -> tuple[Tensor, Tensor, Tensor | None, list[int]]:
    """Codes (N, K), scales and zeros (N, G) of ``parts`` stacked by output rows, and the row offsets."""
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + p.out_features)
    codes = torch.cat([p.codes() for p in parts])  # (N, K) uint8
    scale = torch.cat([p.scale for p in parts])  # (N, G)
    zero = None if all(p.zero is None for p in parts) else torch.cat([p._zero() for p in parts])
    return codes, scale, zero, offsets


def fuse_int4(parts: list[Int4Linear]) -> tuple[Weight, Tensor | None] | None:
    """Pack ``parts`` (same in_features and group) as one weight of concatenated rows, in the layout of the kernel
    their runtime uses (our VNNI GEMV, else int4pack), and point each part's kernel layout at its row slice.
    Returns (weight, concatenated bias or None), or None when they cannot share one layout."""
    first = parts[0]
    g = first.scheme.group_size
    if any(p.in_features != first.in_features or p.scheme.group_size != g for p in parts):
        return None
    kinds = {(p.runtime() or ("none",))[0] for p in parts}
    if len(kinds) != 1 or not kinds <= {"int4-vnni", "int4pack"}:
        return None
    own = kinds == {"int4-vnni"}
    block = quant_gemv.BLOCK_ROWS if own else _PACK_ROW_BLOCK
    codes, scale, zero, offsets = _concat_rows(parts)
    if any(o % block for o in offsets[:-1]):
        return None
    weight: Weight
    if own:
        weight = quant_gemv.pack_q4(codes, scale, zero, g)
        for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
            p._runtime = ("int4-vnni", kernels.Int4Dual(weight.rows(lo, hi), p._int4pack))
            p._runtime_key = (p.kernel,)
    else:
        zero_f = torch.zeros_like(scale, dtype=torch.float32) if zero is None else zero.float()
        packed = kernels.pack_int4(codes, scale.float(), zero_f, g)
        if packed is None:
            return None
        weight = packed
        for p, lo, hi in zip(parts, offsets[:-1], offsets[1:]):
            view = kernels.Int4Packed(packed.packed[lo:hi], packed.scales_and_zeros[:, lo:hi].contiguous(), g, hi - lo)
            p._runtime, p._runtime_key = ("int4pack", view), (p.kernel,)
    biases = [p.bias for p in parts]
    if all(b is None for b in biases):
        return weight, None
    dtype = next(b for b in biases if b is not None).dtype
    bias = torch.cat([torch.zeros(p.out_features, dtype=dtype) if b is None else b for p, b in zip(parts, biases)])
    return weight, bias


@dataclass
class _Packs:
    qkv: list[Weight]  # one product on concatenated rows, or q, k, v apart (parts that cannot share a layout)
    qkv_bias: list[Tensor | None]
    o: Weight
    gate_up: list[Weight]  # one product, or gate and up apart
    down: Weight
    gemv: Any  # the compiled quant_gemv module (for Q4Layout weights)
    state: tuple[Any, ...]  # (module, its runtime) pairs at fusion time: anything else means "rebuild or give up"


def _matmul(packs: _Packs, x: Tensor, w: Weight, dtype: torch.dtype) -> Tensor:
    """(B, K) -> (B, N) in ``dtype``, exactly as the part's own forward computes it (before its bias)."""
    if isinstance(w, quant_gemv.Q4Layout):
        y = packs.gemv.q4_linear(x, w.blocks, w.out_features, w.in_features, w.group, w.has_zero, w.lut, None)
        return y if dtype is torch.float32 else y.to(dtype)  # the kernel returns fp32
    y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), w.packed, w.group, w.scales_and_zeros)
    return y.to(dtype)


def _weight(part: nn.Module) -> Weight | None:
    """The layout a part's own forward uses for 1..8 rows, if it is one the step can call."""
    rt = part.runtime()
    if rt is None:
        return None
    kind, payload = rt
    if kind == "int4-vnni":
        return payload.own
    return payload if kind in ("int4pack", "lut-vnni") else None


def _products(parts: list[nn.Module]) -> tuple[list[Weight], list[Tensor | None]] | None:
    """One product on concatenated int4 rows where the parts allow it, else one per part (block palettes: each
    has its own table)."""
    if all(type(p) is Int4Linear for p in parts):
        fused = fuse_int4(parts)
        if fused is not None:
            return [fused[0]], [fused[1]]
    weights = [_weight(p) for p in parts]
    if any(w is None for w in weights):
        return None
    return weights, [p.bias for p in parts]


class FusedInt4Layer:
    """The ``_quant_step`` of one ``DecoderLayer``: builds its packs at first use, then runs the step."""

    def __init__(self, layer: nn.Module, max_rows: int = MAX_BLOCK_ROWS) -> None:
        self.layer = layer
        self.max_rows = max_rows  # rows (batch x new tokens) one call takes; 1: blocks run as modules
        self._packs: _Packs | None = None
        self._failed_state: tuple[Any, ...] | None = None

    def _parts(self) -> tuple[nn.Module, ...]:
        attn, mlp = self.layer.self_attn, self.layer.mlp
        return (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)

    def _state(self, parts: tuple[nn.Module, ...]) -> tuple[Any, ...]:
        return tuple((p, p._runtime_key, p._runtime, p.reference, p.bias) for p in parts)

    def _build(self, parts: tuple[nn.Module, ...]) -> _Packs | None:
        if any(type(p) not in (Int4Linear, BlockPalettizedLinear) or p.reference for p in parts):
            return None
        q, k, v, o, gate, up, down = parts
        qkv, gate_up = _products([q, k, v]), _products([gate, up])
        o_w, down_w = _weight(o), _weight(down)
        if qkv is None or gate_up is None or o_w is None or down_w is None:
            return None
        return _Packs(qkv[0], qkv[1], o_w, gate_up[0], down_w, quant_gemv.quant_gemv_module(), self._state(parts))

    def packs(self) -> _Packs | None:
        """The fused weights, (re)built when a part changed since; None when this layer cannot be fused."""
        parts = self._parts()
        packs = self._packs
        if packs is not None and all(s[0] is p for s, p in zip(packs.state, parts)) and all(
                a is b for s, t in zip(packs.state, self._state(parts)) for a, b in zip(s, t)):
            return packs
        failed = tuple((p, getattr(p, "kernel", None), getattr(p, "reference", None)) for p in parts)
        if failed == self._failed_state:
            return None  # the same modules, as they were, already failed to fuse
        self._packs = self._build(parts)
        self._failed_state = None if self._packs is not None else failed
        return self._packs

    def __call__(self, ops: Any, x: Tensor, cos: Tensor, sin: Tensor, pos: int) -> Tensor | None:
        layer = self.layer
        attn, mlp = layer.self_attn, layer.mlp
        cache = attn.kv_cache
        if cache is None or x.dtype not in (torch.float32, torch.bfloat16):
            return None
        if x.shape[0] * x.shape[1] > self.max_rows or x.shape[1] > pos + 1:
            return None  # a longer block (prefill) runs as modules
        mods = (layer.input_layernorm, layer.post_attention_layernorm, attn, mlp, *self._parts())
        if any(m._forward_hooks or m._forward_pre_hooks for m in mods):
            return None
        packs = self.packs()
        if packs is None:
            return None
        return int4_decode_step(
            ops, x, packs, layer.input_layernorm.weight, layer.post_attention_layernorm.weight,
            layer.input_layernorm.eps, cos, sin, cache.k_cache, cache.v_cache, pos, attn.n_heads, attn.n_kv_heads)


def block_attention(ops: Any, q: Tensor, k_cache: Tensor, v_cache: Tensor, start: int) -> Tensor:
    """q (B, nh, M, hd) at positions start..start+M-1 over the caches (B, nkv, S, hd) -> (B, nh, M, hd).

    Causal inside the block: row i sees positions 0..start+i. Each row is the engine's single-query C++ attention,
    the very call a one-row step makes, so a row inside a block equals the same row decoded alone (bit for bit)
    and a verification block gives the logits of plain decoding. (``grouped_attention`` with the block mask, the
    module path's choice, rounds differently; measured in docs/speculative.md.)
    """
    m = q.shape[2]
    if m == 1:
        return ops.decode_attention(q, k_cache[:, :, :start + 1], v_cache[:, :, :start + 1])
    rows = [ops.decode_attention(q[:, :, i:i + 1].contiguous(), k_cache[:, :, :start + i + 1],
                                 v_cache[:, :, :start + i + 1]) for i in range(m)]  # M x (B, nh, 1, hd)
    return torch.cat(rows, dim=2)


def int4_decode_step(ops: Any, x: Tensor, packs: _Packs, in_norm: Tensor, post_norm: Tensor, eps: float,
                     cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, pos: int, n_heads: int,
                     n_kv: int) -> Tensor:
    """x (B, M, D) -> (B, M, D) for M new tokens at positions pos-M+1..pos (B * M <= 8):
    h = x + o(attn(rope(q), cache)); out = h + down(silu(gate(n)) * up(n)).

    The same ops in the same order and dtypes as the module path (``DecoderLayer.forward`` with 4-bit parts), with
    q/k/v and gate/up each one product where the parts share a layout, each product one GEMV call for all B * M
    rows (the weight is read once). Writes the M keys and values into the caches; attention is ``block_attention``
    (one row: exactly the module path's single-query call).
    """
    bsz, m, dim = x.shape
    hd = cos.shape[-1]
    dt = x.dtype
    start = pos - m + 1
    rows = bsz * m
    x2 = x.reshape(rows, dim)  # (B*M, D)
    h = ops.rms_norm(x2, in_norm, eps)
    outs = []
    for w, bias in zip(packs.qkv, packs.qkv_bias):
        y = _matmul(packs, h, w, dt)  # (B*M, rows)
        # the parts add their bias in its dtype (fp32 model: fp32 by promotion, one op)
        outs.append(y if bias is None else torch.add(bias, y))
    nq, nk = n_heads * hd, n_kv * hd
    if len(outs) == 1:
        qkv = outs[0]  # (B*M, (nh + 2 nkv) hd)
        q_rows, k_rows, v_rows = qkv[:, :nq], qkv[:, nq:nq + nk], qkv[:, nq + nk:]
    else:
        q_rows, k_rows, v_rows = outs
    q = q_rows.reshape(bsz, m, n_heads, hd).transpose(1, 2)  # (B, nh, M, hd)
    k = k_rows.reshape(bsz, m, n_kv, hd).transpose(1, 2)  # (B, nkv, M, hd)
    v = v_rows.reshape(bsz, m, n_kv, hd).transpose(1, 2)  # (B, nkv, M, hd)
    q, k = ops.rope(q, cos, sin), ops.rope(k, cos, sin)
    kc, vc = k_cache[:bsz], v_cache[:bsz]  # (B, nkv, S, hd)
    kc[:, :, start:pos + 1].copy_(k)
    vc[:, :, start:pos + 1].copy_(v)
    y = block_attention(ops, q, kc, vc, start)  # (B, nh, M, hd)
    y = y.transpose(1, 2).reshape(rows, nq) if m > 1 else y.view(rows, nq)  # (B*M, nh*hd)
    h1 = x2 + _matmul(packs, y, packs.o, dt)  # (B*M, D)
    n2 = ops.rms_norm(h1, post_norm, eps)
    if len(packs.gate_up) == 1:
        gu = _matmul(packs, n2, packs.gate_up[0], dt)  # (B*M, 2F)
        ffn = gu.shape[1] // 2
        gate, up = gu[:, :ffn], gu[:, ffn:]
    else:
        gate, up = (_matmul(packs, n2, w, dt) for w in packs.gate_up)
    act = F.silu(gate) * up  # (B*M, F)
    return (h1 + _matmul(packs, act, packs.down, dt)).view(bsz, m, dim)


def set_max_block_rows(model: nn.Module, rows: int) -> int:
    """Rows one fused call takes in every fused layer (1: blocks of 2..8 rows run as modules, the A/B switch of
    ``benchmarks/speculative_steps.py --int4-blocks-ab``); returns how many layers."""
    if not 1 <= rows <= MAX_BLOCK_ROWS:
        raise ValueError(f"rows must be 1..{MAX_BLOCK_ROWS}, got {rows}")
    steps = [m.__dict__.get("_quant_step") for m in model.modules()]
    steps = [s for s in steps if isinstance(s, FusedInt4Layer)]
    for step in steps:
        step.max_rows = rows
    return len(steps)


def enable_fused_decode(model: nn.Module) -> int:
    """Give every decoder layer of an engine ``Transformer`` a fused 4-bit decode step; returns how many layers.

    Harmless on layers that are not all 4-bit (the step then declines at first use). Other models: nothing happens.
    The model also gets ``_quant_plan`` (``quant/plan.py``): ``Transformer.decode_plan`` then returns the whole
    decode step over these layers' packs as one C++ object where it applies.
    """
    from albumen.llm.quant.plan import quant_decode_plan  # plan.py builds on this module

    count = 0
    for module in model.modules():
        if isinstance(module, DecoderLayer):
            module.__dict__["_quant_step"] = FusedInt4Layer(module)
            count += 1
    if count:
        model.__dict__["_quant_plan"] = quant_decode_plan  # Transformer.decode_plan: the whole step in one C++ call
    return count


def disable_fused_decode(model: nn.Module) -> None:
    """Back to the module path for every layer (the A/B switch of the benchmarks)."""
    for module in model.modules():
        module.__dict__.pop("_quant_step", None)
    model.__dict__.pop("_quant_plan", None)
