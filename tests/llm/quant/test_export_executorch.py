"""ExecuTorch export of a quantized tiny model: the .pte program's greedy output equals the engine's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.quant import QuantConfig, quantize_model, reference_kernels

pytest.importorskip("executorch.exir")


def test_executorch_greedy_matches_engine(tmp_path: Path) -> None:
    from albumen.llm.quant.export_executorch import ExecuTorchLM, export_executorch
    from albumen.llm.testing import tiny_model

    model = tiny_model(dim=64, seed=3)
    quantize_model(model, QuantConfig.from_scheme("int4-g32"))
    prompt = [72, 101, 108, 108, 111, 32, 119]
    model.setup_caches(1, 64)
    want: list[int] = []
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), torch.arange(len(prompt)))
        for i in range(10):
            want.append(int(logits[0, -1].argmax()))
            logits = model(torch.tensor([[want[-1]]]), torch.tensor([len(prompt) + i]))
    model.clear_caches()
    lm = ExecuTorchLM(export_executorch(model, tmp_path / "m.pte", window=24), window=24)
    assert lm.greedy(prompt, 10) == want
    with torch.no_grad(), reference_kernels(model):
        ref = model(torch.tensor([prompt]))[0]
    torch.testing.assert_close(lm.logits(prompt), ref, atol=2e-3, rtol=1e-3)
