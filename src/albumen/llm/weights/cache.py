"""The one-time conversion of a GGUF file into a fast-loading HF-style folder (memory-mapped safetensors).

The cache key is the GGUF file's name, size and modification time plus a format version, so a changed file or a
changed converter makes a new entry. A conversion writes into a temporary folder and renames it into place, so an
interrupted run never leaves a half-written cache. This module knows nothing about presets or generation.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from albumen.llm.weights.gguf import read_gguf, write_tokenizer_files
from albumen.llm.weights.safetensors_io import save_folder

__all__ = ["CACHE_VERSION", "cache_key", "cached_folder_for_gguf"]

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
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache_root))
    try:
        state = dict(contents.tensors())
        save_folder(tmp, contents.args, state, metadata={"source": gguf_path.name, "cache_version": CACHE_VERSION})
        write_tokenizer_files(contents, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: keep theirs
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
