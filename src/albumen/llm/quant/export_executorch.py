"""Export a (quantized) causal LM to an ExecuTorch program (``.pte``, XNNPACK delegate) and decode it greedily.

Same graph as the ONNX export (``export.py``): the fixed-window whole-sequence forward ``input_ids (1, T) -> logits
(1, T, V)`` traced through the dequant path of every quantized module, lowered with ``to_edge_transform_and_lower``
and the XNNPACK partitioner, run by ExecuTorch's Python runtime. ``executorch`` is optional
(requirements/nodeps.txt); importing this module does not need it. This module knows the export and the runtime
call, nothing about the math.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from albumen.llm.quant.apply import reference_kernels
from albumen.llm.quant.export import _WholeSequence, greedy_window

__all__ = ["ExecuTorchLM", "executorch_available", "export_executorch"]


def executorch_available() -> bool:
    try:
        import executorch.exir  # noqa: F401
        import executorch.runtime  # noqa: F401
    except ImportError:
        return False
    return True


def export_executorch(model: torch.nn.Module, path: str | Path, window: int = 128) -> Path:
    """Write ``model`` to ``path`` as an ExecuTorch program taking exactly ``window`` tokens (right-padded)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "clear_caches"):
        model.clear_caches()
    wrapper = _WholeSequence(model).eval()
    with reference_kernels(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(wrapper, (torch.zeros(1, window, dtype=torch.long),))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(lowered.buffer)
    return path


class ExecuTorchLM:
    """An ExecuTorch method over an exported program, with greedy decoding (recomputes the window each step)."""

    def __init__(self, path: str | Path, window: int) -> None:
        from executorch.runtime import Runtime

        self.window = window
        self.method: Any = Runtime.get().load_program(str(path)).load_method("forward")

    def logits(self, ids: list[int]) -> Tensor:
        """(T,) ids -> (T, V) float32 logits."""
        n = len(ids)
        if n > self.window:
            raise ValueError(f"{n} tokens do not fit the exported window of {self.window}")
        padded = torch.tensor([list(ids) + [0] * (self.window - n)], dtype=torch.long)
        return self.method.execute([padded])[0][0, :n]

    def greedy(self, prompt: list[int], max_new_tokens: int, eos_ids: tuple[int, ...] = ()) -> list[int]:
        return greedy_window(self.logits, prompt, max_new_tokens, eos_ids)
