"""Several named adapters on one frozen model, one active per request, switched without touching the base.

``AdapterRegistry(model)`` injects adapters by module swap (the target ``nn.Linear``-like children become
``LoRALinear``), loads and saves them in PEFT's format, and activates one by name. Switching walks the wrapped layers
and sets ``active``: no tensor is copied and the base is never reloaded. ``using(name)`` scopes one request.

This module knows module names and the registry's bookkeeping. The adapter maths is in ``lora.py``, the file format
in ``peft_format.py``; it knows nothing about tokenisation, generation or training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from albumen.llm.adapters.config import AdapterConfig, matches_target
from albumen.llm.adapters.lora import LoRALinear

__all__ = ["AdapterRegistry", "inject_adapter", "lora_layers", "trainable_parameters"]


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Wrapped layers by their (original) module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _is_linear_like(m: nn.Module) -> bool:
    return hasattr(m, "in_features") and hasattr(m, "out_features") and not isinstance(m, LoRALinear)


def inject_adapter(model: nn.Module, name: str, config: AdapterConfig) -> list[str]:
    """Add adapter ``name`` to every module ``config.target_modules`` selects; returns the module names.

    A target that is already wrapped gets one more adapter; a plain one is swapped for a ``LoRALinear``.
    """
    wrapped = lora_layers(model)
    targets = [
        n for n, m in model.named_modules()
        if n and (n in wrapped or _is_linear_like(m)) and matches_target(n, config.target_modules)
        and not any(n.startswith(w + ".") for w in wrapped)  # never the base inside a wrapper
    ]
    if not targets:
        raise ValueError(f"target_modules {config.target_modules!r} match no linear layer of the model")
    for n in targets:
        layer = wrapped.get(n)
        if layer is None:
            parent_name, _, child = n.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            layer = LoRALinear(getattr(parent, child))
            setattr(parent, child, layer)
        layer.add_adapter(name, config.r, config.alpha, config.dropout, config.use_rslora, kind=config.kind)
    return targets


def trainable_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze adapter ``name``; returns its parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for layer in lora_layers(model).values():
        if name in layer.adapters:
            for p in layer.adapters[name].parameters():
                p.requires_grad_(True)
                params.append(p)
    return params


class AdapterRegistry:
    """The adapters living on ``model``: add, load, save, activate, merge."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.configs: dict[str, AdapterConfig] = {}
        self.active: str | None = None
        self._layers = list(lora_layers(model).values())  # the wrapped layers, refreshed when adapters are added

    @property
    def names(self) -> list[str]:
        return list(self.configs)

    def add(self, name: str, config: AdapterConfig) -> list[str]:
        """A freshly initialised adapter (B = 0, so the model output is unchanged until it is trained)."""
        if name in self.configs:
            raise KeyError(f"adapter {name!r} is already loaded")
        targets = inject_adapter(self.model, name, config)
        self.configs[name] = config
        self._layers = list(lora_layers(self.model).values())
        self._sync()
        return targets

    def load(self, name: str, path: str | Path) -> AdapterConfig:
        """Load a PEFT-format adapter directory as ``name`` (not activated)."""
        from albumen.llm.adapters.peft_format import read_adapter

        config, tensors = read_adapter(path)
        self.add(name, config)
        try:
            self._assign(name, tensors)
        except Exception:
            self.remove(name)
            raise
        return config

    def save(self, name: str, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write adapter ``name`` in PEFT's format (``dtype``: stored precision)."""
        from albumen.llm.adapters.peft_format import write_adapter

        return write_adapter(path, self.configs[name], self.state_dict(name), dtype)

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """Adapter tensors under PEFT-style module-relative keys (``<module>.lora_A.weight``)."""
        out = {}
        for mod_name, layer in lora_layers(self.model).items():
            if name in layer.adapters:
                for k, v in layer.adapters[name].state_dict().items():
                    out[f"{mod_name}.{k}"] = v
        return out

    def _assign(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        expected = self.state_dict(name)
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"adapter {name!r} does not fit this model: missing {missing[:3]}{'...' if len(missing) > 3 else ''}"
                f", unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
            )
        with torch.no_grad():
            for k, t in tensors.items():
                if expected[k].shape != t.shape:
                    raise ValueError(f"{k}: shape {tuple(t.shape)} in file, {tuple(expected[k].shape)} in model")
                expected[k].copy_(t)

    def remove(self, name: str) -> None:
        for layer in lora_layers(self.model).values():
            if name in layer.adapters:
                layer.remove_adapter(name)
        self.configs.pop(name, None)
        if self.active == name:
            self.active = None

    def activate(self, name: str | None) -> None:
        """Make ``name`` the adapter every wrapped layer uses (None: the bare base model)."""
        if name is not None and name not in self.configs:
            raise KeyError(f"no adapter {name!r}; loaded: {self.names}")
        self.active = name
        self._sync()

    def _sync(self) -> None:
        for layer in self._layers:  # no module-tree walk: a switch is one attribute per layer
            layer.set_active(self.active)

    @contextmanager
    def using(self, name: str | None) -> Iterator[None]:
        """Activate ``name`` for one request and restore the previous choice afterwards."""
        previous = self.active
        self.activate(name)
        try:
            yield
        finally:
            self.activate(previous)

    def merge(self) -> None:
        """Fold the active adapter into the base weights (fast inference; switching unmerges again)."""
        for layer in lora_layers(self.model).values():
            layer.merge()

    def unmerge(self) -> None:
        for layer in lora_layers(self.model).values():
            layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """Bake the active adapter in and put the plain base modules back (export; the registry is emptied)."""
        self.merge()
        for mod_name, layer in lora_layers(self.model).items():
            parent_name, _, child = mod_name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, layer.base)
        self.configs.clear()
        self._layers = []
        self.active = None
        return self.model
