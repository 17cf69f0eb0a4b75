"""``albumen llm quantize`` on a tiny model folder: writes a checkpoint that loads and decodes like the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from albumen.cli.main import build_app
from albumen.llm.quant import QuantConfig, quantize_model
from albumen.llm.quant.checkpoint import load_quantized
from albumen.llm.testing import tiny_model
from albumen.llm.weights.safetensors_io import save_folder


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    model = tiny_model(arch="qwen2")
    folder = tmp_path / "tiny"
    save_folder(folder, model.args, model.state_dict())
    (folder / "tokenizer_config.json").write_text("{}")
    return folder


def test_quantize_writes_a_loadable_checkpoint(tmp_path: Path, model_folder: Path) -> None:
    out = tmp_path / "q"
    res = CliRunner().invoke(build_app(), ["--data-dir", str(tmp_path / "data"), "llm", "quantize", "--model",
                                           str(model_folder), "--scheme", "int4-g32", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["layers"] == 16 and 4.5 < summary["bits_per_weight"] < 8.5
    assert (out / "tokenizer_config.json").is_file()
    loaded = load_quantized(out)
    expected = tiny_model(arch="qwen2")
    quantize_model(expected, QuantConfig.from_scheme("int4-g32"))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), expected(ids), rtol=0, atol=0)


def test_bad_scheme_is_a_clear_error(tmp_path: Path, model_folder: Path) -> None:
    res = CliRunner().invoke(build_app(), ["llm", "quantize", "--model", str(model_folder), "--scheme", "int5",
                                           "--out", str(tmp_path / "q")])
    assert res.exit_code == 2
    assert "unknown scheme" in res.output


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(build_app(), ["--data-dir", str(tmp_path), "llm", "quantize", "--model",
                                           str(tmp_path / "nope"), "--out", str(tmp_path / "q")])
    assert res.exit_code == 2
    assert "cannot load model" in res.output


@pytest.mark.parametrize("scheme", ["int8", "int4-g64-sym", "int4-g32-all", "pal2", "pal3-gc16", "pal4-b32", "mixed"])
def test_every_scheme_round_trips_through_the_engine_loader(tmp_path: Path, scheme: str) -> None:
    """quantize -> folder -> ``load_model`` (what every engine command calls) -> greedy text, same as in memory."""
    from albumen.llm.generate import generate_tokens
    from albumen.llm.loading import load_model
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.testing import save_tiny_folder

    src = save_tiny_folder(tmp_path / "tiny", arch="llama", seed=4)
    out = tmp_path / "q"
    args = ["--data-dir", str(tmp_path / "data"), "llm", "quantize", "--model", str(src), "--out", str(out), "--json"]
    if scheme == "mixed":
        calib = tmp_path / "calib.txt"
        calib.write_text("Photos of the coast at dusk, a lighthouse and a picnic in the dunes. " * 12)
        args += ["--scheme", "pal2", "--mixed-high", "int8", "--target-bits", "4", "--calibration", str(calib)]
    else:
        args += ["--scheme", scheme]
    res = CliRunner().invoke(build_app(), args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    if scheme == "mixed":
        assert summary["mixed_high_layers"] > 0
    model, tok = load_model(out)
    assert any(type(m).__name__.endswith("Linear") and hasattr(m, "dequantize") for m in model.modules())
    expected, _ = load_model(src)
    cfg = QuantConfig.from_dict(json.loads((out / "quantization.json").read_text())["config"])
    quantize_model(expected, cfg)
    prompt = tok.encode("Hello, ")
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=8, ignore_eos=True)
    assert list(generate_tokens(model, prompt, sampling)) == list(generate_tokens(expected, prompt, sampling))
