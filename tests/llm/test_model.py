"""The decoder against transformers on tiny random models, the KV cache, and the training forward."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from albumen.llm.model import ModelArgs, Transformer
from albumen.llm.testing import one_thread, tiny_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield

transformers = pytest.importorskip("transformers")


def _hf_model(model: Transformer) -> torch.nn.Module:
    cfg = model.args.to_hf_config()
    config_cls = transformers.Qwen2Config if model.args.arch == "qwen2" else transformers.LlamaConfig
    hf = transformers.AutoModelForCausalLM.from_config(config_cls(**cfg), attn_implementation="eager")
    hf.load_state_dict(model.state_dict(), strict=True)
    return hf.eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_state_dict_keys_equal_transformers(arch: str) -> None:
    model = tiny_model(arch=arch)
    hf = _hf_model(model)
    assert list(model.state_dict()) == list(hf.state_dict())
    if arch == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in model.state_dict()
    else:  # tied: one tensor under both names, as in HF
        assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_logits_equal_transformers(arch: str) -> None:
    model = tiny_model(arch=arch, seed=1)
    hf = _hf_model(model)
    ids = torch.randint(0, 260, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(ids)
        theirs = hf(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_cached_prefill_and_decode_equal_full_forward() -> None:
    model = tiny_model()
    ids = torch.randint(0, 260, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        model.setup_caches(2, 32)
        steps = [model(ids[:, :5], torch.arange(5))]
        steps += [model(ids[:, t : t + 1], torch.tensor([t])) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_rollback_is_decoding_again_from_an_earlier_position() -> None:
    model = tiny_model()
    ids = torch.randint(0, 260, (1, 10), generator=torch.Generator().manual_seed(1))
    wrong = torch.randint(0, 260, (1, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(ids)[:, -1]
        model.setup_caches(1, 32)
        model(ids[:, :6], torch.arange(6))
        model(wrong, torch.arange(6, 10))  # a rejected draft fills positions 6..9
        out = model(ids[:, 6:], torch.arange(6, 10))  # roll back to 6: just write again
    torch.testing.assert_close(out[:, -1], reference, rtol=1e-5, atol=1e-5)


def test_block_of_queries_with_cache_sees_only_earlier_positions() -> None:
    model = tiny_model()
    ids = torch.randint(0, 260, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)
        model.setup_caches(1, 16)
        model(ids[:, :4], torch.arange(4))
        block = model(ids[:, 4:], torch.arange(4, 9))  # a verification block, as speculative decoding sends
    torch.testing.assert_close(block, full[:, 4:], rtol=1e-5, atol=1e-5)


def test_training_forward_is_differentiable_without_caches() -> None:
    model = tiny_model().train()
    ids = torch.randint(0, 260, (2, 8))
    logits = model(ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 260), ids[:, 1:].reshape(-1))
    loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert torch.isfinite(loss)


def test_errors_are_clear() -> None:
    model = tiny_model()
    model.setup_caches(1, 8)
    with pytest.raises(ValueError, match="input_pos"):
        model(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="beyond the cache"):
        model(torch.zeros(1, 1, dtype=torch.long), torch.tensor([8]))
    with pytest.raises(ValueError, match="context length"):
        model.setup_caches(1, 10_000)
    with pytest.raises(KeyError, match="unknown architecture"):
        ModelArgs.from_name("gpt-99")


def test_bf16_forward_close_to_fp32() -> None:
    model = tiny_model()
    ids = torch.randint(0, 260, (1, 6))
    with torch.no_grad():
        ref = model(ids)
        low = tiny_model(dtype=torch.bfloat16)(ids).float()
    assert low.dtype == torch.float32 and (low - ref).abs().max() < 0.1 * ref.abs().max()


def test_presets_have_consistent_shapes() -> None:
    for name in ("smollm2-135m", "qwen2.5-0.5b", "qwen2.5-1.5b"):
        args = ModelArgs.from_name(name)
        assert args.head_dim * args.n_heads == args.dim
        assert ModelArgs.from_hf_config(args.to_hf_config()) == args


def _plain_pytorch(model: torch.nn.Module) -> None:
    """Undo ``use_decode_kernels``: projections back to ``nn.Linear.forward``, norms and attention to PyTorch."""
    for module in model.modules():
        module.__dict__.pop("forward", None)
        module.__dict__.pop("_decode_ops", None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernels", [True, False])
def test_decode_kernels_equal_plain_and_follow_weight_edits(dtype: torch.dtype, kernels: bool) -> None:
    """Decode with the C++ kernels (dense linears, fused norm and attention) or, without them, oneDNN's packed bf16
    copy == plain PyTorch: prefill, a 4-row verification block, single tokens, then an in-place weight edit."""
    from albumen.llm.kernels.dense import dense_module
    from albumen.llm.model import use_decode_kernels

    if kernels and dense_module() is None:
        pytest.skip("dense kernel not built")
    plain = tiny_model(dtype=dtype, arch="qwen2")
    fast = tiny_model(dtype=dtype, arch="qwen2")
    ids = torch.randint(0, 260, (1, 11), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for m in (plain, fast):
            m.setup_caches(1, 16)
    _plain_pytorch(plain)
    assert use_decode_kernels(fast, kernels=kernels) == 2 * 7 + 1  # 7 projections per layer + the head
    assert (fast.model.norm.__dict__["_decode_ops"] is not None) is kernels
    assert (fast.model.layers[0].self_attn.__dict__["_decode_ops"] is not None) is kernels
    assert type(fast.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # quantization still finds it
    assert list(fast.state_dict()) == list(plain.state_dict())
    tol = 1e-5 if dtype is torch.float32 else 2e-2
    with torch.inference_mode():
        outs = []
        for m in (plain, fast):  # prefill of 3, a verification block of 4 (<= 8 rows: kernel), then single tokens
            steps = [m(ids[:, :3], torch.arange(3)), m(ids[:, 3:7], torch.arange(3, 7))]
            steps += [m(ids[:, t:t + 1], torch.tensor([t])) for t in range(7, 11)]
            outs.append(torch.cat(steps, 1).float())
    torch.testing.assert_close(outs[1], outs[0], rtol=tol, atol=tol)
    with torch.no_grad():  # an in-place edit (as a LoRA merge does) must reach the kernel / the packed copy
        for m in (plain, fast):
            m.model.layers[1].mlp.up_proj.weight.mul_(3)
    with torch.inference_mode():
        a = plain(ids[:, 10:11], torch.tensor([10])).float()
        b = fast(ids[:, 10:11], torch.tensor([10])).float()
    torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    fast.clear_caches()
    fast.train()
    loss = fast(ids[:, :1]).float().logsumexp(-1).mean()  # one row with grad: plain path, differentiable
    loss.backward()
    assert fast.model.layers[0].mlp.up_proj.weight.grad is not None
    assert fast.model.layers[0].self_attn.q_proj.weight.grad is not None  # through RoPE and attention
    assert fast.model.norm.weight.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_decode_layer_equals_module_path(dtype: torch.dtype, arch: str) -> None:
    """One C++ call per layer for a single token == the same kernels called module by module; a hook or a swapped
    projection (LoRA, quantization) sends the layer back to the module path."""
    from albumen.llm.kernels.decode_ops import decode_ops_module

    if decode_ops_module() is None:
        pytest.skip("decode ops not built")
    model = tiny_model(dtype=dtype, arch=arch)
    ids = torch.randint(0, 260, (1, 14), generator=torch.Generator().manual_seed(1))
    calls: list[int] = []

    def run() -> torch.Tensor:  # a 9-token prefill (module path: more than 8 rows), then single tokens
        with torch.inference_mode():
            model.setup_caches(1, 16)
            steps = [model(ids[:, :9], torch.arange(9))] + [model(ids[:, t:t + 1], torch.tensor([t]))
                                                            for t in range(9, 14)]
        return torch.cat(steps, 1)

    fused = run()
    assert calls == []
    handles = [layer.mlp.register_forward_hook(lambda *_: calls.append(1)) for layer in model.model.layers]
    modules = run()  # the hook must see every MLP call: the fused path steps aside
    assert len(calls) == 2 * (1 + 5)
    for h in handles:
        h.remove()
    torch.testing.assert_close(fused, modules, rtol=0, atol=0)
    layer, x = model.model.layers[0], torch.zeros(1, 1, 64, dtype=dtype)
    cos, sin = model._rope[0][:1], model._rope[1][:1]  # (1, hd) at position 0
    with torch.inference_mode():
        assert layer._fused_step(decode_ops_module(), x, cos, sin, 0) is not None
        layer.mlp.up_proj = type("Swapped", (torch.nn.Linear,), {})(64, layer.mlp.up_proj.out_features, bias=False)
        assert layer._fused_step(decode_ops_module(), x, cos, sin, 0) is None


def test_large_bf16_linears_take_the_packed_path() -> None:
    """bf16 weights from PACKED_MIN_NUMEL up (rows of PACKED_MIN_IN up) run 1..8 rows on a packed copy
    (the packed kernel), made once and again after an in-place edit; small ones keep the row-major dense kernel;
    a row is the same alone or in a block, bit for bit; with the kernels off, oneDNN's packed copy serves."""
    from albumen.llm.kernels.dense import dense_module
    from albumen.llm.model import PACKED_MIN_IN, PACKED_MIN_NUMEL, _mkldnn_packing_available, use_decode_kernels

    if dense_module() is None:
        pytest.skip("needs the dense kernels")
    side = max(PACKED_MIN_IN, int(PACKED_MIN_NUMEL ** 0.5) + 1)
    torch.manual_seed(0)
    big = torch.nn.Linear(side, side, bias=True).to(torch.bfloat16)
    small = torch.nn.Linear(side, 64, bias=False).to(torch.bfloat16)
    net = torch.nn.Sequential(big, small)
    assert use_decode_kernels(net, kernels=True) == 2
    assert big.__dict__["_packed"] and not small.__dict__["_packed"]
    x = torch.randn(1, 9, side, dtype=torch.bfloat16)
    with torch.inference_mode():
        block = big(x[:, :8])
        for rows in (1, 4, 8):
            torch.testing.assert_close(big(x[:, :rows]), block[:, :rows], rtol=0, atol=0)
        ref = x.float() @ big.weight.float().T + big.bias.float()
        torch.testing.assert_close(block.float(), ref[:, :8], rtol=2e-2, atol=5e-2)
        torch.testing.assert_close(big(x).float(), ref, rtol=2e-2, atol=5e-2)  # 9 rows: F.linear
        pack = big.__dict__["_weight_pack"][1]
        big(x[:, :1])
        assert big.__dict__["_weight_pack"][1] is pack  # made once
    with torch.no_grad():
        big.weight.mul_(2)  # in place, as a LoRA merge does
    with torch.inference_mode():
        torch.testing.assert_close(big(x[:, :2]).float(), 2 * (x[:, :2].float() @ big.weight.float().T / 2)
                                   + big.bias.float(), rtol=2e-2, atol=1e-1)
        assert big.__dict__["_weight_pack"][1] is not pack
    if _mkldnn_packing_available():
        use_decode_kernels(net, kernels=False)
        assert "_weight_pack" not in big.__dict__  # the unused copy is dropped
        with torch.inference_mode():
            torch.testing.assert_close(big(x[:, :4]).float(), x[:, :4].float() @ big.weight.float().T
                                       + big.bias.float(), rtol=2e-2, atol=1e-1)
        assert "_decode_pack" in big.__dict__
        use_decode_kernels(net, kernels=True)
        assert "_decode_pack" not in big.__dict__


