"""Batch invariance: speculative greedy output equals plain greedy output only if the target scores a token the
same way alone (plain decode) and inside a verification block of k + 1 rows.

Float weights and weight-only kernels (int4pack, int8pack, the dequant path) compute each row on its own. The fbgemm
int8 kernel quantizes the *activations* dynamically with one scale per call, so a row's logits depend on the other
rows of the block; near-ties can then flip. ``batch_invariant_kernels`` switches such layers to the weight-only
int8pack kernel (measured on the CPU: slower than fbgemm at one row). Blocks stay at most
``QuantizedLinear.kernel_max_rows`` rows when ``k_max + 1`` does not exceed it (the default k_max = 7 with 8 rows).

This module knows the quantized modules' ``kernel`` switch and nothing else about quantization.
"""

from __future__ import annotations

from torch import nn

__all__ = ["batch_dependent_layers", "batch_invariant_kernels"]


def batch_dependent_layers(model: nn.Module) -> list[str]:
    """Names of quantized layers whose current kernel quantizes activations per call (fbgemm)."""
    from albumen.llm.quant import quantized_modules

    return [n for n, m in quantized_modules(model).items() if "fbgemm" in m.kernel_name()]


def batch_invariant_kernels(model: nn.Module) -> list[str]:
    """Switch fbgemm layers to int8pack (row-independent); returns the names switched (none if unavailable)."""
    from albumen.llm.quant import quantized_modules

    switched = []
    for name, m in quantized_modules(model).items():
        if "fbgemm" in m.kernel_name():
            m.kernel = "int8pack"  # falls back to the (row-independent) dequant path if int8pack is missing
            switched.append(name)
    return switched
