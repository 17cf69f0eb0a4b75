"""Swap a model's ``nn.Linear`` / ``nn.Embedding`` modules for quantized ones, by module name.

Works on any model whose projections are ``nn.Linear`` modules reached by attribute (the engine's ``Transformer``,
HF causal LMs). Tied embeddings (``lm_head.weight is embed_tokens.weight``) become one quantized table shared by the
head and the lookup. A scheme that does not fit a layer's shape (in_features not a multiple of the group, out
features not a multiple of the palette channel group) falls back, recorded in the result: an int4 group to the
largest smaller group that divides the rows (128 -> 64 -> 32), anything else to int8.
This module knows names and shapes; it knows nothing about files or kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from torch import nn

from albumen.llm.quant.config import LayerScheme, QuantConfig
from albumen.llm.quant.embedding import QuantizedEmbedding
from albumen.llm.quant.fused import enable_fused_decode
from albumen.llm.quant.linear import QuantizedLinear, quantized_linear_class

__all__ = [
    "QuantResult",
    "fits",
    "model_bits_per_weight",
    "quantize_model",
    "quantized_modules",
    "reference_kernels",
    "set_kernel",
]

_INT8 = LayerScheme(kind="int8", bits=8)


@dataclass
class QuantResult:
    """What ``quantize_model`` did: the scheme of each module, the tie, and the layers that fell back."""

    schemes: dict[str, LayerScheme] = field(default_factory=dict)
    tied: bool = False
    fallbacks: dict[str, str] = field(default_factory=dict)


def fits(scheme: LayerScheme, out_features: int, in_features: int) -> str | None:
    """None if ``scheme`` can hold an (out, in) matrix, else why not."""
    if scheme.kind == "int4" and in_features % scheme.group_size:
        return f"in_features {in_features} % group {scheme.group_size} != 0"
    if scheme.kind == "int4" and in_features % 2:
        return "odd in_features"
    if scheme.kind == "palette" and scheme.granularity == "block" and in_features % scheme.group_size:
        return f"in_features {in_features} % palette block {scheme.group_size} != 0"
    if scheme.kind == "palette" and scheme.granularity == "channel_group" and out_features % scheme.channel_group:
        return f"out_features {out_features} % channel group {scheme.channel_group} != 0"
    return None


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _fitting(scheme: LayerScheme, name: str, out_f: int, in_f: int, result: QuantResult) -> LayerScheme:
    """``scheme`` if it fits; an int4 group that does not divide in_features halves (down to 32) first; else int8."""
    why = fits(scheme, out_f, in_f)
    if why is None:
        return scheme
    if scheme.kind == "int4" or scheme.granularity == "block":
        group = scheme.group_size // 2
        while group >= 32:
            smaller = replace(scheme, group_size=group)
            if fits(smaller, out_f, in_f) is None:
                result.fallbacks[name] = f"{scheme.name} -> {smaller.name}: {why}"
                return smaller
            group //= 2
    result.fallbacks[name] = f"{scheme.name} -> int8: {why}"
    return _INT8


def quantize_model(model: nn.Module, config: QuantConfig) -> QuantResult:
    """Quantize ``model`` in place with ``config``; returns what was done.

    Linears get ``config.scheme_for(name)``; embeddings get ``config.embedding`` unless tied to a quantized head, in
    which case they read the head's table.
    """
    result = QuantResult()
    modules = dict(model.named_modules())
    embeddings = {n: m for n, m in modules.items() if type(m) is nn.Embedding}
    linears = {n: m for n, m in modules.items() if type(m) is nn.Linear}
    tie_of: dict[str, str] = {}  # embedding name -> linear name sharing its weight
    for en, emb in embeddings.items():
        for ln, lin in linears.items():
            if lin.weight is emb.weight or lin.weight.data_ptr() == emb.weight.data_ptr():
                tie_of[en] = ln
    quantized: dict[str, QuantizedLinear] = {}
    for name, lin in linears.items():
        scheme = config.scheme_for(name)
        if scheme is None or scheme.kind == "none":
            continue
        scheme = _fitting(scheme, name, lin.out_features, lin.in_features, result)
        q = quantized_linear_class(scheme).from_float(lin, scheme)
        _set_module(model, name, q)
        quantized[name] = q
        result.schemes[name] = scheme
    for name, emb in embeddings.items():
        head = tie_of.get(name)
        if head is not None:
            if head in quantized:
                _set_module(model, name, QuantizedEmbedding(quantized[head], emb.weight.dtype, tied=True))
                result.schemes[name] = quantized[head].scheme
                result.tied = True
            continue
        if config.embedding is None or config.embedding.kind == "none" or name in config.skip:
            continue
        scheme = _fitting(config.embedding, name, emb.num_embeddings, emb.embedding_dim, result)
        _set_module(model, name, QuantizedEmbedding.from_float(emb, scheme))
        result.schemes[name] = scheme
    enable_fused_decode(model)  # int4 decoder layers: one fused decode step each (quant/fused.py)
    return result


def quantized_modules(model: nn.Module) -> dict[str, QuantizedLinear]:
    """Every quantized matrix by module name (an untied table under ``<embedding>.table``)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def set_kernel(model: nn.Module, kernel: str) -> None:
    """Choose the runtime kernel of every quantized linear ("auto", "fbgemm", "int8pack", "int4pack", "bf16",
    "dequant"); a layer whose kind has no such kernel uses the dequant path."""
    for m in quantized_modules(model).values():
        m.kernel = kernel


@contextlib.contextmanager
def reference_kernels(model: nn.Module) -> Iterator[None]:
    """Within the block every quantized linear takes the plain-torch dequant path, and the engine's C++ decode ops
    (fused norm, rope, attention: ``use_decode_kernels``) are switched off: tracing and export see torch ops only."""
    from albumen.llm.model import use_decode_kernels

    mods = list(quantized_modules(model).values())
    saved = [m.reference for m in mods]
    had_ops = any(m.__dict__.get("_decode_ops") is not None for m in model.modules())
    if had_ops:
        use_decode_kernels(model, kernels=False)
    for m in mods:
        m.reference = True
    try:
        yield
    finally:
        for m, s in zip(mods, saved):
            m.reference = s
        if had_ops:
            use_decode_kernels(model, kernels=True)


def model_bits_per_weight(model: nn.Module) -> float:
    """Stored bits per weight over every matrix of the model (quantized or float; tied tables counted once)."""
    bits = 0.0
    count = 0
    seen: set[int] = set()
    for _, mod in model.named_modules():
        if isinstance(mod, QuantizedLinear):
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            n = mod.in_features * mod.out_features
            bits += mod.bits_per_weight() * n
            count += n
        elif isinstance(mod, nn.Linear | nn.Embedding):
            w = mod.weight
            if w.data_ptr() in seen:
                continue
            seen.add(w.data_ptr())
            bits += 8.0 * w.element_size() * w.numel()
            count += w.numel()
    return bits / max(count, 1)
