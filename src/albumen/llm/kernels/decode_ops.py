"""Fused small ops for one decode step (``csrc/decode_ops.cpp``): RMSNorm, RoPE, single-query grouped attention,
one decoder layer per call, and ``DecodePlan``, the whole single-token step of a model in one call.

At batch 1, a layer's norms and attention are ~60 tiny ATen calls whose dispatch costs more than their arithmetic;
these C++ functions replace them. They compute in fp32 like the PyTorch path (RMSNorm with HF's cast order, so fp32
results match to rounding). ``decode_ops_module()`` is None when kernels are off or the build failed; model.py then
keeps its PyTorch code. This module knows nothing about models.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from albumen.llm.kernels.build import load_extension

__all__ = ["decode_ops_module"]

_SOURCE = Path(__file__).resolve().with_name("csrc") / "decode_ops.cpp"


def decode_ops_module() -> ModuleType | None:
    """The compiled module (``rms_norm``, ``rope``, ``decode_attention``, ``decode_layer``, ``DecodePlan``), or None."""
    # No FMA contraction: the rounding of each product must not depend on how a function was inlined, so that the
    # whole-step plan, the fused layer and the single ops give bit-identical results (the dense kernel's FMAs are
    # explicit intrinsics and stay).
    return load_extension("albumen_decode_ops", [_SOURCE], extra_cflags=("-ffp-contract=off",),
                          depends=[_SOURCE.with_name("dense_kernels.h"), _SOURCE.with_name("decode_kernels.h"),
                                   _SOURCE.with_name("packed_kernels.h")])
