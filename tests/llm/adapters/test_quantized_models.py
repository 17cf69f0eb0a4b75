"""Adapters on a whole model quantised by the engine's own ``quantize_model`` (every linear, the head and the token
table: what the quantised checkpoints ship), and with speculative decoding across per-request adapter switches."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.adapters.config import LLAMA_ALL_LINEAR, AdapterConfig
from albumen.llm.adapters.registry import AdapterRegistry, lora_layers
from albumen.llm.quant import QuantConfig, QuantizedEmbedding, QuantizedLinear, quantize_model
from albumen.llm.testing import tiny_model

from ._tiny import randomize_adapters

IDS = torch.tensor([[256, 5, 9, 33, 2, 70, 11, 4, 99, 120]])
LORA = AdapterConfig(r=4, alpha=8, target_modules=LLAMA_ALL_LINEAR)
DORA = AdapterConfig(r=2, alpha=4, target_modules=("q_proj", "down_proj"), use_dora=True)


def _quantised(preset: str, seed: int = 0):
    model = tiny_model(seed=seed)
    quantize_model(model, QuantConfig.from_scheme(preset))
    return model


@pytest.mark.parametrize("preset", ["int4-g32-all", "int8-all", "pal4"])
@torch.no_grad()
def test_adapters_on_a_fully_quantised_model(preset):
    model = _quantised(preset)
    assert any(isinstance(m, QuantizedEmbedding) for m in model.modules()) or preset == "pal4"
    base = model(IDS)
    reg = AdapterRegistry(model)
    reg.add("titles", LORA)
    reg.add("captions", DORA)  # DoRA needs the base weight: dequantised from the quantised layer
    reg.activate("titles")
    torch.testing.assert_close(model(IDS), base, rtol=0, atol=0)  # B = 0: identity on the quantised base
    randomize_adapters(model)
    layer = lora_layers(model)["model.layers.1.mlp.down_proj"]
    assert isinstance(layer.base, QuantizedLinear)
    x = torch.randn(3, layer.base.in_features, generator=torch.Generator().manual_seed(0))
    a = layer.adapters["titles"]
    want = layer.base(x) + a.scale * (x @ a.lora_A.weight.T @ a.lora_B.weight.T)  # (3, out)
    torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
    outs = {}
    for name in ["titles", "captions", None, "titles"]:
        reg.activate(name)
        outs.setdefault(name, model(IDS))
        torch.testing.assert_close(model(IDS), outs[name], rtol=0, atol=0)  # switching back is exact
    torch.testing.assert_close(outs[None], base, rtol=0, atol=0)
    assert not torch.allclose(outs["titles"], base) and not torch.allclose(outs["captions"], outs["titles"])
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        reg.merge()  # a quantised base cannot absorb an adapter: refused, never silently wrong


@pytest.mark.parametrize(("preset", "min_cos"), [("int8-all", 0.99), ("int4-g32-all", 0.9)])
@torch.no_grad()
def test_a_float_trained_adapter_loads_on_the_quantised_model(tmp_path, preset, min_cos):
    """Train in float, ship on a quantised base: the same file loads on both and moves the logits the same way
    (up to the base's quantisation error, which is large for int4 on this 64-wide random model)."""
    float_model = tiny_model()
    reg = AdapterRegistry(float_model)
    reg.add("titles", LORA)
    randomize_adapters(float_model)
    reg.save("titles", tmp_path)
    q = _quantised(preset)
    qreg = AdapterRegistry(q)
    qreg.load("titles", tmp_path)
    for k, v in qreg.state_dict("titles").items():
        torch.testing.assert_close(v, reg.state_dict("titles")[k], rtol=0, atol=0)
    outs = {}
    for name in (None, "titles"):
        reg.activate(name)
        qreg.activate(name)
        outs[name] = (float_model(IDS), q(IDS))
    quant_err = (outs[None][1] - outs[None][0]).abs().max()
    adapter_shift = (outs["titles"][0] - outs[None][0]).abs().max()
    assert adapter_shift > 3 * quant_err  # the adapter's effect is well above the quantisation error ...
    shift_float = outs["titles"][0] - outs[None][0]
    shift_quant = outs["titles"][1] - outs[None][1]
    assert torch.cosine_similarity(shift_float.flatten(), shift_quant.flatten(), dim=0) > min_cos  # ... and the same


@pytest.mark.parametrize("preset", [None, "int4-g32-all"])
def test_speculative_decoding_follows_per_request_adapter_switches(preset):
    """One target, two adapters switched per request, a drafter carrying its own adapter: greedy speculative output
    equals plain greedy under whichever adapter is active."""
    spec_mod = pytest.importorskip("albumen.llm.speculative.decode")
    from albumen.llm.generate import generate_tokens
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.drafters.model import ModelDrafter

    target = _quantised(preset) if preset else tiny_model()
    reg = AdapterRegistry(target)
    reg.add("titles", LORA)
    reg.add("captions", DORA)
    randomize_adapters(target)
    draft = tiny_model(n_layers=1, seed=5)
    dreg = AdapterRegistry(draft)
    dreg.add("titles", AdapterConfig(r=2, alpha=4, target_modules=("q_proj", "v_proj")))
    randomize_adapters(draft, seed=3)
    dreg.activate("titles")
    cfg = SamplingConfig(max_new_tokens=20)
    prompt = [256, 3, 4, 5, 3, 4, 5, 3, 4]
    outputs = {}
    for name in ["titles", "captions", None, "titles"]:
        reg.activate(name)
        target.clear_caches()
        plain = list(generate_tokens(target, prompt, cfg))
        target.clear_caches()
        got = list(spec_mod.speculative_decode(target, ModelDrafter(draft), prompt, cfg))
        assert got == plain, name
        outputs.setdefault(name, plain)
        assert plain == outputs[name]  # the same adapter again gives the same tokens: no state leaks across requests
    assert len({tuple(v) for v in outputs.values()}) > 1  # the adapters do change the output
