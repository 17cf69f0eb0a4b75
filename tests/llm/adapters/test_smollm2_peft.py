"""PEFT compatibility both ways on the real SmolLM2-135M: Albumen's engine vs transformers + peft, same logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.adapters.config import AdapterConfig
from albumen.llm.adapters.registry import AdapterRegistry

from ._tiny import randomize_adapters

TEXT = "The old harbour of Porto at sunset, with Ana and Tomás."


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    from albumen.llm.loading import resolve_folder

    try:
        return resolve_folder("smollm2-135m", tmp_path_factory.mktemp("models"), install=False)
    except Exception as exc:  # the model wheel is a declared dependency; say so plainly if it is missing
        pytest.fail(f"SmolLM2 is not available: {exc}")


@pytest.fixture(scope="module")
def hf_base(smollm2):
    """One transformers model for the module; each test unloads its peft layers again."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def ours(smollm2):
    from albumen.llm.tokenizer import HFTokenizer
    from albumen.llm.weights.safetensors_io import load_folder

    tok = HFTokenizer.from_folder(smollm2)
    return load_folder(smollm2, torch.float32).eval(), torch.tensor([tok.encode(TEXT)])


@pytest.mark.parametrize("use_dora", [False, True])
def test_peft_trained_adapter_gives_the_same_logits_in_albumen(tmp_path, hf_base, ours, use_dora):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=use_dora,
                     task_type="CAUSAL_LM")
    pm = get_peft_model(hf_base, cfg).eval()
    randomize_adapters(pm, seed=3)
    model, ids = ours
    with torch.no_grad():
        want = pm(ids).logits
    pm.save_pretrained(tmp_path)
    pm.unload()
    reg = AdapterRegistry(model)
    reg.load("peft", tmp_path)
    reg.activate("peft")
    with torch.no_grad():
        got = model(ids)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-3)
        reg.activate(None)
        assert (model(ids) - want).abs().max() > 0.05  # the adapter changes the logits far more than the tolerance
    reg.remove("peft")


def test_albumen_adapter_gives_the_same_logits_in_peft(tmp_path, hf_base, ours):
    from peft import PeftModel

    model, ids = ours
    reg = AdapterRegistry(model)
    reg.add("titles", AdapterConfig(r=4, alpha=8, target_modules=r".*\.(k_proj|o_proj|up_proj)"))
    randomize_adapters(model, seed=4)
    reg.activate("titles")
    with torch.no_grad():
        want = model(ids)
    reg.save("titles", tmp_path)
    reg.remove("titles")
    pm = PeftModel.from_pretrained(hf_base, tmp_path).eval()
    with torch.no_grad():
        got = pm(ids).logits
    pm.unload()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-3)