def test_packs_stay_within_the_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose packed copies would exceed PACKED_MAX_BYTES packs nothing (every linear keeps the row-major
    kernel) and still decodes; within the budget the rule applies."""
    import albumen.llm.model as model_mod

    if model_mod.dense_module() is None:
        pytest.skip("needs the dense kernels")
    for name in ("PACKED_MIN_NUMEL", "PACKED_MIN_IN"):
        monkeypatch.setattr(model_mod, name, 1)
    model = tiny_model(seed=1)
    total = sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if type(m) is torch.nn.Linear)
    monkeypatch.setattr(model_mod, "PACKED_MAX_BYTES", total - 1)
    model_mod.use_decode_kernels(model)
    assert not any(m.__dict__.get("_packed") for m in model.modules() if type(m) is torch.nn.Linear)
    model.setup_caches(1, 16)
    with torch.inference_mode():
        assert model.decode_plan() is not None and model(torch.tensor([[1, 2]]), torch.arange(2)).shape[1] == 2
    monkeypatch.setattr(model_mod, "PACKED_MAX_BYTES", total)
    model_mod.use_decode_kernels(model)
    assert all(m.__dict__.get("_packed") for m in model.modules() if type(m) is torch.nn.Linear)


def _pack_everything(monkeypatch: pytest.MonkeyPatch, model: torch.nn.Module) -> None:
    """Route every projection and the head of a tiny model to the packed kernel."""
    import albumen.llm.model as model_mod

    for name in ("PACKED_MIN_NUMEL", "PACKED_MIN_IN"):
        monkeypatch.setattr(model_mod, name, 1)
    model_mod.use_decode_kernels(model)
    assert all(m.__dict__.get("_packed") for m in model.modules() if type(m) is torch.nn.Linear)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_layer_block_equals_its_rows_one_by_one(dtype: torch.dtype) -> None:
    """A block of 2..8 consecutive new tokens through the fused C++ layers == the same tokens one call each (bit
    for bit in fp32), and matches the module path's masked attention to rounding."""
    from albumen.llm.kernels.decode_ops import decode_ops_module
    from albumen.llm.model import use_decode_kernels

    if decode_ops_module() is None:
        pytest.skip("decode ops not built")
    model = tiny_model(dtype=dtype, arch="qwen2", seed=2)
    ids = torch.randint(0, 260, (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        model.setup_caches(1, 16)
        model(ids[:, :4], torch.arange(4))
        block = model(ids[:, 4:10], torch.arange(4, 10))[0]  # (6, V)
        rows = torch.cat([model(ids[:, t:t + 1], torch.tensor([t]))[0] for t in range(4, 10)])
        if dtype is torch.float32:
            torch.testing.assert_close(block, rows, rtol=0, atol=0)
        else:
            torch.testing.assert_close(block.float(), rows.float(), rtol=0.05, atol=0.05)
        use_decode_kernels(model, fuse_layers=False)  # the module path (grouped attention with the block mask)
        modules = model(ids[:, 4:10], torch.arange(4, 10))[0]
    tol = 1e-4 if dtype is torch.float32 else 0.1
    torch.testing.assert_close(block.float(), modules.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,packed", [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False),
                                          (torch.bfloat16, True)])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_decode_plan_equals_fused_layers(dtype: torch.dtype, packed: bool, arch: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole single-token step in one C++ call == the model's forward with fused layers (packed: the module path
    on the packed bf16 kernel), bit for bit: logits, the greedy token and the cache entries it writes; an in-place
    weight edit reaches it (packed: the plan refuses to run on a stale copy, and a new plan sees the edit)."""
    from albumen.llm.kernels.decode_ops import decode_ops_module

    if decode_ops_module() is None:
        pytest.skip("decode ops not built")
    model = tiny_model(dtype=dtype, arch=arch, seed=3)
    if packed:
        _pack_everything(monkeypatch, model)
    ids = torch.randint(0, 260, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        model.setup_caches(1, 16)
        model(ids[:, :4], torch.arange(4))
        ref = [model(ids[:, t:t + 1], torch.tensor([t]))[:, -1] for t in range(4, 10)]  # (1, V) each
        ref_k = model.model.layers[1].self_attn.kv_cache.k_cache[:, :, 4:10].clone()
        model.model.layers[1].self_attn.kv_cache.k_cache.zero_()  # the plan must write what it reads
        model(ids[:, :4], torch.arange(4))
        plan = model.decode_plan()
        assert plan is not None and plan.max_positions == 16
        got = [plan.logits(int(ids[0, t]), t) for t in range(4, 10)]
        assert [plan.argmax(int(ids[0, t]), t) for t in range(4, 10)] == [int(r.argmax()) for r in ref]
        torch.testing.assert_close(model.model.layers[1].self_attn.kv_cache.k_cache[:, :, 4:10], ref_k, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat(got), torch.cat(ref), rtol=0, atol=0)
        model.model.layers[0].mlp.down_proj.weight.mul_(2)  # as a LoRA merge does, in place
        edited = model(ids[:, 9:10], torch.tensor([9]))[:, -1]
        if packed:
            with pytest.raises(RuntimeError, match="edited after the plan was built"):
                plan.logits(int(ids[0, 9]), 9)
            plan = model.decode_plan()
        torch.testing.assert_close(plan.logits(int(ids[0, 9]), 9), edited, rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="beyond the cache"):
            plan.logits(1, 16)
        with pytest.raises(RuntimeError, match="out of range"):
            plan.argmax(260, 3)


@pytest.mark.parametrize("dtype,packed", [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False),
                                          (torch.bfloat16, True)])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_decode_plan_block_rows_equal_single_rows(dtype: torch.dtype, packed: bool, arch: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A block of 1..8 tokens (speculative verification) == the same tokens one call each, bit for bit: logits, greedy
    tokens, cache entries and the final hidden states (``features``, what a draft head reads); bad blocks raise.
    packed: every product on the packed bf16 kernel."""
    from albumen.llm.kernels.decode_ops import decode_ops_module

    if decode_ops_module() is None:
        pytest.skip("decode ops not built")
    model = tiny_model(dtype=dtype, arch=arch, seed=5)
    if packed:
        _pack_everything(monkeypatch, model)
    ids = [int(t) for t in torch.randint(0, 260, (16,), generator=torch.Generator().manual_seed(4))]
    with torch.inference_mode():
        model.setup_caches(1, 24)
        model(torch.tensor([ids[:4]]), torch.arange(4))
        plan = model.decode_plan()
        ref, feats = [], []
        for t in range(4, 12):
            ref.append(plan.logits(ids[t], t))  # (1, V)
            feats.append(plan.features())  # (1, D)
        ref_k = model.model.layers[1].self_attn.kv_cache.k_cache[:, :, 4:12].clone()
        for rows in (1, 2, 5, 8):
            model.model.layers[1].self_attn.kv_cache.k_cache[:, :, 4:12].zero_()
            got = plan.block_logits(ids[4:4 + rows], 4)  # (rows, V)
            torch.testing.assert_close(got, torch.cat(ref[:rows]), rtol=0, atol=0)
            torch.testing.assert_close(plan.features(), torch.cat(feats[:rows]), rtol=0, atol=0)
            assert plan.block_argmax(ids[4:4 + rows], 4) == [int(r.argmax()) for r in ref[:rows]]
            torch.testing.assert_close(model.model.layers[1].self_attn.kv_cache.k_cache[:, :, 4:4 + rows],
                                       ref_k[:, :, :rows], rtol=0, atol=0)
        with pytest.raises(RuntimeError, match="1 to 8 tokens"):
            plan.block_logits(ids[:9], 4)
        with pytest.raises(RuntimeError, match="1 to 8 tokens"):
            plan.block_argmax([], 4)
        with pytest.raises(RuntimeError, match="beyond the cache"):
            plan.block_logits(ids[:4], 21)


def test_decode_plan_features_are_the_normed_last_hidden_state() -> None:
    """``features()`` after a step == the final norm of the last layer's output in the module path (what the draft
    head's forward hook captured before)."""
    from albumen.llm.kernels.decode_ops import decode_ops_module

    if decode_ops_module() is None:
        pytest.skip("decode ops not built")
    model = tiny_model(seed=6)
    ids = torch.randint(0, 260, (1, 6), generator=torch.Generator().manual_seed(1))
    seen: list[torch.Tensor] = []
    with torch.inference_mode():
        model.setup_caches(1, 8)
        model(ids[:, :5], torch.arange(5))
        handle = model.model.layers[-1].register_forward_hook(lambda m, a, out: seen.append(model.model.norm(out[0])))
        model(ids[:, 5:6], torch.tensor([5]))
        handle.remove()
        plan = model.decode_plan()
        plan.logits(int(ids[0, 5]), 5)
        torch.testing.assert_close(plan.features(), seen[0], rtol=0, atol=0)


def test_decode_plan_declines_what_must_run_as_modules() -> None:
    """No plan without caches, with kernels off or fuse_model=False, with a hook, or with a swapped projection
    (LoRA, quantization): those paths run module by module."""
    from albumen.llm.kernels.decode_ops import decode_ops_module
    from albumen.llm.model import use_decode_kernels

    if decode_ops_module() is None:
        pytest.skip("decode ops not built")
    model = tiny_model()
    with torch.inference_mode():
        assert model.decode_plan() is None  # no caches
        model.setup_caches(1, 8)
        assert model.decode_plan() is not None
        use_decode_kernels(model, fuse_model=False)
        assert model.decode_plan() is None
        use_decode_kernels(model, kernels=False)
        assert model.decode_plan() is None
        use_decode_kernels(model)
        handle = model.model.layers[1].post_attention_layernorm.register_forward_pre_hook(lambda *_: None)
        assert model.decode_plan() is None
        handle.remove()
        assert model.decode_plan() is not None
        model.model.layers[0].self_attn.v_proj = type("Swapped", (torch.nn.Linear,), {})(64, 32, bias=False)
        assert model.decode_plan() is None
