"""Fused small ops for one decode step (``csrc/decode_ops.cpp``): RMSNorm and single-query grouped attention.

At batch 1, a layer's norms and attention are ~60 tiny ATen calls whose dispatch costs more than their arithmetic;
these two C++ functions replace them. They compute in fp32 like the PyTorch path (RMSNorm with HF's cast order,
so fp32 results match to rounding). ``decode_ops_module()`` is None when kernels are off or the build failed; model.py
then keeps its PyTorch code. This module knows nothing about models.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from albumen.llm.kernels.build import load_extension

__all__ = ["decode_ops_module"]

_SOURCE = Path(__file__).resolve().with_name("csrc") / "decode_ops.cpp"


def decode_ops_module() -> ModuleType | None:
    """The compiled module (``rms_norm(x, w, eps)``, ``decode_attention(q, k, v)``), or None."""
    return load_extension("albumen_decode_ops", [_SOURCE], depends=[_SOURCE.with_name("dense_kernels.h")])
