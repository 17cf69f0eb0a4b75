"""Export a (quantized) causal LM to ONNX and decode it greedily with onnxruntime.

The exported graph is the whole-sequence forward ``input_ids (1, T) -> logits (1, T, V)`` for a fixed window T,
exported (``torch.export`` + onnxscript) through the dequant path of every quantized module (``reference_kernels``):
the int8 / packed int4 codes and the LUTs are stored as integer initializers and dequantized inside the graph, so
the file stays compressed and any ONNX runtime can run it. Constant folding is off for the same reason. This module
knows the export and the ORT session; it knows nothing about the quantization math.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from albumen.llm.quant.apply import reference_kernels

__all__ = ["OnnxLM", "export_onnx", "greedy_window"]

OPSET = 18


class _WholeSequence(nn.Module):
    """ids (1, T) -> logits (1, T, V) with no KV cache."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.model(input_ids)


def _export(wrapper: nn.Module, example: Tensor, dynamic: bool, max_len: int) -> Any:
    shapes = {"input_ids": {1: torch.export.Dim("seq", min=2, max=max_len)}} if dynamic else None
    return torch.onnx.export(
        wrapper, (example,), input_names=["input_ids"], output_names=["logits"], dynamic_shapes=shapes,
        opset_version=OPSET, optimize=False, dynamo=True, verbose=False,
    )


def export_onnx(model: nn.Module, path: str | Path, window: int = 128, dynamic: bool = False) -> Path:
    """Write ``model`` (engine ``Transformer`` or any ``ids -> logits`` module) to ``path`` as ONNX.

    KV caches are dropped first (``clear_caches``) so the graph is the plain causal forward. By default the graph
    takes exactly ``window`` tokens (``OnnxLM`` right-pads; the model is causal, so padding leaves the logits of
    the real positions unchanged). ``dynamic=True`` tries a dynamic sequence axis (up to ``window``) first; the
    engine's attention passes ``is_causal=T > 1`` to SDPA, which ``torch.export`` cannot trace symbolically, so
    for the engine's model that attempt fails and costs a few seconds before the fixed-window export.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "clear_caches"):
        model.clear_caches()
    wrapper = _WholeSequence(model).eval()
    with reference_kernels(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = None
        if dynamic:
            try:
                program = _export(wrapper, torch.zeros(1, 8, dtype=torch.long), dynamic=True, max_len=window)
            except Exception:  # noqa: BLE001 - torch.export rejects data-dependent Python control flow in the model
                program = None
        if program is None:
            program = _export(wrapper, torch.zeros(1, window, dtype=torch.long), dynamic=False, max_len=window)
        _strip_debug_metadata(program)
        program.save(str(path))
    return path


def _strip_debug_metadata(program: Any) -> None:
    """Drop the per-node stack traces and FX names the exporter records: they are most of a small model's file."""
    import onnx_ir as ir

    for node in ir.traversal.RecursiveGraphIterator(program.model.graph):
        node.metadata_props.clear()


def greedy_window(logits: Callable[[list[int]], Tensor], prompt: list[int], max_new_tokens: int,
                  eos_ids: tuple[int, ...] = ()) -> list[int]:
    """Greedy decoding over an exported whole-sequence graph (no KV cache): re-run the window for every token."""
    ids = list(prompt)
    new: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(logits(ids)[-1].argmax())
        new.append(nxt)
        ids.append(nxt)
        if nxt in eos_ids:
            break
    return new


class OnnxLM:
    """An onnxruntime session over an exported model, with greedy decoding (recomputes the prefix each step)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session: Any = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        dim = self.session.get_inputs()[0].shape[1]
        self.window: int | None = dim if isinstance(dim, int) else None  # fixed-length graph: pad to this

    def logits(self, ids: list[int]) -> Tensor:
        """(T,) ids -> (T, V) float32 logits."""
        import numpy as np

        n = len(ids)
        if self.window is not None:
            if n > self.window:
                raise ValueError(f"{n} tokens do not fit the exported window of {self.window}")
            ids = list(ids) + [0] * (self.window - n)
        out = self.session.run(["logits"], {"input_ids": np.asarray([ids], dtype=np.int64)})[0]
        return torch.from_numpy(out[0, :n])

    def greedy(self, prompt: list[int], max_new_tokens: int, eos_ids: tuple[int, ...] = ()) -> list[int]:
        return greedy_window(self.logits, prompt, max_new_tokens, eos_ids)
