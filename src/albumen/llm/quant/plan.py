"""``quant_decode_plan(model)``: the whole decode step of a 4-bit ``Transformer`` as one C++ object, or None.

The plan (``kernels/quant_plan``, ``QuantDecodePlan``) runs, for 1..8 new tokens of batch 1, what the module path
runs with the fused int4 layers (``quant/fused.py``) in one call: the embedding rows, every layer's
``int4_decode_step``, the final norm and the head. It shares the fused layers' packed weights (no copy) and the
model's KV caches, and gives the same logits bit for bit; it removes the ~25 Python-issued ops per layer, the
module calls of embedding, norm and head, and for greedy decoding the logits tensor (``argmax``).

It applies while the model is what ``quantize_model`` / ``load_quantized`` left: caches set up, every layer's fused
step able to pack its parts on our VNNI GEMV (int4 or block palettes; torch's int4pack kernel declines), the head
an int4 / block-palette / int8 layer on that GEMV, the table float, int4 or int8, no hooks, no swapped or patched
module (LoRA), no autograd. Otherwise None, and the caller decodes module by module. Build a new plan after
``setup_caches`` or any module swap or kernel change (``generate`` builds one per call).

``enable_fused_decode`` installs this function as ``model._quant_plan``; ``Transformer.decode_plan`` returns its
result. This module knows the engine's model classes and the quantized modules; it knows nothing about generation.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn

from albumen.llm.kernels import quant_gemv
from albumen.llm.kernels.quant_plan import quant_layout_weight, quant_plan_module
from albumen.llm.kv_cache import KVCache
from albumen.llm.model import MLP, Attention, DecoderLayer, DecoderStack, RMSNorm, Transformer
from albumen.llm.quant import kernels
from albumen.llm.quant.embedding import QuantizedEmbedding
from albumen.llm.quant.fused import FusedInt4Layer
from albumen.llm.quant.linear import BlockPalettizedLinear, Int4Linear, Int8Linear, QuantizedLinear

__all__ = ["quant_decode_plan"]

_PLAIN = (DecoderLayer, Attention, MLP, RMSNorm, DecoderStack, Transformer, nn.Embedding, nn.ModuleList, KVCache,
          QuantizedEmbedding, Int4Linear, BlockPalettizedLinear, Int8Linear)


def _head_layout(head: nn.Module) -> quant_gemv.Q4Layout | quant_gemv.Q8Layout | None:
    """The GEMV layout the head's own forward uses for 1..8 rows, or None (another kernel, or the dequant path)."""
    if not isinstance(head, QuantizedLinear) or head.reference or head.bias is not None:
        return None
    if head.kernel_max_rows < quant_gemv.MAX_ROWS:
        return None
    rt = head.runtime()
    if rt is None:
        return None
    kind, payload = rt
    if kind == "int4-vnni":
        payload = payload.own  # kernels.Int4Dual: our layout for 1..8 rows
    elif isinstance(payload, kernels.Int8Packed) and payload.kernel == "vnni":
        payload = payload.payload[0]  # (Q8Layout, int8pack for long inputs)
    return payload if isinstance(payload, (quant_gemv.Q4Layout, quant_gemv.Q8Layout)) else None


def _embedding(emb: nn.Module, dtype: torch.dtype) -> tuple[str, list[torch.Tensor], int] | None:
    """(kind, tensors, group) of the plan's table, read as the module's forward reads it, or None."""
    if type(emb) is nn.Embedding:
        w = emb.weight.detach()
        return ("dense", [w], 0) if w.dtype is dtype and w.is_contiguous() else None
    if type(emb) is not QuantizedEmbedding or emb.weight.dtype is not dtype:
        return None
    src = emb.source
    empty = torch.empty(0)
    if type(src) is Int4Linear:
        scale = src.scale.contiguous()
        zero = empty if src.zero is None else src.zero.to(scale.dtype).contiguous()
        return "int4", [src.qweight.contiguous(), scale, zero], src.scheme.group_size
    if type(src) is Int8Linear:
        return "int8", [src.qweight.contiguous(), src.scale.float().contiguous()], 0
    return None


