"""Hugging Face safetensors folders: load one into a ``Transformer`` (memory-mapped) and write one.

A folder holds ``config.json``, ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``),
``tokenizer.json`` and usually ``tokenizer_config.json``. The cache (cache.py) writes exactly this layout, so GGUF
models and HF folders take the same fast path. Tensors are mapped from the file, not read: with a matching dtype the
model's parameters share pages with the OS file cache, which is why a second load takes well under a second.
This module knows nothing about GGUF, tokenizers or generation.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from albumen.llm.model import ModelArgs, Transformer

__all__ = ["load_folder", "load_state_dict_mmap", "save_folder", "weight_files"]

_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a HF folder (single file or shards)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights")
    return found


def load_state_dict_mmap(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of one safetensors file as views of a private memory map (copy-on-write; nothing is read yet)."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    size = path.stat().st_size
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    base = 8 + header_len
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        flat = torch.empty(0, dtype=torch.uint8).set_(storage, base + start, (end - start,))
        out[name] = flat.view(dtype).view(info["shape"])
    return out


def load_folder(folder: str | Path, dtype: torch.dtype = torch.float32) -> Transformer:
    """Build a ``Transformer`` from a HF folder; tensors already in ``dtype`` stay memory-mapped."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    args = ModelArgs.from_hf_config(json.loads(cfg_path.read_text()))
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        state.update(load_state_dict_mmap(path))
    if args.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    state = {k: (v if v.dtype == dtype else v.to(dtype)) for k, v in state.items()}
    with torch.device("meta"):
        model = Transformer(args)
    expected = {k for k in model.state_dict() if not (args.tie_word_embeddings and k == "lm_head.weight")}
    missing, unexpected = expected - state.keys(), state.keys() - expected
    unexpected = {k for k in unexpected if not k.endswith("rotary_emb.inv_freq")}
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match the architecture; missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    model.load_state_dict({k: state[k] for k in expected}, strict=False, assign=True)
    model.tie_weights()
    return model.eval()


def save_folder(
    folder: str | Path, args: ModelArgs, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``config.json`` and ``model.safetensors`` (the tied head is stored once, as HF does)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if args.tie_word_embeddings:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), metadata=metadata)
    (folder / "config.json").write_text(json.dumps(args.to_hf_config(), indent=1))
