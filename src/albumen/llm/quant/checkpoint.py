"""Quantized checkpoints: ``model.safetensors`` (compressed buffers + float norms) + ``quantization.json``.

A quantized folder is an engine model folder (``config.json``, tokenizer files) whose weights file holds the
quantized buffers (``...q_proj.qweight``, ``.scale``, ``.lut`` ...) and whose ``quantization.json`` says which module
is which class and scheme, and which embedding reads a tied head. Loading builds the model on the meta device, swaps
in empty quantized modules and assigns the memory-mapped tensors: no float weights are ever materialised, so a
load costs about as much as reading the file. Kernel layouts are packed on first use.

This module knows files and module names; it knows nothing about kernels or the quantization math.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from albumen.llm.quant.apply import quantized_modules
from albumen.llm.quant.config import LayerScheme, QuantConfig
from albumen.llm.quant.embedding import QuantizedEmbedding
from albumen.llm.quant.fused import enable_fused_decode
from albumen.llm.quant.linear import QuantizedLinear, quantized_linear_class

__all__ = [
    "FORMAT",
    "QUANT_FILE",
    "WEIGHTS_FILE",
    "copy_model_files",
    "is_quantized_folder",
    "load_quantized",
    "load_quantized_into",
    "save_quantized",
]

FORMAT = "albumen-quant"
VERSION = 1
QUANT_FILE = "quantization.json"
WEIGHTS_FILE = "model.safetensors"


def is_quantized_folder(folder: str | Path) -> bool:
    return (Path(folder) / QUANT_FILE).is_file()


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _manifest(model: nn.Module, config: QuantConfig | None) -> dict[str, Any]:
    linears: dict[str, Any] = {}
    embeddings: dict[str, Any] = {}
    names = {id(m): n for n, m in model.named_modules()}
    for name, mod in model.named_modules():
        if isinstance(mod, QuantizedEmbedding):
            entry: dict[str, Any] = {"dtype": str(mod.weight.dtype).removeprefix("torch.")}
            if mod.tied:
                entry["tied_to"] = names[id(mod.source)]
            embeddings[name] = entry
    for name, mod in quantized_modules(model).items():
        linears[name] = {
            "scheme": mod.scheme.to_dict(),
            "in_features": mod.in_features,
            "out_features": mod.out_features,
            "bias": mod.bias is not None,
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict() if config else None,
        "linears": linears,
        "embeddings": embeddings,
    }


def save_quantized(
    model: nn.Module, folder: str | Path, config: QuantConfig | None = None, model_config: dict[str, Any] | None = None
) -> Path:
    """Write ``folder/model.safetensors`` + ``folder/quantization.json`` (+ ``config.json`` when given).

    Float tensors shared by two modules (a tied head left in float) are written once, as HF does.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for key, t in model.state_dict().items():
        if t.numel() and t.data_ptr() in seen:
            continue  # tied float weight, keep the first name
        seen[t.data_ptr()] = key
        state[key] = t.detach().contiguous()
    manifest = _manifest(model, config)
    manifest["aliases"] = {k: seen[v.data_ptr()] for k, v in model.state_dict().items()
                           if v.numel() and seen.get(v.data_ptr()) not in (None, k)}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    (folder / QUANT_FILE).write_text(json.dumps(manifest, indent=1))
    if model_config is not None:
        (folder / "config.json").write_text(json.dumps(model_config, indent=1))
    return folder


def copy_model_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy everything of a model folder except weights (config, tokenizer, chat template) into ``dst``."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted(src.iterdir()):
        if p.is_file() and p.suffix not in (".safetensors", ".bin", ".gguf", ".pt") and p.name != QUANT_FILE:
            shutil.copy2(p, dst / p.name)
            copied.append(p.name)
    return copied


def load_quantized_into(skeleton: nn.Module, folder: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load a quantized folder into ``skeleton`` (ideally built on the meta device); returns it in eval mode.

    The skeleton's float ``nn.Linear`` / ``nn.Embedding`` modules named in the manifest are replaced by empty
    quantized modules; then every tensor is assigned from the memory-mapped file (strictly: a missing or extra
    key is an error naming it). Float tensors are cast to ``dtype``, and token embeddings come out in ``dtype``, so
    the whole forward runs in it (bf16: no casts around the bf16 kernels).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = json.loads((folder / QUANT_FILE).read_text())
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{folder}: not an {FORMAT} v{VERSION} checkpoint")
    made: dict[str, QuantizedLinear] = {}
    for name, entry in manifest["linears"].items():
        scheme = LayerScheme.from_dict(entry["scheme"])
        cls = quantized_linear_class(scheme)
        with torch.device("meta"):
            mod = cls.empty(entry["in_features"], entry["out_features"], scheme, entry["bias"])
        made[name] = mod
        if not name.endswith(".table"):
            _set_module(skeleton, name, mod)
    for name, entry in manifest["embeddings"].items():
        edtype = dtype  # the activation dtype the caller asked for, whatever the model was quantized in
        tied = entry.get("tied_to")
        table = made[tied] if tied else made[f"{name}.table"]
        _set_module(skeleton, name, QuantizedEmbedding(table, edtype, tied=bool(tied)))
    state = load_file(str(folder / WEIGHTS_FILE))
    for alias, source in manifest.get("aliases", {}).items():
        state[alias] = state[source]
    state = {k: (v.to(dtype) if v.is_floating_point() and v.dtype in (torch.float32, torch.bfloat16, torch.float16)
                 and not _is_quant_buffer(k, made) else v) for k, v in state.items()}
    missing, unexpected = skeleton.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{folder}: checkpoint does not match the model; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for mod in skeleton.modules():
        if isinstance(mod, QuantizedEmbedding) and mod.weight.is_meta:
            mod.weight = torch.empty(0, dtype=mod.weight.dtype)
    leftover = [n for n, t in list(skeleton.named_parameters()) + list(skeleton.named_buffers()) if t.is_meta]
    if leftover:
        raise ValueError(f"{folder}: tensors left unloaded: {leftover[:5]}")
    enable_fused_decode(skeleton)  # int4 decoder layers: one fused decode step each (quant/fused.py)
    return skeleton.eval()


def _is_quant_buffer(key: str, made: dict[str, QuantizedLinear]) -> bool:
    owner = key.rpartition(".")[0]
    return owner in made and not key.endswith(".bias")


def load_quantized(folder: str | Path, dtype: torch.dtype = torch.float32,
                   build: Callable[[dict[str, Any]], nn.Module] | None = None) -> nn.Module:
    """Load an engine ``Transformer`` (or what ``build(config_json)`` makes) from a quantized folder."""
    folder = Path(folder)
    if not is_quantized_folder(folder):
        raise FileNotFoundError(f"{folder}: no {QUANT_FILE}; not a quantized checkpoint")
    cfg = json.loads((folder / "config.json").read_text())
    if build is None:
        from albumen.llm.model import ModelArgs, Transformer

        def build(c: dict[str, Any]) -> nn.Module:
            return Transformer(ModelArgs.from_hf_config(c))

    with torch.device("meta"):
        skeleton = build(cfg)
    return load_quantized_into(skeleton, folder, dtype)
