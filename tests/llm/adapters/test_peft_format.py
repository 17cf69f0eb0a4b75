"""PEFT compatibility, both directions, on a tiny random Hugging Face Llama (the oracle for keys and logits)."""

from __future__ import annotations

import json

import pytest
import torch

from albumen.llm.adapters.config import AdapterConfig
from albumen.llm.adapters.peft_format import CONFIG_FILE, WEIGHTS_FILE, read_adapter
from albumen.llm.adapters.registry import AdapterRegistry

from ._tiny import randomize_adapters, tiny_llama

IDS = torch.tensor([[1, 5, 9, 33, 2, 70, 11, 4]])


def _peft_model(use_dora: bool, target):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=target, use_dora=use_dora, task_type="CAUSAL_LM")
    pm = get_peft_model(tiny_llama(), cfg)
    randomize_adapters(pm)
    return pm.eval()


@pytest.mark.parametrize("use_dora", [False, True])
@pytest.mark.parametrize("target", [["q_proj", "v_proj"], r".*\.(up|down)_proj"])
def test_peft_adapter_loads_in_albumen(tmp_path, use_dora, target):
    pm = _peft_model(use_dora, target)
    pm.save_pretrained(tmp_path)
    with torch.no_grad():
        want = pm(IDS).logits
    model = tiny_llama()  # same seed: the same base weights
    reg = AdapterRegistry(model)
    cfg = reg.load("titles", tmp_path)
    assert cfg.use_dora == use_dora
    reg.activate("titles")
    with torch.no_grad():
        got = model(IDS).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        reg.activate(None)
        base = model(IDS).logits
    assert not torch.allclose(base, want, atol=1e-3)  # the adapter mattered


@pytest.mark.parametrize("use_dora", [False, True])
def test_albumen_adapter_loads_in_peft(tmp_path, use_dora):
    from peft import PeftModel

    model = tiny_llama()
    reg = AdapterRegistry(model)
    reg.add("titles", AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "k_proj", "o_proj"), use_dora=use_dora))
    randomize_adapters(model)
    reg.activate("titles")
    reg.save("titles", tmp_path)
    with torch.no_grad():
        want = model(IDS).logits
    pm = PeftModel.from_pretrained(tiny_llama(), tmp_path).eval()
    with torch.no_grad():
        got = pm(IDS).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_saved_keys_and_config_are_peft_names(tmp_path):
    model = tiny_llama(layers=1)
    reg = AdapterRegistry(model)
    reg.add("a", AdapterConfig(r=2, alpha=4, target_modules=("v_proj",), use_dora=True))
    reg.save("a", tmp_path)
    from safetensors.torch import load_file

    keys = sorted(load_file(str(tmp_path / WEIGHTS_FILE)))
    assert keys == [
        "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector",
    ]
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"], cfg["use_dora"]) == ("LORA", 2, 4.0, True)


def test_unsupported_peft_features_are_refused(tmp_path):
    model = tiny_llama(layers=1)
    reg = AdapterRegistry(model)
    reg.add("a", AdapterConfig(r=2, target_modules=("q_proj",)))
    reg.save("a", tmp_path)
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg["rank_pattern"] = {"q_proj": 8}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="rank_pattern"):
        read_adapter(tmp_path)


def test_missing_or_mismatched_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        read_adapter(tmp_path)
    model = tiny_llama(layers=1)
    reg = AdapterRegistry(model)
    reg.add("a", AdapterConfig(r=2, target_modules=("q_proj",)))
    reg.save("a", tmp_path / "a")
    other = AdapterRegistry(tiny_llama(layers=2))  # one more layer: missing tensors
    with pytest.raises(ValueError, match="does not fit"):
        other.load("a2", tmp_path / "a")
    assert other.names == []  # a failed load leaves nothing behind
