"""Weight compression for the LLM engine: int8 / int4 affine quantization, k-means palettization, mixed precision,
quantized checkpoints and ONNX export.

Import the pieces from here; each submodule says what it knows. Nothing here runs at import time.
"""

from albumen.llm.quant.apply import (
    QuantResult,
    model_bits_per_weight,
    quantize_model,
    quantized_modules,
    reference_kernels,
    set_kernel,
)
from albumen.llm.quant.config import PRESETS, LayerScheme, QuantConfig, parse_scheme
from albumen.llm.quant.embedding import QuantizedEmbedding
from albumen.llm.quant.linear import Int4Linear, Int8Linear, PalettizedLinear, QuantizedLinear

__all__ = [
    "PRESETS",
    "Int4Linear",
    "Int8Linear",
    "LayerScheme",
    "PalettizedLinear",
    "QuantConfig",
    "QuantResult",
    "QuantizedEmbedding",
    "QuantizedLinear",
    "model_bits_per_weight",
    "parse_scheme",
    "quantize_model",
    "quantized_modules",
    "reference_kernels",
    "set_kernel",
]
