"""``load_model``: a preset name, a GGUF file or a HF safetensors folder -> (Transformer, Tokenizer).

GGUF files (presets included) are converted once into the memory-mapped cache under ``<models_dir>/cache`` and then
loaded from there like any HF folder. This module only wires presets, weights and tokenizer together.
"""

from __future__ import annotations

from pathlib import Path

import torch

from albumen.llm.model import Transformer
from albumen.llm.presets import PRESETS, resolve_preset
from albumen.llm.tokenizer import HFTokenizer
from albumen.llm.weights.cache import cached_dtype_variant, cached_folder_for_gguf
from albumen.llm.weights.safetensors_io import load_folder

__all__ = ["DTYPES", "default_models_dir", "load_model", "parse_dtype", "resolve_folder"]

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unsupported dtype {name!r}; use float32 or bfloat16") from None


def default_models_dir() -> Path:
    from albumen.config import default_data_dir

    return default_data_dir() / "models"


def resolve_folder(name_or_path: str | Path, models_dir: Path | None = None, install: bool = True) -> Path:
    """The HF-style folder to load for a preset name, a ``.gguf`` file or a folder (converting GGUF once)."""
    models_dir = Path(models_dir) if models_dir else default_models_dir()
    key = str(name_or_path)
    if key.lower() in PRESETS:
        return cached_folder_for_gguf(resolve_preset(key, models_dir, install=install), models_dir / "cache")
    path = Path(key).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return cached_folder_for_gguf(path, models_dir / "cache")
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise FileNotFoundError(f"{path}: a model folder needs config.json and *.safetensors")
    if path.exists():
        raise ValueError(f"{path}: not a .gguf file or a model folder")
    raise FileNotFoundError(f"{key!r} is neither a preset ({', '.join(PRESETS)}) nor an existing file or folder")


def load_model(
    name_or_path: str | Path,
    dtype: torch.dtype | str = torch.float32,
    models_dir: Path | None = None,
    install: bool = True,
) -> tuple[Transformer, HFTokenizer]:
    """Load a model and its tokenizer (eval mode, no caches set up yet).

    A quantized checkpoint folder (``quantization.json``, see ``albumen.llm.quant.checkpoint``) loads with its
    quantized modules in place; ``dtype`` then applies to the float parts (norms, biases, activations).
    """
    folder = resolve_folder(name_or_path, models_dir, install)
    dtype = parse_dtype(dtype)
    cache_root = (Path(models_dir) if models_dir else default_models_dir()) / "cache"
    if dtype != torch.float32 and folder.parent == cache_root:  # converted GGUFs are fp32: keep a cast copy once
        folder = cached_dtype_variant(folder, dtype)
    if (folder / "quantization.json").is_file():
        from albumen.llm.quant.checkpoint import load_quantized

        model = load_quantized(folder, dtype)
    else:
        model = load_folder(folder, dtype)
    return model, HFTokenizer.from_folder(folder)
