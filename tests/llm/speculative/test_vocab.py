"""Draft vocabularies (vocab.py) and a model drafter restricted to one: greedy output still identical to plain,
drafts only from the vocabulary plus the prompt, the draft model's own head given back, quantized heads stay
quantized. (The sampled-distribution check with a restricted vocabulary is in test_decode.py.)"""

from __future__ import annotations

import pytest
import torch

from albumen.llm.quant import QuantConfig, quantize_model
from albumen.llm.quant.linear import QuantizedLinear
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.model import ModelDrafter, restrict_vocab
from albumen.llm.speculative.vocab import draft_vocab, load_draft_vocab, save_draft_vocab, token_counts
from albumen.llm.testing import ByteTokenizer, tiny_model

from .conftest import plain_tokens

CFG = SamplingConfig(max_new_tokens=32, ignore_eos=True)


def test_draft_vocab_keeps_the_most_frequent_ids_then_the_lowest() -> None:
    counts = torch.tensor([0, 5, 0, 9, 5, 0, 1, 0])
    assert draft_vocab(counts, 3).tolist() == [1, 3, 4]  # 9, then the two 5s
    assert draft_vocab(counts, 5).tolist() == [0, 1, 3, 4, 6]  # then 1, then the lowest unseen id
    assert draft_vocab(counts, 2, always=[7]).tolist() == [1, 3, 7]
    with pytest.raises(ValueError, match="size"):
        draft_vocab(counts, 0)


def test_token_counts_count_encoded_text() -> None:
    tok = ByteTokenizer()
    counts = token_counts(tok, ["abca", "a"], tok.vocab_size)
    assert counts[ord("a")] == 3 and counts[ord("b")] == 1 and int(counts.sum()) == 5


def test_vocab_file_round_trip_and_bad_files(tmp_path) -> None:
    path = tmp_path / "v.json"
    save_draft_vocab(path, torch.tensor([5, 2, 9]), {"tokenizer": "fake"})
    assert load_draft_vocab(path).tolist() == [2, 5, 9]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a draft vocabulary"):
        load_draft_vocab(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="python -m albumen.llm.speculative.vocab"):
        load_draft_vocab(tmp_path / "missing.json")


@pytest.mark.parametrize("quant", [None, "int4-g32"])
def test_restricted_model_drafter_is_exact_and_gives_the_head_back(quant: str | None) -> None:
    target = tiny_model(seed=5)
    draft = tiny_model(seed=5)  # the same weights: drafts are mostly right, so restricting the vocab shows
    if quant:
        quantize_model(draft, QuantConfig.from_scheme(quant))
    full_head = draft.lm_head
    prompt = [200, 201, 10, 20, 30, 10, 20]
    expected = plain_tokens(target, prompt, CFG)
    vocab = torch.tensor(sorted(set(expected[:16])))  # part of what the target says, none of the prompt's 2xx
    seen: list[int] = []
    drafter = ModelDrafter(draft, vocab=vocab)
    original = drafter.propose

    def propose(tokens, k, cfg, gen):  # noqa: ANN001
        out = original(tokens, k, cfg, gen)
        seen.extend(out.tokens)
        return out

    drafter.propose = propose  # type: ignore[method-assign]
    stats = SpeculativeStats()
    got = list(speculative_decode(target, drafter, prompt, CFG, SpeculativeConfig(k=3, adaptive=False), stats=stats))
    assert got == expected
    assert stats.accepted > 0 and seen
    assert set(seen) <= set(vocab.tolist()) | set(prompt)
    assert draft.lm_head is full_head  # finish() restored the draft model's head


def test_restrict_vocab_scores_exactly_the_chosen_rows() -> None:
    model = tiny_model(seed=1)
    ids = torch.tensor([3, 7, 250])
    x = torch.randn(2, model.args.dim)
    with torch.no_grad():
        assert torch.allclose(restrict_vocab(model, ids)(x), model.lm_head(x)[:, ids], atol=1e-5)
    quantize_model(model, QuantConfig.from_scheme("int4-g32"))
    small = restrict_vocab(model, ids)
    assert isinstance(small.head, QuantizedLinear)  # a quantized head stays quantized (3 rows padded to 16)
    with torch.no_grad():
        assert torch.allclose(small(x), model.lm_head(x)[:, ids], atol=1e-2)


@pytest.mark.parametrize("greedy", [True, False])
def test_quantized_draft_model_drafts_on_its_plan_as_on_modules(greedy: bool) -> None:
    """An int4 draft model with a draft vocabulary runs on its single-call plan (quant.plan, with the restricted
    head): the same drafts, acceptance and output as through its modules."""
    from albumen.llm.kernels.quant_plan import quant_plan_module

    if quant_plan_module() is None:
        pytest.skip("quant plan not built")
    prompt = [200, 201, 10, 20, 30, 10, 20]
    cfg = CFG if greedy else SamplingConfig(max_new_tokens=CFG.max_new_tokens, temperature=0.8, seed=3,
                                            ignore_eos=True)
    runs = []
    for use_plan in (True, False):
        target = tiny_model(seed=5)
        draft = tiny_model(seed=5)
        quantize_model(draft, QuantConfig.from_scheme("int4-g32-all"))  # the head too (on the plan's GEMV)
        vocab = torch.tensor(sorted(set(plain_tokens(target, prompt, CFG)[:16]) | {0, 1, 2}))
        drafter = ModelDrafter(draft, vocab=vocab)
        if not use_plan:
            drafter._vocab_plan = lambda prompt_ids: None  # type: ignore[method-assign]
        seen: list[int] = []
        original = drafter.propose

        def propose(tokens, k, c, gen, original=original, seen=seen, drafter=drafter, use_plan=use_plan):  # noqa: ANN001
            assert (drafter._plan is not None) == use_plan
            out = original(tokens, k, c, gen)
            seen.extend(out.tokens)
            return out

        drafter.propose = propose  # type: ignore[method-assign]
        stats = SpeculativeStats()
        got = list(speculative_decode(target, drafter, prompt, cfg, SpeculativeConfig(k=3, adaptive=False,
                                                                                      measure=False), stats=stats))
        if greedy:
            assert got == plain_tokens(target, prompt, cfg)
        runs.append((got, seen, stats.accepted))
    assert runs[0] == runs[1] and runs[0][1]
