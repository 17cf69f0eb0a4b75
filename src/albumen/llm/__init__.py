"""The on-device LLM engine. Knows nothing about photos.

Public entry points (imported lazily so that ``import albumen.llm`` stays cheap):
``load_model``, ``ModelArgs``, ``Transformer``, ``SamplingConfig``, ``generate``, ``generate_json``, ``Tokenizer``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelArgs", "SamplingConfig", "Tokenizer", "Transformer", "generate", "generate_json", "load_model"]

_EXPORTS = {
    "ModelArgs": "albumen.llm.model",
    "Transformer": "albumen.llm.model",
    "Tokenizer": "albumen.llm.tokenizer",
    "load_model": "albumen.llm.loading",
    "SamplingConfig": "albumen.llm.sampling",
    "generate": "albumen.llm.generate",
    "generate_json": "albumen.llm.guided",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'albumen.llm' has no attribute {name!r}")
