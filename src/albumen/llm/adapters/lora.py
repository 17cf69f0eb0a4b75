"""LoRA and DoRA as module swaps on a frozen linear layer, several named adapters per layer.

``LoRALinear.from_base(linear)`` wraps any frozen base that maps ``(..., in_features) -> (..., out_features)``: a
plain ``nn.Linear`` (LoRA), a bf16 copy or an int4/int8 quantised linear (QLoRA). The wrapper holds the base once and
a dict of named adapters; ``active`` picks the one a forward uses, so switching features costs a string assignment,
never a reload of the base. ``merge()`` folds the active adapter into a float base weight and ``unmerge()`` restores
the exact original.

This module knows the adapter maths (Hu et al. 2021, https://arxiv.org/abs/2106.09685; Liu et al. 2024,
https://arxiv.org/abs/2402.09353). It knows nothing about which layers of a model are targeted (``registry.py``) or
about file formats (``peft_format.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DoRALinear", "DoRAWeights", "LoRALinear", "LoRAWeights", "lora_scale"]


def lora_scale(r: int, alpha: float, rslora: bool = False) -> float:
    """alpha / r, or alpha / sqrt(r) for rank-stabilised LoRA (https://arxiv.org/abs/2312.03732)."""
    return alpha / math.sqrt(r) if rslora else alpha / r


def _base_weight(base: nn.Module) -> torch.Tensor:
    """The base weight as a float tensor (out, in), dequantising when the base knows how."""
    if hasattr(base, "dequantize"):
        return base.dequantize().float()
    weight = getattr(base, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(f"{type(base).__name__} exposes no float weight; DoRA and merge need one")
    return weight.float()


class LoRAWeights(nn.Module):
    """One low-rank update: delta_W = scale * B @ A, with A (r, in) and B (out, r); B starts at zero."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float, dropout: float = 0.0,
                 rslora: bool = False) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {r}")
        self.r, self.alpha = r, alpha
        self.scale = lora_scale(r, alpha, rslora)
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # PEFT's default init
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        return self.scale * (self.lora_B.weight @ self.lora_A.weight)  # (out, r) @ (r, in) -> (out, in)

    def apply(self, x: torch.Tensor, base_out: torch.Tensor, base: nn.Module) -> torch.Tensor:
        """base_out + scale * B A dropout(x). x: (..., in) -> (..., out)."""
        dx = self.dropout(x).to(self.lora_A.weight.dtype)
        return base_out + (self.lora_B(self.lora_A(dx)) * self.scale).to(base_out.dtype)

    def merged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta_weight()


class DoRAWeights(LoRAWeights):
    """Weight-decomposed LoRA: W' = m * (W + s B A) / ||W + s B A||_row, with m a learned (out,) magnitude.

    As in the paper (sec. 4.3) and PEFT, the norm is treated as a constant in the backward pass.
    """

    def __init__(self, base: nn.Module, in_features: int, out_features: int, r: int, alpha: float,
                 dropout: float = 0.0, rslora: bool = False) -> None:
        super().__init__(in_features, out_features, r, alpha, dropout, rslora)
        with torch.no_grad():
            norm = torch.linalg.norm(_base_weight(base), dim=1)  # (out,)
        self.lora_magnitude_vector = nn.Parameter(norm.clone())

    def _row_norm(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.linalg.norm(weight + self.delta_weight(), dim=1).detach()  # (out,)

    def apply(self, x: torch.Tensor, base_out: torch.Tensor, base: nn.Module) -> torch.Tensor:
        weight = _base_weight(base)  # (out, in)
        bias = getattr(base, "bias", None)
        plain = base_out - bias if bias is not None else base_out  # W x, without the bias
        mag = (self.lora_magnitude_vector / self._row_norm(weight)).view(1, -1)  # (1, out)
        dx = self.dropout(x).to(self.lora_A.weight.dtype)
        if not isinstance(self.dropout, nn.Identity) and self.training:
            plain = F.linear(dx, weight.to(dx.dtype))  # the paper applies dropout to the input of both terms
        lora = self.lora_B(self.lora_A(dx)) * self.scale
        # m/||.|| * (W x + s B A x) + bias, written as a correction of base_out
        return base_out + ((mag - 1) * plain + mag * lora).to(base_out.dtype)

    def merged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        full = weight + self.delta_weight()
        return full * (self.lora_magnitude_vector / torch.linalg.norm(full, dim=1)).unsqueeze(1)


class LoRALinear(nn.Module):
    """A frozen base linear plus named adapters; ``active`` names the one in use (None = base only)."""

    weights_cls: type[LoRAWeights] = LoRAWeights

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.in_features: int = base.in_features
        self.out_features: int = base.out_features
        self.adapters = nn.ModuleDict()
        self.active: str | None = None
        self._saved_weight: torch.Tensor | None = None  # the base weight before merge()
        for p in base.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_base(cls, base: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                  name: str = "default", rslora: bool = False) -> LoRALinear:
        """Wrap ``base`` and add one adapter ``name``, made active."""
        if isinstance(base, LoRALinear):
            raise TypeError("base is already wrapped; use add_adapter")
        layer = cls(base)
        layer.add_adapter(name, r, alpha, dropout, rslora, kind="dora" if cls is DoRALinear else "lora")
        layer.active = name
        return layer

    def add_adapter(self, name: str, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False,
                    kind: str = "lora") -> LoRAWeights:
        if name in self.adapters:
            raise KeyError(f"adapter {name!r} already exists on this layer")
        if kind == "dora":
            w: LoRAWeights = DoRAWeights(self.base, self.in_features, self.out_features, r, alpha, dropout, rslora)
        elif kind == "lora":
            w = LoRAWeights(self.in_features, self.out_features, r, alpha, dropout, rslora)
        else:
            raise ValueError(f"unknown adapter kind {kind!r} (lora or dora)")
        ref = next(self.base.parameters(), None)
        if ref is not None and ref.is_floating_point():
            w.to(device=ref.device)
        self.adapters[name] = w
        return w

    def remove_adapter(self, name: str) -> None:
        if self.active == name:
            self.set_active(None)
        del self.adapters[name]

    def set_active(self, name: str | None) -> None:
        """Use adapter ``name`` from the next forward (None: the base alone). Unmerges first if merged."""
        if name is not None and name not in self.adapters:
            name = None  # this layer is not targeted by that adapter: the bare base
        if self.merged and name != self.active:
            self.unmerge()  # a merged adapter must never leak into another one's forward
        self.active = name

    @property
    def merged(self) -> bool:
        return self._saved_weight is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (..., out)
        if self.active is None or self.merged:
            return out
        return self.adapters[self.active].apply(x, out, self.base)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the active adapter into the base weight (needs a float ``nn.Linear``-like base)."""
        if self.merged or self.active is None:
            return
        weight = getattr(self.base, "weight", None)
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            raise TypeError(f"cannot merge into a {type(self.base).__name__} base (quantised?); keep it unmerged")
        self._saved_weight = weight.detach().clone()
        weight.copy_(self.adapters[self.active].merged_weight(weight.float()).to(weight.dtype))

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight saved by ``merge()``."""
        if self._saved_weight is None:
            return
        self.base.weight.copy_(self._saved_weight)
        self._saved_weight = None

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, adapters={list(self.adapters)}, active={self.active}"


class DoRALinear(LoRALinear):
    """``LoRALinear`` whose ``from_base`` adds a DoRA adapter (magnitude + direction)."""
