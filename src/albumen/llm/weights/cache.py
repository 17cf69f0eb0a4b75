"""The one-time conversion of a GGUF file into a fast-loading HF-style folder (memory-mapped safetensors).

The cache key is the GGUF file's name, size and modification time plus a format version, so a changed file or a
changed converter makes a new entry. A conversion writes into a temporary folder and renames it into place, so an
interrupted run never leaves a half-written cache. This module knows nothing about presets or generation.
"""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from albumen.llm.weights.gguf import read_gguf, write_tokenizer_files
from albumen.llm.weights.safetensors_io import load_state_dict_mmap, save_folder, weight_files

__all__ = ["CACHE_VERSION", "cache_key", "cached_dtype_variant", "cached_folder_for_gguf"]

CACHE_VERSION = "1"


def cache_key(gguf_path: Path) -> str:
    st = gguf_path.stat()
    raw = f"{gguf_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CACHE_VERSION}"
    return f"{gguf_path.stem}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def cached_folder_for_gguf(gguf_path: str | Path, cache_root: str | Path) -> Path:
    """The cache folder for ``gguf_path`` under ``cache_root``, converting (dequantizing to fp32) on first use."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    cache_root = Path(cache_root)
    target = cache_root / cache_key(gguf_path)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    contents = read_gguf(gguf_path)
    cache_root.mkdir(parents=True, exist_ok=True)

    def fill(tmp: Path) -> None:
        state = dict(contents.tensors())
        save_folder(tmp, contents.args, state, metadata={"source": gguf_path.name, "cache_version": CACHE_VERSION})
        write_tokenizer_files(contents, tmp)

    _publish(cache_root, target, fill)
    return target


def cached_dtype_variant(folder: str | Path, dtype: torch.dtype) -> Path:
    """A sibling cache folder ``<folder>-<dtype>`` holding ``folder``'s weights cast to ``dtype`` (made once).

    Casting 135M parameters on every load costs seconds; a mapped file in the right dtype costs nothing.
    Only for folders inside the cache (the engine owns them); other files are copied alongside.
    """
    import json

    from albumen.llm.model import ModelArgs

    folder = Path(folder)
    name = str(dtype).removeprefix("torch.")
    target = folder.with_name(f"{folder.name}-{name}")
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        state.update(load_state_dict_mmap(path))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    args = ModelArgs.from_hf_config(json.loads((folder / "config.json").read_text()))

    def fill(tmp: Path) -> None:
        save_folder(tmp, args, state, metadata={"source": folder.name, "cache_version": CACHE_VERSION})
        for p in folder.iterdir():
            if p.is_file() and p.suffix != ".safetensors" and p.name not in ("config.json",):
                shutil.copy2(p, tmp / p.name)

    _publish(folder.parent, target, fill)
    return target


def _publish(parent: Path, target: Path, fill: Callable[[Path], None]) -> None:
    """Write a cache folder in a private temporary folder, then rename it into place (never half-written)."""
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: keep theirs
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
