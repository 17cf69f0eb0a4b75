"""The EAGLE-style head drafter on tiny models: exactness, feature capture, cache reuse, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.head import DraftHead, HeadConfig, HeadDrafter, load_head, save_head
from albumen.llm.testing import tiny_model

from .conftest import plain_tokens


def random_head(target, seed: int = 0, vocab: torch.Tensor | None = None) -> DraftHead:
    torch.manual_seed(seed)
    cfg = HeadConfig.for_target(target.args, "tiny", intermediate_size=32)
    head = DraftHead(cfg, vocab if vocab is not None else torch.arange(target.args.vocab_size))
    return head.eval()


@pytest.mark.parametrize("seed", range(4))
def test_greedy_with_a_head_is_token_identical(seed: int) -> None:
    target = tiny_model(seed=seed)
    prompt = list(range(10 + seed, 30 + seed))
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    expected = plain_tokens(target, prompt, cfg)
    vocab = torch.tensor(sorted(set(expected[::2]) | {0, 1, 2}))  # a restricted draft vocabulary
    dtype = torch.bfloat16 if seed % 2 else None  # a bf16 head on an fp32 target: other drafts, same output
    drafter = HeadDrafter(random_head(target, seed, vocab), dtype=dtype)
    for spec in (SpeculativeConfig(k=3, adaptive=False), SpeculativeConfig(k=5)):
        assert list(speculative_decode(target, drafter, prompt, cfg, spec)) == expected
    assert drafter._hook is None  # the hook is gone after decoding


def test_captured_features_equal_the_full_forward() -> None:
    target = tiny_model(seed=3)
    prompt = [5, 9, 13, 5, 9]
    cfg = SamplingConfig(max_new_tokens=12, ignore_eos=True)
    drafter = HeadDrafter(random_head(target))
    out = list(speculative_decode(target, drafter, prompt, cfg, SpeculativeConfig(k=3, adaptive=False)))
    seq = prompt + out
    target.clear_caches()
    with torch.no_grad():
        hidden = {}
        hook = target.model.norm.register_forward_hook(lambda m, a, o: hidden.setdefault("h", o))
        target(torch.tensor([seq]))
        hook.remove()
    verified = len(seq) - 1  # the last token was never fed to the target
    torch.testing.assert_close(drafter._feats[:verified], hidden["h"][0, :verified], rtol=1e-4, atol=1e-4)


def test_sampling_reports_the_head_distribution() -> None:
    target = tiny_model(seed=1)
    drafter = HeadDrafter(random_head(target, vocab=torch.tensor([3, 7, 11])))
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=20, ignore_eos=True, seed=0)
    stats = SpeculativeStats()
    out = list(speculative_decode(target, drafter, [1, 2, 3], cfg, SpeculativeConfig(k=3, adaptive=False), stats=stats))
    assert len(out) == 20 and stats.drafted > 0
    drafter.start(target, [1, 2, 3], 64)
    target.setup_caches(1, 64)
    with torch.inference_mode():
        target(torch.tensor([[1, 2, 3]]), torch.arange(3))
        draft = drafter.propose([1, 2, 3, 4], 2, cfg, torch.Generator().manual_seed(0))
    drafter.finish()
    assert draft.probs is not None and draft.probs.shape == (2, target.args.vocab_size)
    assert set(draft.tokens) <= {3, 7, 11}
    torch.testing.assert_close(draft.probs.sum(-1), torch.ones(2))
    assert float(draft.probs[:, [0, 1, 2]].sum()) == 0.0  # never outside the head's vocabulary


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    target = tiny_model()
    head = random_head(target, vocab=torch.tensor([4, 8, 15, 16]))
    save_head(head, tmp_path / "h.safetensors", {"train_s": 1.5})
    loaded, meta = load_head(tmp_path / "h.safetensors")
    assert meta == {"train_s": 1.5}
    assert loaded.cfg == head.cfg and loaded.vocab.tolist() == [4, 8, 15, 16]
    x = torch.randn(1, 3, target.args.dim)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, x), head.half().float()(x, x), rtol=1e-3, atol=1e-3)
    with pytest.raises(FileNotFoundError, match="train one"):
        load_head(tmp_path / "missing.safetensors")


def test_head_for_another_width_is_refused() -> None:
    head = random_head(tiny_model(dim=32))
    with pytest.raises(ValueError, match="width"):
        list(speculative_decode(tiny_model(), HeadDrafter(head), [1, 2], SamplingConfig(max_new_tokens=4)))


def test_head_releases_the_target_when_it_will_not_draft_again() -> None:
    """At a fixed k = 0 (or when no probe can come before the end) the head's hook is removed at once, so the
    target decodes on its single-call plan; the output is plain decoding's either way."""
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.adaptive import SpeculativeConfig
    from albumen.llm.speculative.decode import speculative_decode
    from albumen.llm.testing import tiny_model

    from .conftest import plain_tokens

    target = tiny_model(seed=4)
    cfg = SamplingConfig(max_new_tokens=12, ignore_eos=True)
    expected = plain_tokens(target, [3, 4, 5], cfg)
    torch.manual_seed(0)
    head = DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(260)).eval()
    drafter = HeadDrafter(head)
    hooks_seen = []
    stream = speculative_decode(target, drafter, [3, 4, 5], cfg, SpeculativeConfig(k=0, adaptive=False))
    got = []
    for token in stream:
        got.append(token)
        hooks_seen.append(len(target.model.layers[-1]._forward_hooks))
    assert got == expected
    assert hooks_seen == [0] * len(got)  # watched the prefill only: the decode plan hands over features from there
    assert drafter.release() is False  # nothing left to release
    assert bool(drafter._feats[:2].abs().sum(-1).all())  # the prompt's features (positions 0, 1) were captured


