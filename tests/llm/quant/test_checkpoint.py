"""Quantized checkpoints: save -> load gives identical logits, no float weights materialised, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from albumen.llm.quant import QuantConfig, QuantizedEmbedding, quantize_model
from albumen.llm.quant.checkpoint import QUANT_FILE, is_quantized_folder, load_quantized, save_quantized
from albumen.llm.testing import tiny_model


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("scheme", ["int8", "int4-g32", "int4-g64-sym", "pal3-gc16", "pal4", "pal4-b32", "int4-g32-all",
                                    "none"])
def test_round_trip_is_exact(tmp_path: Path, arch: str, scheme: str) -> None:
    model = tiny_model(arch=arch)
    cfg = QuantConfig.from_scheme(scheme)
    quantize_model(model, cfg)
    ids = torch.randint(0, 260, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(ids)
    save_quantized(model, tmp_path, cfg, model.args.to_hf_config())
    assert is_quantized_folder(tmp_path)
    loaded = load_quantized(tmp_path)
    with torch.no_grad():
        out = loaded(ids)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert json.loads((tmp_path / QUANT_FILE).read_text())["config"] == cfg.to_dict()
    assert not any(t.is_meta for t in loaded.state_dict().values())


def test_loaded_tied_embedding_reads_the_head(tmp_path: Path) -> None:
    model = tiny_model(arch="llama")
    quantize_model(model, QuantConfig.from_scheme("int4-g32-all"))
    save_quantized(model, tmp_path, None, model.args.to_hf_config())
    loaded = load_quantized(tmp_path)
    emb = loaded.model.embed_tokens
    assert isinstance(emb, QuantizedEmbedding) and emb.tied and emb.source is loaded.lm_head


def test_file_is_smaller_than_float(tmp_path: Path) -> None:
    model = tiny_model(arch="qwen2", dim=128)
    float_bytes = sum(p.numel() * 4 for p in model.parameters())
    quantize_model(model, QuantConfig.from_scheme("int4-g32-all"))
    save_quantized(model, tmp_path, None, model.args.to_hf_config())
    assert (tmp_path / "model.safetensors").stat().st_size < 0.2 * float_bytes


def test_not_a_quantized_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a quantized checkpoint"):
        load_quantized(tmp_path)


def test_mismatched_architecture_is_a_clear_error(tmp_path: Path) -> None:
    model = tiny_model(arch="qwen2", n_layers=2)
    quantize_model(model, QuantConfig.from_scheme("int8"))
    save_quantized(model, tmp_path, None, model.args.to_hf_config())
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match|unloaded"):
        load_quantized(tmp_path)


def test_loading_in_bf16_runs_the_forward_in_bf16(tmp_path: Path) -> None:
    model = tiny_model(arch="llama")
    cfg = QuantConfig.from_scheme("int4-g32")
    quantize_model(model, cfg)
    save_quantized(model, tmp_path, cfg, model.args.to_hf_config())
    loaded = load_quantized(tmp_path, torch.bfloat16)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert loaded.model.embed_tokens(ids).dtype == torch.bfloat16
        out = loaded(ids)
        ref = model(ids)
    assert out.dtype == torch.bfloat16
    assert float((out.float() - ref).abs().max()) < 0.1 * float(ref.abs().max())
