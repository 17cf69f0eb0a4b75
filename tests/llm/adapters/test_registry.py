"""Several named adapters on one base: switching, scoping, QLoRA on int4/int8/bf16 bases, speculative decoding."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.adapters.config import AdapterConfig
from albumen.llm.adapters.lora import LoRALinear
from albumen.llm.adapters.qlora import prepare_qlora, quantize_targets
from albumen.llm.adapters.registry import AdapterRegistry, lora_layers, trainable_parameters
from albumen.llm.testing import tiny_model

from ._tiny import randomize_adapters

IDS = torch.tensor([[256, 5, 9, 33, 2, 70, 11, 4, 99, 120]])
ATTN = AdapterConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj"))
MLP = AdapterConfig(r=2, alpha=4, target_modules=r".*\.(up|down)_proj", use_dora=True)


def _two_adapters(model):
    reg = AdapterRegistry(model)
    reg.add("titles", ATTN)
    reg.add("captions", MLP)
    randomize_adapters(model)
    return reg


def _single(name: str, config: AdapterConfig, tensors: dict) -> torch.Tensor:
    """The logits of a fresh model that carries only adapter ``name``."""
    model = tiny_model()
    reg = AdapterRegistry(model)
    reg.add(name, config)
    reg._assign(name, tensors)
    reg.activate(name)
    with torch.no_grad():
        return model(IDS)


@torch.no_grad()
def test_each_adapter_alone_and_switching_is_exact():
    model = tiny_model()
    base = model(IDS)
    reg = _two_adapters(model)
    want = {n: _single(n, c, reg.state_dict(n)) for n, c in (("titles", ATTN), ("captions", MLP))}
    for name in ["titles", "captions", None, "captions", "titles"]:
        reg.activate(name)
        got = model(IDS)
        torch.testing.assert_close(got, base if name is None else want[name], rtol=0, atol=0)
    assert not torch.allclose(want["titles"], want["captions"])
    # up/down_proj carry only "captions": with "titles" active they run the bare base
    layer = lora_layers(model)["model.layers.0.mlp.up_proj"]
    reg.activate("titles")
    assert layer.active is None


@torch.no_grad()
def test_using_scopes_one_request_and_merge_follows_switches():
    model = tiny_model()
    reg = _two_adapters(model)
    reg.activate("titles")
    titles = model(IDS)
    with reg.using("captions"):
        captions = model(IDS)
    assert reg.active == "titles"
    torch.testing.assert_close(model(IDS), titles, rtol=0, atol=0)
    reg.merge()
    torch.testing.assert_close(model(IDS), titles, rtol=1e-4, atol=1e-4)
    reg.activate("captions")  # switching unmerges first: the merged weights never leak into another adapter
    torch.testing.assert_close(model(IDS), captions, rtol=1e-4, atol=1e-4)


def test_unknown_adapter_and_duplicate_names_are_clear_errors():
    reg = AdapterRegistry(tiny_model())
    reg.add("a", ATTN)
    with pytest.raises(KeyError, match="no adapter 'b'"):
        reg.activate("b")
    with pytest.raises(KeyError, match="already loaded"):
        reg.add("a", ATTN)


@pytest.mark.parametrize("scheme", ["int4-g32", "int8", "bf16"])
def test_qlora_on_a_quantised_base(scheme):
    from albumen.llm.quant.linear import QuantizedLinear

    model = tiny_model()
    quantize_targets(model, ("q_proj", "v_proj", "up_proj"), scheme)
    with torch.no_grad():
        base = model(IDS)
    reg = prepare_qlora(model, "titles", ATTN, scheme="int4-g32")  # already quantised targets are kept
    layer = lora_layers(model)["model.layers.1.self_attn.q_proj"]
    assert isinstance(layer, LoRALinear)
    if scheme != "bf16":
        assert isinstance(layer.base, QuantizedLinear)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), base, rtol=0, atol=0)  # B = 0: the adapter starts as identity
    params = trainable_parameters(model, "titles")
    torch.manual_seed(0)
    loss = model(IDS).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in params)  # gradients flow through the frozen quantised base
    assert all(p.grad is None for n, p in model.named_parameters() if "lora" not in n)
    reg.add("captions", AdapterConfig(r=2, alpha=2, target_modules=("q_proj",)))
    randomize_adapters(model)
    with torch.no_grad():
        reg.activate("titles")
        a = model(IDS)
        reg.activate("captions")
        b = model(IDS)
        reg.activate(None)
        torch.testing.assert_close(model(IDS), base, rtol=0, atol=0)
    assert not torch.allclose(a, b)


def test_saved_qlora_adapter_reloads_on_a_fresh_quantised_base(tmp_path):
    model = tiny_model()
    reg = prepare_qlora(model, "titles", ATTN, scheme="int4-g32")
    randomize_adapters(model)
    with torch.no_grad():
        want = model(IDS)
    reg.save("titles", tmp_path)
    fresh = tiny_model()
    quantize_targets(fresh, ATTN.target_modules, "int4-g32")
    reg2 = AdapterRegistry(fresh)
    reg2.load("titles", tmp_path)
    reg2.activate("titles")
    with torch.no_grad():
        torch.testing.assert_close(fresh(IDS), want, rtol=0, atol=0)


@pytest.mark.parametrize("quantised", [False, True])
def test_speculative_decoding_with_an_active_adapter_equals_plain_greedy(quantised):
    spec_mod = pytest.importorskip("albumen.llm.speculative.decode")
    from albumen.llm.generate import generate_tokens
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.drafters.lookup import LookupDrafter
    from albumen.llm.speculative.drafters.model import ModelDrafter

    target = tiny_model()
    if quantised:
        quantize_targets(target, ("q_proj", "v_proj"), "int4-g32")
    reg = AdapterRegistry(target)
    reg.add("titles", ATTN)
    randomize_adapters(target)
    reg.activate("titles")
    cfg = SamplingConfig(max_new_tokens=24)
    prompt = [256, 3, 4, 5, 3, 4, 5, 3, 4]
    plain = list(generate_tokens(target, prompt, cfg))
    target.clear_caches()
    for drafter in (LookupDrafter(), ModelDrafter(tiny_model(n_layers=1, seed=5))):
        got = list(spec_mod.speculative_decode(target, drafter, prompt, cfg))
        assert got == plain


def test_bf16_file_loads_into_a_float_model(tmp_path):
    model = tiny_model()
    reg = AdapterRegistry(model)
    reg.add("titles", ATTN)
    randomize_adapters(model)
    reg.save("titles", tmp_path / "fp32")
    reg.save("titles", tmp_path / "bf16", dtype=torch.bfloat16)
    sizes = [(tmp_path / d / "adapter_model.safetensors").stat().st_size for d in ("fp32", "bf16")]
    assert sizes[1] < 0.6 * sizes[0]
    fresh = AdapterRegistry(tiny_model())
    fresh.load("titles", tmp_path / "bf16")
    for k, v in fresh.state_dict("titles").items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, reg.state_dict("titles")[k].to(torch.bfloat16).float(), rtol=0, atol=0)
