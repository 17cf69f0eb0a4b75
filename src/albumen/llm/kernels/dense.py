"""Dense matrix-vector kernel for decoding: ``y = x @ W^T (+ bias)`` for 1..8 activation rows, fp32 or bf16.

``dense_linear`` runs the AVX-512 kernel in ``csrc/dense.cpp`` when it is built and applicable (CPU, same dtype for x,
W and bias, fp32 or bf16, at most 8 rows, no autograd), and ``F.linear`` otherwise, so it is always correct to call.
This module knows nothing about models; model.py decides where the kernel is used.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from albumen.llm.kernels.build import kernels_enabled, load_extension

__all__ = ["MAX_ROWS", "dense_available", "dense_linear", "dense_module", "dense_supports"]

MAX_ROWS = 8  # speculative verification runs k + 1 <= 8 rows
_SOURCE = Path(__file__).with_name("csrc") / "dense.cpp"


def dense_module() -> ModuleType | None:
    """The compiled kernel module, or None (kernels off, or the build failed: one warning)."""
    return load_extension("albumen_dense", [_SOURCE])


def dense_available() -> bool:
    return kernels_enabled() and dense_module() is not None


def dense_supports(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether the kernel handles this call (the caller falls back to ``F.linear`` otherwise)."""
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return (
        x.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and x.dtype is weight.dtype
        and (bias is None or bias.dtype is weight.dtype)
        and 1 <= rows <= MAX_ROWS
        and weight.dim() == 2
        and weight.is_contiguous()
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                              (bias is not None and bias.requires_grad)))
    )


def dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for x (..., K) and weight (N, K); the kernel when it applies.

    Returns:
        (..., N) in x's dtype.
    """
    mod = dense_module() if dense_supports(x, weight, bias) else None
    if mod is None:
        return F.linear(x, weight, bias)
    x2 = x.reshape(-1, x.shape[-1]).contiguous()  # (M, K)
    y = mod.linear(x2, weight, None if bias is None else bias.contiguous())  # (M, N)
    return y.view(*x.shape[:-1], weight.shape[0])
