"""Mixed precision chosen by measured sensitivity.

``layer_sensitivity`` quantizes one linear at a time (the rest stay float) and measures the KL divergence of the
model's next-token distribution from the float model's on calibration text: the damage that layer alone does.
``plan_mixed_precision`` then spends a bit budget where it buys the most: starting from every layer at the low
scheme, it upgrades layers to the high scheme in order of KL removed per extra stored bit, until the average
reaches the target bits per weight. This module knows modules and logits; it knows nothing about files or kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albumen.llm.quant.apply import fits
from albumen.llm.quant.config import LayerScheme, QuantConfig
from albumen.llm.quant.linear import quantized_linear_class

__all__ = ["kl_divergence", "layer_sensitivity", "mixed_precision_config", "plan_mixed_precision", "scheme_bits"]

LogitsFn = Callable[[nn.Module, Tensor], Tensor]


def _default_logits(model: nn.Module, ids: Tensor) -> Tensor:
    return model(ids)


def kl_divergence(ref_logits: Tensor, logits: Tensor) -> Tensor:
    """Mean over positions of KL(P_ref || P). Both (..., V) -> scalar."""
    ref = F.log_softmax(ref_logits.float(), dim=-1).reshape(-1, ref_logits.shape[-1])  # (M, V)
    new = F.log_softmax(logits.float(), dim=-1).reshape(-1, logits.shape[-1])
    return (ref.exp() * (ref - new)).sum(-1).mean()


def scheme_bits(scheme: LayerScheme, in_features: int) -> float:
    """Approximate stored bits per weight of a scheme (index/code bits plus per-group metadata)."""
    if scheme.kind == "none":
        return 32.0
    if scheme.kind == "int8":
        return 8.0 + 32.0 / in_features
    if scheme.kind == "int4" or scheme.granularity == "block":
        return scheme.bits + (16.0 if scheme.symmetric else 32.0) / scheme.group_size
    return float(scheme.bits)


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, module)


@torch.no_grad()
def layer_sensitivity(
    model: nn.Module,
    batches: Sequence[Tensor],
    scheme: LayerScheme,
    names: Sequence[str] | None = None,
    logits_fn: LogitsFn = _default_logits,
) -> dict[str, float]:
    """KL(float || float-with-this-one-layer-quantized) for each named ``nn.Linear``, averaged over ``batches``.

    Args:
        model: the float model (left unchanged on return).
        batches: (B, T) token id tensors of calibration text.
        scheme: the low-precision scheme each layer is tried at.
        names: the linears to measure; default every ``nn.Linear`` except the head.
        logits_fn: (model, ids) -> (B, T, V) logits; default ``model(ids)``.
    """
    if names is None:
        names = [n for n, m in model.named_modules() if type(m) is nn.Linear and not n.endswith("lm_head")]
    refs = [logits_fn(model, b) for b in batches]
    out: dict[str, float] = {}
    for name in names:
        lin = model.get_submodule(name)
        if fits(scheme, lin.out_features, lin.in_features) is not None:
            continue
        q = quantized_linear_class(scheme).from_float(lin, scheme)
        _set_module(model, name, q)
        try:
            kls = [kl_divergence(r, logits_fn(model, b)) for r, b in zip(refs, batches)]
        finally:
            _set_module(model, name, lin)
        out[name] = float(torch.stack(kls).mean())
    return out


def plan_mixed_precision(
    sensitivity: dict[str, float],
    shapes: dict[str, tuple[int, int]],
    low: LayerScheme,
    high: LayerScheme,
    target_bits: float,
) -> dict[str, LayerScheme]:
    """Per-layer schemes: ``low`` everywhere, upgraded to ``high`` greedily by KL per extra bit until the mean
    stored bits per weight (weighted by layer size) would exceed ``target_bits``.

    Args:
        sensitivity: name -> KL measured at ``low``.
        shapes: name -> (out_features, in_features).
    """
    sizes = {n: shapes[n][0] * shapes[n][1] for n in sensitivity}
    total = sum(sizes.values())
    bits = {n: scheme_bits(low, shapes[n][1]) for n in sensitivity}
    budget = target_bits * total - sum(bits[n] * sizes[n] for n in sensitivity)
    plan = {n: low for n in sensitivity}
    # KL removed per extra bit spent: the most sensitive bits first
    order = sorted(sensitivity, key=lambda n: sensitivity[n] / (sizes[n] * max(
        scheme_bits(high, shapes[n][1]) - bits[n], 1e-6)), reverse=True)
    for name in order:
        extra = (scheme_bits(high, shapes[name][1]) - bits[name]) * sizes[name]
        if extra <= budget and fits(high, *shapes[name]) is None:
            plan[name] = high
            budget -= extra
    return plan


def mixed_precision_config(
    model: nn.Module,
    batches: Sequence[Tensor],
    low: LayerScheme,
    high: LayerScheme,
    target_bits: float,
    base: QuantConfig | None = None,
    logits_fn: LogitsFn = _default_logits,
) -> tuple[QuantConfig, dict[str, float]]:
    """Measure sensitivity at ``low`` and return (config with per-layer overrides, the sensitivities)."""
    sens = layer_sensitivity(model, batches, low, logits_fn=logits_fn)
    shapes = {n: (model.get_submodule(n).out_features, model.get_submodule(n).in_features) for n in sens}
    plan = plan_mixed_precision(sens, shapes, low, high, target_bits)
    base = base or QuantConfig(default=low)
    config = QuantConfig(default=low, lm_head=base.lm_head, embedding=base.embedding, overrides=plan, skip=base.skip)
    return config, sens
