"""quantize_model on the engine's tiny Transformer: swaps by name, tied and untied heads, fallbacks, decode."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.quant import (
    Int4Linear,
    Int8Linear,
    QuantConfig,
    QuantizedEmbedding,
    model_bits_per_weight,
    parse_scheme,
    quantize_model,
    quantized_modules,
    reference_kernels,
)
from albumen.llm.testing import tiny_model


def _greedy(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    """Greedy decode through the engine's KV cache, one token per step after the prefill."""
    model.setup_caches(1, 64)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(ids, torch.arange(len(prompt)))
        out = [int(logits[0, -1].argmax())]
        for i in range(n - 1):
            pos = torch.tensor([len(prompt) + i])
            logits = model(torch.tensor([[out[-1]]]), pos)
            out.append(int(logits[0, -1].argmax()))
    model.clear_caches()
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # llama ties the head to the embeddings, qwen2 does not here
@pytest.mark.parametrize("scheme", ["int8", "int4-g32", "int4-g64-sym", "pal4-gc16", "pal4-b32", "int4-g32-all"])
def test_quantized_model_stays_close_to_float(arch: str, scheme: str) -> None:
    model = tiny_model(arch=arch, dim=64)
    ids = torch.randint(0, 260, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.log_softmax(model(ids), -1)
    result = quantize_model(model, QuantConfig.from_scheme(scheme))
    assert result.tied == (arch == "llama")
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    with torch.no_grad():
        out = torch.log_softmax(model(ids), -1)
    kl = float((ref.exp() * (ref - out)).sum(-1).mean())
    assert kl < (0.002 if scheme == "int8" else 0.08)


def test_tied_head_and_embedding_share_one_table() -> None:
    model = tiny_model(arch="llama")
    quantize_model(model, QuantConfig.from_scheme("int4-g32"))
    emb = model.model.embed_tokens
    assert isinstance(emb, QuantizedEmbedding) and emb.tied
    assert emb.source is model.lm_head
    assert isinstance(model.lm_head, Int8Linear)  # the head/table default is int8
    assert not any(k.startswith("model.embed_tokens") for k in model.state_dict())
    ids = torch.tensor([[1, 2, 259]])
    torch.testing.assert_close(emb(ids), model.lm_head.dequantize()[ids])


def test_untied_embedding_gets_its_own_table() -> None:
    model = tiny_model(arch="qwen2")
    quantize_model(model, QuantConfig.from_scheme("int4-g32-all"))
    emb = model.model.embed_tokens
    assert isinstance(emb, QuantizedEmbedding) and not emb.tied
    assert isinstance(emb.table, Int4Linear)
    assert "model.embed_tokens.table.qweight" in model.state_dict()


def test_overrides_skip_and_fallbacks_by_name() -> None:
    model = tiny_model(arch="qwen2", dim=48)  # 48 is not a multiple of 32: int4-g32 cannot hold those rows
    cfg = QuantConfig.from_scheme("int4-g32")
    cfg.overrides["model.layers.0.mlp.down_proj"] = parse_scheme("int8")
    cfg.skip = ("model.layers.1.self_attn.q_proj",)
    result = quantize_model(model, cfg)
    assert type(model.model.layers[1].self_attn.q_proj) is torch.nn.Linear
    assert isinstance(model.model.layers[0].mlp.down_proj, Int8Linear)
    assert "model.layers.0.self_attn.q_proj" in result.fallbacks  # in_features 48 -> int8
    assert isinstance(model.model.layers[0].self_attn.q_proj, Int8Linear)


def test_bits_per_weight_of_the_whole_model() -> None:
    model = tiny_model(arch="qwen2", dim=64)
    assert model_bits_per_weight(model) == pytest.approx(32.0)
    quantize_model(model, QuantConfig.from_scheme("int4-g32-all"))
    assert model_bits_per_weight(model) == pytest.approx(5.0)  # 4 bits + a bf16 scale and zero per 32


@pytest.mark.parametrize("scheme", ["int8", "int4-g32", "pal4-gc16"])
def test_cached_greedy_decode_matches_reference_path(scheme: str) -> None:
    model = tiny_model(arch="llama", dim=64, vocab=272)
    quantize_model(model, QuantConfig.from_scheme(scheme))
    assert any(m.kernel_name() != "dequant" for m in quantized_modules(model).values())
    fast = _greedy(model, [5, 9, 200, 31], 12)
    with reference_kernels(model):
        ref = _greedy(model, [5, 9, 200, 31], 12)
    # the fast kernels round activations (bf16 / per-token int8): allow a late divergence, not an early one
    assert fast[:6] == ref[:6]


def test_int4_group_that_does_not_divide_falls_back_to_a_smaller_group() -> None:
    model = tiny_model(arch="qwen2", dim=96)  # 96 = 3 x 32: g128 and g64 cannot hold the rows, g32 can
    result = quantize_model(model, QuantConfig.from_scheme("int4-g128"))
    q = model.model.layers[0].self_attn.q_proj
    assert isinstance(q, Int4Linear) and q.scheme.group_size == 32
    assert result.fallbacks["model.layers.0.self_attn.q_proj"].startswith("int4-g128 -> int4-g32")
    assert isinstance(model.model.layers[0].mlp.down_proj, Int4Linear)  # in_features 192 = 1.5 x 128 -> g64
    assert model.model.layers[0].mlp.down_proj.scheme.group_size == 64
