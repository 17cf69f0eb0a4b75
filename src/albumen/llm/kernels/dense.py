"""Dense matrix-vector kernel for decoding: ``y = x @ W^T (+ bias)`` for 1..8 activation rows, fp32 or bf16.

``dense_linear`` runs the AVX-512 kernel in ``csrc/dense.cpp`` when it is built and applicable (CPU, same dtype for x,
W and bias, fp32 or bf16, at most 8 rows, contiguous W, no autograd), and ``F.linear`` otherwise, so it is always
correct to call. The module's ``try_linear(x, w, b)`` makes that decision in C++ and returns None when it declines;
``linear(x2d, w, b)`` raises a clear error instead.
This module knows nothing about models; model.py decides where the kernel is used.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from albumen.llm.kernels.build import kernels_enabled, load_extension

__all__ = ["MAX_ROWS", "dense_available", "dense_linear", "dense_module"]

MAX_ROWS = 8  # speculative verification runs k + 1 <= 8 rows
_SOURCE = Path(__file__).resolve().with_name("csrc") / "dense.cpp"


def dense_module() -> ModuleType | None:
    """The compiled kernel module, or None (kernels off, or the build failed: one warning)."""
    return load_extension("albumen_dense", [_SOURCE], depends=[_SOURCE.with_name("dense_kernels.h"),
                                                                     _SOURCE.with_name("packed_kernels.h")])


def dense_available() -> bool:
    return kernels_enabled() and dense_module() is not None


def dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x (..., K) and weight (N, K); the kernel when it applies.

    Returns:
        (..., N) in x's dtype.
    """
    mod = dense_module()
    y = mod.try_linear(x, weight, bias) if mod is not None else None  # None: not a case the kernel handles
    return F.linear(x, weight, bias) if y is None else y
