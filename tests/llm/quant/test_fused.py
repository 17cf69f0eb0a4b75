"""The fused int4 decode step (quant/fused.py) against the module path: equal logits, shared layouts, clean fallbacks."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.kernels.decode_ops import decode_ops_module
from albumen.llm.kernels import quant_gemv as qg
from albumen.llm.quant import QuantConfig, quantize_model, set_kernel
from albumen.llm.quant.checkpoint import load_quantized, save_quantized
from albumen.llm.quant.fused import (
    FusedInt4Layer, disable_fused_decode, enable_fused_decode, set_max_block_rows)
from albumen.llm.testing import tiny_model

pytestmark = pytest.mark.skipif(decode_ops_module() is None, reason="the engine's C++ decode ops are not built")


KERNELS = ["auto", "int4pack"]  # auto: our VNNI GEMV where built (else int4pack); int4pack: torch's kernel alone


def _quantized(arch: str = "qwen2", dim: int = 128, dtype: torch.dtype = torch.float32, scheme: str = "int4-g32",
               kernel: str = "auto"):
    # dim 128, 4 heads of 32, 2 KV heads: q/k/v rows 128/64/64 start on int4pack's 64-row blocks
    model = tiny_model(arch=arch, dim=dim, seed=1)
    quantize_model(model, QuantConfig.from_scheme(scheme))
    set_kernel(model, kernel)
    return model.to(dtype)


def _storage(weight) -> int:
    t = weight.blocks if isinstance(weight, qg.Q4Layout) else weight.packed
    return t.untyped_storage().data_ptr()


def _decode(model: torch.nn.Module, prompt: list[int], n: int) -> torch.Tensor:
    """(n, V) logits of greedy decoding after a prefill, one token per step through the KV cache. Short prompts
    are left-padded to 9 tokens so the prefill runs as modules (fused blocks take 2..8 rows: tested below)."""
    prompt = [1] * (9 - len(prompt)) + prompt
    model.setup_caches(1, 64)
    out = []
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), torch.arange(len(prompt)))[:, -1:]
        for i in range(n):
            out.append(logits[0, -1])
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            logits = model(nxt, torch.tensor([len(prompt) + i]))
    model.clear_caches()
    return torch.stack(out)


def _calls(model: torch.nn.Module) -> list[int]:
    """Count fused steps taken per layer (wraps each layer's step)."""
    counts = [0] * len(model.model.layers)
    for i, layer in enumerate(model.model.layers):
        step = layer.__dict__["_quant_step"]

        def counted(*args, _step=step, _i=i):
            y = _step(*args)
            counts[_i] += y is not None
            return y

        layer.__dict__["_quant_step"] = counted
    return counts


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # qwen2: q/k/v biases, concatenated in the fused product
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernel", KERNELS)
def test_fused_step_equals_module_path(arch: str, dtype: torch.dtype, kernel: str) -> None:
    model = _quantized(arch, dtype=dtype, kernel=kernel)
    disable_fused_decode(model)
    ref = _decode(model, [5, 9, 17, 33], 6)
    enable_fused_decode(model)
    calls = _calls(model)
    got = _decode(model, [5, 9, 17, 33], 6)
    assert calls == [6, 6]  # every decode step after the prefill took the fused path
    assert torch.equal(got, ref)


@pytest.mark.parametrize("kernel", KERNELS)
def test_module_layouts_are_slices_of_the_fused_pack(kernel: str) -> None:
    model = _quantized(kernel=kernel)
    _decode(model, [1, 2, 3], 2)
    layer = model.model.layers[0]
    packs = layer._quant_step.packs()

    def part(proj):  # the layout a part's own forward uses for 1..8 rows
        kind, payload = proj.runtime()
        return payload.own if kind == "int4-vnni" else payload

    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
        assert _storage(part(proj)) == _storage(packs.qkv[0])  # one copy for the module path and the fused step
    assert len(packs.qkv) == len(packs.gate_up) == 1
    assert _storage(part(layer.mlp.up_proj)) == _storage(packs.gate_up[0])
    # and the module path through those slices still gives the unfused results (a few rows, then a long prompt)
    fresh = _quantized(kernel=kernel)
    disable_fused_decode(fresh)
    _decode(fresh, [1, 2, 3], 2)  # the same history (setup_caches switches the norms to the C++ op)
    with torch.no_grad():
        for ids in (torch.tensor([[4, 8, 15]]), torch.arange(20)[None]):
            assert torch.equal(model(ids), fresh(ids))


def test_parts_that_cannot_share_a_layout_run_as_separate_products() -> None:
    # dim 64 on int4pack: k/v rows start at 64 + 32 = 96, not on a 64-row block: q, k, v stay three products
    model = _quantized(dim=64, kernel="int4pack")
    calls = _calls(model)
    got = _decode(model, [3, 4, 5], 4)
    assert calls == [4, 4]
    disable_fused_decode(model)
    assert torch.equal(got, _decode(model, [3, 4, 5], 4))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_block_palettes_take_the_fused_step_with_equal_logits(arch: str) -> None:
    if not qg.quant_gemv_available():
        pytest.skip("block palettes run on the VNNI GEMV")
    model = _quantized(arch, scheme="pal4-b32")
    disable_fused_decode(model)
    ref = _decode(model, [5, 9, 17, 33], 5)
    enable_fused_decode(model)
    calls = _calls(model)
    assert torch.equal(_decode(model, [5, 9, 17, 33], 5), ref)
    assert calls == [5, 5]


def test_other_schemes_decline() -> None:
    int8 = _quantized(scheme="int8")  # int8 layers: the module path
    calls = _calls(int8)
    got = _decode(int8, [3, 4], 3)
    assert calls == [0, 0]
    disable_fused_decode(int8)
    assert torch.equal(got, _decode(int8, [3, 4], 3))


def test_swapped_module_or_hook_or_new_weights_leave_the_fused_path() -> None:
    model = _quantized()
    ref_model = _quantized()
    disable_fused_decode(ref_model)
    _decode(model, [1, 2], 2)  # builds the packs
    calls = _calls(model)
    # a forward hook on a part: the module path must run it
    handle = model.model.layers[0].mlp.up_proj.register_forward_hook(lambda m, i, o: None)
    _decode(model, [1, 2], 3)
    assert calls == [0, 3]
    handle.remove()
    # new weights loaded into a part: the packs are rebuilt from them (results follow the new weights)
    other = _quantized(arch="qwen2")
    with torch.no_grad():
        other.model.layers[1].self_attn.k_proj.scale.mul_(1.5)
        ref_model.model.layers[1].self_attn.k_proj.scale.mul_(1.5)
    model.model.layers[1].self_attn.k_proj.load_state_dict(other.model.layers[1].self_attn.k_proj.state_dict())
    ref_model.model.layers[1].self_attn.k_proj._runtime_key = None
    assert torch.equal(_decode(model, [1, 2], 3), _decode(ref_model, [1, 2], 3))
    # a module swapped for another kind (as LoRA does): declines
    model.model.layers[0].mlp.down_proj = torch.nn.Linear(256, 128)
    assert FusedInt4Layer(model.model.layers[0]).packs() is None
    calls[:] = [0, 0]
    _decode(model, [1, 2], 3)
    assert calls == [0, 3]


def test_checkpoint_load_installs_the_fused_step(tmp_path) -> None:
    model = _quantized()
    save_quantized(model, tmp_path / "q", QuantConfig.from_scheme("int4-g32"), model.args.to_hf_config())
    loaded = load_quantized(tmp_path / "q")
    assert all(isinstance(layer.__dict__.get("_quant_step"), FusedInt4Layer) for layer in loaded.model.layers)
    disable_fused_decode(model)
    assert torch.equal(_decode(loaded, [7, 7, 7], 4), _decode(model, [7, 7, 7], 4))


def _blocks(model: torch.nn.Module, prompt: list[int], tokens: list[int], split: list[int]) -> torch.Tensor:
    """(len(tokens), V) logits of ``tokens`` fed after a prefill of ``prompt`` in blocks of the sizes in ``split``
    (a verification block of k + 1 rows is one such block)."""
    model.setup_caches(1, 64)
    out, at = [], len(prompt)
    with torch.no_grad():
        model(torch.tensor([prompt]), torch.arange(len(prompt)))
        for n in split:
            ids = torch.tensor([tokens[at - len(prompt): at - len(prompt) + n]])
            out.append(model(ids, torch.arange(at, at + n))[0])
            at += n
    model.clear_caches()
    return torch.cat(out)


PROMPT = list(range(3, 14))  # 11 tokens: the prefill runs as modules (blocks take at most 8 rows)
TOKENS = [5, 9, 17, 33, 2, 71, 40, 8, 99, 12, 6, 1]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernel", KERNELS)
def test_a_block_of_rows_equals_the_same_rows_one_at_a_time(arch: str, dtype: torch.dtype, kernel: str) -> None:
    model = _quantized(arch, dtype=dtype, kernel=kernel)
    enable_fused_decode(model)
    single = _blocks(model, PROMPT, TOKENS, [1] * len(TOKENS))
    calls = _calls(model)
    got = _blocks(model, PROMPT, TOKENS, [2, 8, 1, 1])
    assert calls == [4, 4]  # each block was one fused call per layer
    if kernel == "auto" and qg.quant_gemv_module() is not None:
        assert torch.equal(got, single)  # batch-invariant: a row inside a block == the row alone (bit for bit)
    else:  # torch's int4pack kernel tiles rows differently for a block: equal up to rounding
        tol = 1e-5 if dtype is torch.float32 else 2e-2
        assert torch.allclose(got.float(), single.float(), atol=tol, rtol=tol)
        assert torch.equal(got.argmax(-1), single.argmax(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_fused_block_matches_the_module_path(dtype: torch.dtype) -> None:
    model = _quantized("qwen2", dtype=dtype)
    disable_fused_decode(model)
    ref = _blocks(model, PROMPT, TOKENS, [5, 3, 4])  # module path: the mask and grouped_attention
    enable_fused_decode(model)
    got = _blocks(model, PROMPT, TOKENS, [5, 3, 4])
    tol = 1e-4 if dtype is torch.float32 else 3e-2  # attention rounds differently (per-row C++ vs one matmul)
    assert torch.allclose(got.float(), ref.float(), atol=tol, rtol=tol)
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


def test_blocks_beyond_the_row_limit_run_as_modules() -> None:
    model = _quantized()
    enable_fused_decode(model)
    assert set_max_block_rows(model, 4) == 2
    calls = _calls(model)
    _blocks(model, PROMPT, TOKENS, [4, 5, 1])
    assert calls == [2, 2]  # the 5-row block declined
    with pytest.raises(ValueError, match="rows must be 1..8"):
        set_max_block_rows(model, 9)
