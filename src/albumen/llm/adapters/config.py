"""Adapter settings as a typed dataclass, with PEFT's ``adapter_config.json`` as its file form.

This module knows which PEFT config fields Albumen honours (rank, alpha, dropout, target modules as names or a
regex, DoRA, rsLoRA) and refuses configs that use a PEFT feature it does not implement, so that a loaded adapter
never silently computes something else. It knows nothing about modules or tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LLAMA_ATTENTION", "LLAMA_ALL_LINEAR", "AdapterConfig", "matches_target"]

LLAMA_ATTENTION: tuple[str, ...] = ("q_proj", "v_proj")
LLAMA_ALL_LINEAR: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def matches_target(module_name: str, target: tuple[str, ...] | str) -> bool:
    """PEFT's rule: a string is a regex that must match the full name; a list matches the name or its suffix."""
    if isinstance(target, str):
        return re.fullmatch(target, module_name) is not None
    return any(module_name == t or module_name.endswith("." + t) for t in target)


@dataclass(frozen=True)
class AdapterConfig:
    """One adapter's shape. ``target_modules``: names (suffix match) or one regex over full module names."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = LLAMA_ATTENTION
    use_dora: bool = False
    use_rslora: bool = False
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # PEFT fields kept verbatim on save

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"r must be positive, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    @property
    def kind(self) -> str:
        return "dora" if self.use_dora else "lora"

    def to_peft(self) -> dict[str, Any]:
        """The dict PEFT's ``LoraConfig.from_pretrained`` reads."""
        target: list[str] | str = (
            self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        )
        return {
            **self.extra,
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": target,
            "use_dora": self.use_dora,
            "use_rslora": self.use_rslora,
            "bias": "none",
            "fan_in_fan_out": False,
            "init_lora_weights": True,
            "inference_mode": True,
            "modules_to_save": None,
            "rank_pattern": {},
            "alpha_pattern": {},
            "layers_to_transform": None,
            "layers_pattern": None,
        }

    @classmethod
    def from_peft(cls, d: dict[str, Any]) -> AdapterConfig:
        """Read a PEFT LoRA config; raise ValueError on features Albumen does not implement."""
        if d.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"only LoRA/DoRA adapters are supported, not peft_type={d.get('peft_type')!r}")
        unsupported = {
            "rank_pattern": d.get("rank_pattern") or None,
            "alpha_pattern": d.get("alpha_pattern") or None,
            "modules_to_save": d.get("modules_to_save") or None,
            "layers_to_transform": d.get("layers_to_transform"),
            "fan_in_fan_out": d.get("fan_in_fan_out") or None,
            "lora_bias": d.get("lora_bias") or None,
            "bias": None if d.get("bias", "none") == "none" else d.get("bias"),
            "target_parameters": d.get("target_parameters"),
            "trainable_token_indices": d.get("trainable_token_indices"),
        }
        used = {k: v for k, v in unsupported.items() if v is not None}
        if used:
            raise ValueError(f"adapter uses PEFT features Albumen does not implement: {sorted(used)}")
        target = d.get("target_modules")
        if not target:
            raise ValueError("adapter_config.json has no target_modules")
        known = {"peft_type", "task_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout",
                 "target_modules", "use_dora", "use_rslora"}
        return cls(
            r=int(d["r"]),
            alpha=float(d["lora_alpha"]),
            dropout=float(d.get("lora_dropout", 0.0)),
            target_modules=target if isinstance(target, str) else tuple(target),
            use_dora=bool(d.get("use_dora", False)),
            use_rslora=bool(d.get("use_rslora", False)),
            base_model=d.get("base_model_name_or_path"),
            extra={k: v for k, v in d.items() if k not in known},
        )