def test_head_on_the_decode_plan_drafts_as_on_modules() -> None:
    """With the target on its decode plan (blocks and features from C++) the head gets the same features as through
    its hook on the module path: the same drafts, the same acceptance, plain decoding's output."""
    from albumen.llm.model import use_decode_kernels
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.adaptive import SpeculativeConfig
    from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
    from albumen.llm.testing import tiny_model

    from .conftest import plain_tokens

    cfg = SamplingConfig(max_new_tokens=24, ignore_eos=True)
    prompt = [3, 4, 5, 9, 3, 4]
    runs = []
    for fuse_model in (True, False):
        target = tiny_model(seed=4)
        torch.manual_seed(0)
        head = DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(260)).eval()
        target.setup_caches(1, 256)
        use_decode_kernels(target, fuse_model=fuse_model)
        with torch.inference_mode():
            assert (target.decode_plan() is not None) == fuse_model
        stats = SpeculativeStats()
        got = list(speculative_decode(target, HeadDrafter(head), prompt, cfg,
                                      SpeculativeConfig(k=3, adaptive=False, measure=False), stats=stats))
        assert got == plain_tokens(target, prompt, cfg)
        runs.append((got, stats.drafted, stats.accepted, stats.target_steps))
    assert runs[0] == runs[1]
    assert runs[0][1] > 0


def test_chain_hands_features_to_its_head() -> None:
    """``lookup+head`` on a target with a decode plan: the chain forwards ``observe`` to the head, so no hook stays on
    the target while decoding (the plan runs); a chain without a feature reader has no ``observe``."""
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.adaptive import SpeculativeConfig
    from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
    from albumen.llm.speculative.drafters.chain import ChainDrafter
    from albumen.llm.speculative.drafters.lookup import LookupDrafter
    from albumen.llm.testing import tiny_model

    from .conftest import plain_tokens

    target = tiny_model(seed=4)
    cfg = SamplingConfig(max_new_tokens=20, ignore_eos=True)
    prompt = [3, 4, 5, 9, 3, 4]
    torch.manual_seed(0)
    head = DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(260)).eval()
    chain = ChainDrafter([LookupDrafter(), HeadDrafter(head)])
    assert chain.observe is not None and ChainDrafter([LookupDrafter()]).observe is None
    stats = SpeculativeStats()
    hooks = []
    got = []
    for token in speculative_decode(target, chain, prompt, cfg, SpeculativeConfig(k=2, adaptive=False, measure=False),
                                    stats=stats):
        got.append(token)
        hooks.append(len(target.model.layers[-1]._forward_hooks))
    assert got == plain_tokens(target, prompt, cfg)
    assert set(hooks) == {0} and stats.drafted > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prompt_len", [6, 21])
