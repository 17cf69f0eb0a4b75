"""ONNX export of a quantized tiny model: onnxruntime's greedy output equals the engine's, file stays compressed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.quant import QuantConfig, quantize_model, reference_kernels

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _engine_greedy(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    model.setup_caches(1, 64)
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), torch.arange(len(prompt)))
        out = [int(logits[0, -1].argmax())]
        for i in range(n - 1):
            logits = model(torch.tensor([[out[-1]]]), torch.tensor([len(prompt) + i]))
            out.append(int(logits[0, -1].argmax()))
    model.clear_caches()
    return out


@pytest.mark.parametrize(("scheme", "arch"), [("int4-g32-all", "llama"), ("int8", "qwen2"), ("pal3-gc16", "llama")])
def test_onnx_greedy_matches_engine(tmp_path: Path, scheme: str, arch: str) -> None:
    from albumen.llm.quant.export import OnnxLM, export_onnx
    from albumen.llm.testing import tiny_model

    model = tiny_model(arch=arch, dim=64, seed=3)
    float_bytes = sum(p.numel() * 4 for p in model.parameters())  # a tied table counted once
    quantize_model(model, QuantConfig.from_scheme(scheme))
    prompt = [72, 101, 108, 108, 111, 32, 119]
    want = _engine_greedy(model, prompt, 12)
    path = export_onnx(model, tmp_path / "m.onnx", window=32)
    if scheme == "int4-g32-all":  # codes stay packed in the file: no float copy of any weight
        import onnx

        stored = sum(t.ByteSize() for t in onnx.load(str(path)).graph.initializer)
        assert stored < 0.2 * float_bytes, stored / float_bytes
    lm = OnnxLM(path)
    assert lm.greedy(prompt, 12) == want
    # logits agree closely with the engine's dequant path (the graph's math), not only the argmax
    with torch.no_grad(), reference_kernels(model):
        ref = model(torch.tensor([prompt]))[0]
    assert torch.allclose(lm.logits(prompt), ref, atol=2e-3, rtol=1e-3)

