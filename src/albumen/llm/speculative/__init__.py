"""Speculative decoding: lossless faster generation with a drafter (a smaller model, prompt lookup, or a trained
head on the target's hidden states) and the exact acceptance rule.

``speculative_generate(target, tokenizer, drafter, prompt, cfg)`` is the text-level entry point;
``speculative_decode`` the token-level loop; ``make_drafter`` builds a drafter from a CLI spec
(``lookup``, ``head``, ``head:PATH``, ``model:NAME``). Nothing heavy is imported at package import.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Draft",
    "Drafter",
    "HeadDrafter",
    "LookupDrafter",
    "ModelDrafter",
    "SpeculativeConfig",
    "SpeculativeStats",
    "make_drafter",
    "speculative_decode",
    "speculative_generate",
]

_EXPORTS = {
    "Draft": "albumen.llm.speculative.drafters.base",
    "Drafter": "albumen.llm.speculative.drafters.base",
    "HeadDrafter": "albumen.llm.speculative.drafters.head",
    "LookupDrafter": "albumen.llm.speculative.drafters.lookup",
    "ModelDrafter": "albumen.llm.speculative.drafters.model",
    "SpeculativeConfig": "albumen.llm.speculative.adaptive",
    "SpeculativeStats": "albumen.llm.speculative.decode",
    "make_drafter": "albumen.llm.speculative.factory",
    "speculative_decode": "albumen.llm.speculative.decode",
    "speculative_generate": "albumen.llm.speculative.decode",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'albumen.llm.speculative' has no attribute {name!r}")