def test_head_plan_drafts_as_the_module_path(dtype: torch.dtype, prompt_len: int) -> None:
    """The C++ draft step (``HeadPlan``: catch-up rows in blocks of 8, then k single steps) gives the module path's
    drafts at every step of a sequence with rollbacks, in fp32 and bf16, for short and long catch-ups."""
    from albumen.llm.model import use_decode_kernels

    target = tiny_model(seed=5)
    target.setup_caches(1, 128)
    use_decode_kernels(target)
    vocab = torch.tensor([0, 1, 2] + list(range(7, 260, 3)))
    gen = torch.Generator().manual_seed(prompt_len)
    tokens = torch.randint(3, 250, (prompt_len,), generator=gen).tolist()
    cfg = SamplingConfig(max_new_tokens=8, ignore_eos=True)
    drafters = [HeadDrafter(random_head(target, 1, vocab), dtype=dtype, plan=plan) for plan in (True, False)]
    with torch.inference_mode():
        for d in drafters:
            d.start(target, tokens, 128)
        target(torch.tensor([tokens]), torch.arange(len(tokens)))  # both hooks capture the prompt's features
        assert drafters[0]._plan is not None and drafters[1]._plan is None
        for step in range(12):
            k = 1 + step % 4
            drafts = [d.propose(tokens, k, cfg, None).tokens for d in drafters]
            assert drafts[0] == drafts[1] and len(drafts[0]) == k and all(t in vocab for t in drafts[0])
            keep = step % 3  # accept a prefix, then a token of the "target"'s own: rolls the head's cache back
            new = drafts[0][:keep] + [int(torch.randint(3, 250, (1,), generator=gen))]
            pos = len(tokens) - 1
            target(torch.tensor([[tokens[-1]] + new[:-1]]), torch.arange(pos, pos + len(new)))  # features via hooks
            tokens = tokens + new
        for d in drafters:
            d.finish()


def test_head_plan_refuses_bad_input() -> None:
    from albumen.llm.model import use_decode_kernels

    target = tiny_model(seed=5)
    target.setup_caches(1, 64)
    use_decode_kernels(target)
    drafter = HeadDrafter(random_head(target, 1))
    drafter.start(target, [3, 4, 5], 64)
    plan = drafter._plan
    assert plan is not None
    dim = target.args.dim
    with pytest.raises(RuntimeError, match="feats must be"):
        plan.draft([4, 5], torch.zeros(3, dim), 0, 2)
    with pytest.raises(RuntimeError, match="beyond the cache"):
        plan.draft([4, 5], torch.zeros(2, dim), 62, 2)
    with pytest.raises(RuntimeError, match="out of range"):
        plan.draft([4, 10**6], torch.zeros(2, dim), 0, 1)
    assert len(plan.draft([4, 5], torch.zeros(2, dim), 0, 3)) == 3
    drafter.finish()


def test_head_confidence_rule_is_the_same_on_the_plan_and_modules() -> None:
    """``min_confidence`` stops a draft before a token the head doubts, in the C++ step as in module calls (same
    drafts, some cut short, some kept), and the greedy output stays the target's."""
    from albumen.llm.model import use_decode_kernels

    target = tiny_model(seed=6)
    with torch.no_grad():
        target.lm_head.weight.mul_(20.0)  # peaky distributions: confident and unsure drafts both occur
    prompt = list(range(20, 44))
    cfg = SamplingConfig(max_new_tokens=30, ignore_eos=True)
    expected = plain_tokens(target, prompt, cfg)
    assert list(speculative_decode(target, HeadDrafter(random_head(target, 2), min_confidence=0.7), prompt, cfg,
                                   SpeculativeConfig(k=4, adaptive=False))) == expected
    target.setup_caches(1, 128)
    use_decode_kernels(target)
    drafters = [HeadDrafter(random_head(target, 2), plan=plan, min_confidence=0.7) for plan in (True, False)]
    tokens = list(prompt)
    lengths = []
    with torch.inference_mode():
        for d in drafters:
            d.start(target, tokens, 128)
        target(torch.tensor([tokens]), torch.arange(len(tokens)))
        assert drafters[0]._plan is not None
        for new in expected[:16]:
            drafts = [d.propose(tokens, 4, cfg, None).tokens for d in drafters]
            assert drafts[0] == drafts[1]
            lengths.append(len(drafts[0]))
            target(torch.tensor([[tokens[-1]]]), torch.tensor([len(tokens) - 1]))  # one verified token per step
            tokens.append(new)
        for d in drafters:
            d.finish()
    assert min(lengths) < 4 and max(lengths) > 0
    assert drafters[0].passes == drafters[1].passes > sum(lengths)  # the same passes paid, stopped ones included
    with pytest.raises(ValueError, match="min_confidence"):
        HeadDrafter(random_head(target, 2), min_confidence=-0.1)