def _layer(mod: Any, layer: DecoderLayer, dtype: torch.dtype) -> Any | None:
    """A ``QuantLayer`` over the layer's fused packs, or None where the fused step would not run."""
    step = layer.__dict__.get("_quant_step")
    cache = layer.self_attn.kv_cache
    if not isinstance(step, FusedInt4Layer) or cache is None or layer.__dict__.get("_decode_ops") is None:
        return None
    if layer.input_layernorm.eps != layer.post_attention_layernorm.eps:
        return None  # the fused step uses one eps for both norms
    packs = step.packs()
    if packs is None:
        return None
    weights = [*packs.qkv, packs.o, *packs.gate_up, packs.down]
    if not all(isinstance(w, quant_gemv.Q4Layout) for w in weights):
        return None  # torch's int4pack kernel: the fused Python step runs it
    biases = []
    for b in packs.qkv_bias:
        if b is not None and dtype is torch.bfloat16 and b.dtype is not torch.bfloat16:
            return None  # an fp32 bias would promote the bf16 step to fp32 (the Python step does not run either)
        biases.append(torch.empty(0) if b is None else b.detach().float().contiguous())
    norms = [layer.input_layernorm.weight.detach(), layer.post_attention_layernorm.weight.detach()]
    if any(t.dtype is not dtype or not t.is_contiguous() for t in (*norms, cache.k_cache, cache.v_cache)):
        return None
    w = [quant_layout_weight(mod, t) for t in weights]
    nq = len(packs.qkv)
    return mod.QuantLayer(norms[0], norms[1], w[:nq], biases, w[nq], w[nq + 1:-1], w[-1], cache.k_cache,
                          cache.v_cache)


def quant_decode_plan(model: nn.Module, head: nn.Module | None = None, compiled: ModuleType | None = None
                      ) -> Any | None:
    """The whole single-step decode of ``model`` (batch 1, 1..8 tokens per call) as a ``QuantDecodePlan``, or None.

    ``head``: another LM head to finish the step with instead of ``model.lm_head`` (a quantized layer on the same
    GEMV, e.g. a draft model's head restricted to its draft vocabulary: row i of the logits is that head's row i).
    ``compiled``: another build of the compiled plan (benchmarks A/B kernel variants); default ``quant_plan_module()``.

    ``plan.logits(token, pos)`` -> (1, V) logits after ``token`` at ``pos`` (its key/value written into the caches),
    equal bit for bit to ``model(tensor([[token]]), tensor([pos]))[:, -1]``; ``plan.argmax(token, pos)`` -> the
    greedy token; ``plan.block_logits(tokens, pos)`` -> (M, V) for M = 1..8 tokens at pos..pos+M-1, each row equal
    to that row decoded alone; ``plan.block_argmax``; ``plan.features()``; ``plan.max_positions``.
    """
    if not isinstance(model, Transformer) or not model.has_caches or model._rope is None:
        return None
    if not model.__dict__.get("_fuse_model", True):
        return None  # use_decode_kernels(fuse_model=False): the model runs module by module on purpose
    dtype = model.model.embed_tokens.weight.dtype
    if dtype not in (torch.float32, torch.bfloat16) or model._rope[0].dtype is not dtype:
        return None
    if model.model.embed_tokens.weight.device.type != "cpu":
        return None
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        return None  # the plan bypasses autograd
    skip = set() if head is None else {id(m) for m in model.lm_head.modules()}  # not run: the given head is
    for module in model.modules():
        if id(module) in skip:
            continue
        if module._forward_hooks or module._forward_pre_hooks or "forward" in module.__dict__:
            return None  # a hook, or a patched forward, must run as a module
        if type(module) not in _PLAIN:
            return None  # a swapped module (LoRA, another kind) runs as a module
    mod = compiled or quant_plan_module()
    if mod is None:
        return None
    norm = model.model.norm
    if any(layer.input_layernorm.eps != norm.eps for layer in model.model.layers):
        return None
    layers = [_layer(mod, layer, dtype) for layer in model.model.layers]
    head = _head_layout(model.lm_head if head is None else head)
    table = _embedding(model.model.embed_tokens, dtype)
    if any(layer is None for layer in layers) or head is None or table is None:
        return None
    norm_w = norm.weight.detach()
    if norm_w.dtype is not dtype:
        return None
    kind, tensors, group = table
    cos, sin = model._rope
    return mod.QuantDecodePlan(kind, tensors, group, layers, norm_w.contiguous(), quant_layout_weight(mod, head), cos,
                               sin, norm.eps, model.args.n_heads, model.args.n_kv_heads)
