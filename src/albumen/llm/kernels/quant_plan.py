"""The whole decode step of a 4-bit model in one C++ call (``csrc/quant_plan.cpp``): ``QuantDecodePlan``.

The compiled module holds three classes: ``QuantWeight`` (one product's weight in the quantized GEMV's blocked
layout, ``quant_gemv.Q4Layout`` or ``Q8Layout``), ``QuantLayer`` (a decoder layer's norms, products and KV caches)
and ``QuantDecodePlan`` (embedding table, layers, final norm, head, RoPE tables): ``logits(token, pos)``,
``argmax(token, pos)``, ``block_logits(tokens, pos)`` / ``block_argmax`` for 1..8 rows, ``features()``. It shares
the GEMV core (``quant_kernels.h``) with ``quant_gemv`` and the norm / RoPE / attention (``decode_kernels.h``) with
the engine's decode ops, compiled the same way (``-ffp-contract=off``), so its results equal the fused Python step
(``albumen.llm.quant.fused``) bit for bit. ``quant_layout_weight`` wraps a layout. Building a plan from a model is
``albumen.llm.quant.plan``'s job; this module knows layouts and the compiled module, not models.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Union

from albumen.llm.kernels import quant_gemv
from albumen.llm.kernels.build import load_extension

__all__ = ["quant_layout_weight", "quant_plan_module"]

_SOURCE = Path(__file__).resolve().with_name("csrc") / "quant_plan.cpp"


def quant_plan_module() -> ModuleType | None:
    """The compiled module, or None (kernels off, build failed with one warning, or no AVX-512 VNNI)."""
    if quant_gemv.quant_gemv_module() is None:  # the plan runs the same VNNI kernel
        return None
    return load_extension("albumen_quant_plan", [_SOURCE], extra_cflags=("-ffp-contract=off",),
                          depends=[_SOURCE.with_name(h) for h in ("quant_kernels.h", "decode_kernels.h")])


def quant_layout_weight(mod: ModuleType, layout: Union[quant_gemv.Q4Layout, quant_gemv.Q8Layout]) -> Any:
    """A ``QuantWeight`` of the compiled module ``mod`` sharing ``layout``'s tensors (no copy)."""
    if isinstance(layout, quant_gemv.Q8Layout):
        k = layout.blocks.shape[1] // quant_gemv.BLOCK_ROWS
        return mod.QuantWeight(layout.blocks, layout.out_features, k, 32, False, None, layout.scale)
    return mod.QuantWeight(layout.blocks, layout.out_features, layout.in_features, layout.group, layout.has_zero,
                           layout.lut, None)
