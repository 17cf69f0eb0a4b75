"""Hand-written CPU kernels for decoding, JIT-built on first use (``python -m albumen.llm.kernels build`` prebuilds).

``load_extension`` (build.py) is the one way to compile a kernel; ``ALBUMEN_KERNELS=0`` switches every kernel off.
``dense_linear`` (dense.py) is the fp32/bf16 matrix-vector product used by the decoder. Imports are lazy: importing
this package compiles nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KernelBuildWarning", "build_root", "dense_available", "dense_linear", "kernels_enabled", "load_extension"]

_EXPORTS = {
    "KernelBuildWarning": "albumen.llm.kernels.build",
    "build_root": "albumen.llm.kernels.build",
    "kernels_enabled": "albumen.llm.kernels.build",
    "load_extension": "albumen.llm.kernels.build",
    "dense_available": "albumen.llm.kernels.dense",
    "dense_linear": "albumen.llm.kernels.dense",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'albumen.llm.kernels' has no attribute {name!r}")
