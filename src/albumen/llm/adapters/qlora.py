"""QLoRA wiring: quantise the frozen base's target linears, then put LoRA adapters on top of them.

Dettmers et al. 2023 (https://arxiv.org/abs/2305.14314): the base weights are stored in 4 bits and never updated;
gradients flow through their dequantised values into small float adapters. Here the base is quantised by the
engine's own ``albumen.llm.quant`` (``Int4Linear`` / ``Int8Linear``; its dequant path carries autograd), or kept as a
frozen bf16 copy (``"bf16"``), and ``LoRALinear`` wraps the result unchanged.

This module knows the order of the two steps and which layers to quantise; the maths of each lives in ``quant/`` and
``lora.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from albumen.llm.adapters.config import AdapterConfig, matches_target
from albumen.llm.adapters.registry import AdapterRegistry

__all__ = ["BF16Linear", "prepare_qlora", "quantize_targets"]


class BF16Linear(nn.Module):
    """A frozen bf16 copy of a linear: half the memory, computed in bf16, returned in the input dtype."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def dequantize(self) -> torch.Tensor:
        return self.weight.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        return nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


def quantize_targets(model: nn.Module, targets: tuple[str, ...] | str, scheme: str = "int4-g32") -> list[str]:
    """Replace every plain ``nn.Linear`` that ``targets`` selects by a frozen quantised copy; returns their names.

    Targets that are already quantised (or wrapped) stay as they are, so this can run on a quantised checkpoint.

    ``scheme``: ``"bf16"`` or any ``albumen.llm.quant.parse_scheme`` name (``"int4-g32"``, ``"int8"``...).
    """
    matched = {n: m for n, m in model.named_modules()
               if n and matches_target(n, targets) and hasattr(m, "in_features") and hasattr(m, "out_features")}
    if not matched:
        raise ValueError(f"targets {targets!r} match no linear layer of the model")
    names = [n for n, m in matched.items() if type(m) is nn.Linear]  # already quantised ones are kept as they are
    for n in names:
        parent_name, _, child = n.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if scheme == "bf16":
            q: nn.Module = BF16Linear(linear)
        else:
            from albumen.llm.quant import parse_scheme
            from albumen.llm.quant.linear import quantized_linear_class

            s = parse_scheme(scheme)
            q = quantized_linear_class(s).from_float(linear, s)
        setattr(parent, child, q)
    return names


def prepare_qlora(model: nn.Module, name: str, config: AdapterConfig, scheme: str = "int4-g32",
                  registry: AdapterRegistry | None = None) -> AdapterRegistry:
    """Quantise the layers ``config`` targets to ``scheme`` and add adapter ``name`` on top (active)."""
    quantize_targets(model, config.target_modules, scheme)
    reg = registry or AdapterRegistry(model)
    reg.add(name, config)
    reg.activate(name)
    return reg
