"""Adapter checkpoints in Hugging Face PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

PEFT names a tensor ``base_model.model.<module name>.lora_A.weight`` (also ``lora_B.weight`` and, for DoRA,
``lora_magnitude_vector``), without the adapter name. Because Albumen's model keeps Hugging Face's module names, the
same file loads in both. This module knows the file layout and key prefix only; it never touches a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from albumen.llm.adapters.config import AdapterConfig

__all__ = ["CONFIG_FILE", "PEFT_PREFIX", "WEIGHTS_FILE", "read_adapter", "write_adapter"]

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def write_adapter(path: str | Path, config: AdapterConfig, tensors: dict[str, torch.Tensor],
                  dtype: torch.dtype = torch.float32) -> Path:
    """Write ``tensors`` (module-relative keys) and ``config`` to directory ``path``; returns it.

    ``dtype``: the stored precision (``torch.bfloat16`` halves the file; loading casts to the model's dtype, in
    Albumen and in PEFT alike).
    """
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    peft = {PEFT_PREFIX + k: v.detach().to(dtype).contiguous().cpu() for k, v in tensors.items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(peft, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / WEIGHTS_FILE)  # never leave half a file under the real name
    (out / CONFIG_FILE).write_text(json.dumps(config.to_peft(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def read_adapter(path: str | Path) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """(config, tensors with module-relative keys) from a PEFT adapter directory."""
    from safetensors.torch import load_file

    src = Path(path)
    cfg_file, w_file = src / CONFIG_FILE, src / WEIGHTS_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{src}: no {CONFIG_FILE} (not a PEFT adapter directory?)")
    if not w_file.is_file():
        if (src / "adapter_model.bin").is_file():
            raise ValueError(f"{src}: only safetensors adapters are read; convert adapter_model.bin first")
        raise FileNotFoundError(f"{src}: no {WEIGHTS_FILE}")
    try:
        config = AdapterConfig.from_peft(json.loads(cfg_file.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{cfg_file}: not a valid PEFT LoRA config ({exc})") from exc
    tensors = {}
    for k, v in load_file(str(w_file)).items():
        if not k.startswith(PEFT_PREFIX):
            raise ValueError(f"{w_file}: unexpected tensor name {k!r} (expected the {PEFT_PREFIX!r} prefix)")
        k = k[len(PEFT_PREFIX) :]
        # Some PEFT versions keep the adapter name (``lora_A.default.weight``); drop it.
        k = k.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
        k = k.replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector")
        tensors[k] = v
    return config, tensors
