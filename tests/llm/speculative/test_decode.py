"""The speculative loop on tiny random models: greedy output identical to plain greedy for every drafter (property
over seeds), the target's distribution when sampling (exact enumeration vs. chi-square), rollback and stats."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode, speculative_generate
from albumen.llm.speculative.drafters.head import DraftHead, HeadConfig, HeadDrafter
from albumen.llm.speculative.drafters.lookup import LookupDrafter
from albumen.llm.speculative.drafters.model import ModelDrafter
from albumen.llm.testing import ByteTokenizer, tiny_model

from .conftest import OracleDrafter, RandomDrafter, plain_tokens

GREEDY = SamplingConfig(max_new_tokens=40, ignore_eos=True)


def _drafters(seed: int, prompt: list[int], continuation: list[int]):
    return {
        "lookup": LookupDrafter(),
        "model": ModelDrafter(tiny_model(seed=seed + 100, dim=32)),
        "random": RandomDrafter(260, seed),
        "oracle": OracleDrafter(continuation, len(prompt)),
        "oracle-wrong": OracleDrafter(continuation, len(prompt), wrong_every=3),
    }


@pytest.mark.parametrize("seed", range(6))
def test_greedy_is_token_identical_to_plain_greedy(seed: int) -> None:
    target = tiny_model(seed=seed)
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, 256, (int(torch.randint(1, 20, (1,), generator=g)),), generator=g).tolist()
    cfg = GREEDY if seed % 2 == 0 else SamplingConfig(max_new_tokens=40, ignore_eos=True, repetition_penalty=1.3)
    expected = plain_tokens(target, prompt, cfg)
    for name, drafter in _drafters(seed, prompt, expected).items():
        for spec in (SpeculativeConfig(k=4), SpeculativeConfig(k=3, adaptive=False), SpeculativeConfig(k=8, k_max=8)):
            got = list(speculative_decode(target, drafter, prompt, cfg, spec))
            assert got == expected, (name, spec)


def test_stops_at_eos_and_max_new_tokens_like_plain() -> None:
    target = tiny_model(seed=4)
    prompt = [5, 6, 7, 8]
    free = plain_tokens(target, prompt, GREEDY)
    eos = (free[9],)  # a token that appears mid-way ends generation there
    cfg = SamplingConfig(max_new_tokens=40)
    expected = plain_tokens(target, prompt, cfg, eos)
    assert len(expected) <= 9
    got = list(speculative_decode(target, OracleDrafter(free, len(prompt)), prompt, cfg, eos_ids=eos))
    assert got == expected
    for n in (1, 2, 5):
        short = SamplingConfig(max_new_tokens=n, ignore_eos=True)
        assert list(speculative_decode(target, OracleDrafter(free, len(prompt)), prompt, short)) == free[:n]


def test_stats_count_accepted_and_drafted() -> None:
    target = tiny_model(seed=1)
    prompt = [1, 2, 3]
    expected = plain_tokens(target, prompt, GREEDY)
    stats = SpeculativeStats()
    list(speculative_decode(target, OracleDrafter(expected, 3), prompt, GREEDY, SpeculativeConfig(k=4, adaptive=False),
                            stats=stats))
    assert stats.acceptance_rate == 1.0
    assert stats.new_tokens == 40
    assert stats.target_steps == 8  # 39 tokens after the first: 7 steps of 5 and one of 4
    assert stats.tokens_per_step == pytest.approx(39 / 8)
    rejected = SpeculativeStats()
    list(speculative_decode(target, RandomDrafter(260), prompt, GREEDY, SpeculativeConfig(k=4), stats=rejected))
    assert rejected.acceptance_rate < 0.2
    assert rejected.draft_lengths[-1] == 0  # the controller stopped drafting


def _peaky(seed: int, vocab: int):
    model = tiny_model(vocab=vocab, dim=32, n_layers=1, seed=seed, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # far from uniform, so a wrong distribution shows
    return model


def _noisy_copy(model, seed: int, scale: float = 0.4):
    """A drafter that roughly agrees with the target (so that some drafts are kept and some rejected)."""
    import copy

    draft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = draft.lm_head.weight
        w.add_(torch.randn(w.shape, generator=g) * scale * w.std())
    return draft


def _exact_joint(target, prompt: list[int], cfg: SamplingConfig, vocab: int) -> torch.Tensor:
    """P(x1, x2, x3 | prompt) by enumeration, (V, V, V)."""
    from albumen.llm.sampling import logits_to_probs

    def probs(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return logits_to_probs(target(torch.tensor([ids]))[0, -1], cfg)

    target.clear_caches()
    joint = torch.zeros(vocab, vocab, vocab)
    p1 = probs(prompt)
    for a in range(vocab):
        p2 = probs(prompt + [a])
        for b in range(vocab):
            joint[a, b] = p1[a] * p2[b] * probs(prompt + [a, b])
    return joint


@pytest.mark.parametrize("kind", ["model", "model-vocab", "lookup", "head"])
def test_sampled_output_has_the_target_distribution(kind: str) -> None:
    vocab, draws = 5, 1200
    target = _peaky(0, vocab)
    prompt = [1, 2, 1, 3, 1]
    cfg = SamplingConfig(temperature=1.0, top_k=4, max_new_tokens=3, ignore_eos=True, seed=None)
    exact = _exact_joint(target, prompt, cfg, vocab)[:, :, :].sum(0)  # (x2, x3): both come from one speculative step
    if kind == "head":
        torch.manual_seed(0)
        head = DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(vocab))
        drafter = HeadDrafter(head.eval())
    else:
        # model-vocab: a draft vocabulary {0, 1, 3} plus the prompt's token 2; token 4 is never drafted
        vocab_ids = torch.tensor([0, 1, 3]) if kind == "model-vocab" else None
        drafter = (ModelDrafter(_noisy_copy(target, 7), vocab=vocab_ids) if kind.startswith("model")
                   else LookupDrafter())
    spec = SpeculativeConfig(k=2, adaptive=False)
    torch.manual_seed(0)
    counts = torch.zeros(vocab, vocab)
    accepted = 0
    for i in range(draws):
        stats = SpeculativeStats()
        out = list(speculative_decode(target, drafter, prompt, SamplingConfig(**{**cfg.__dict__, "seed": i}), spec,
                                      stats=stats))
        counts[out[1], out[2]] += 1
        accepted += stats.accepted
    assert accepted > draws * 0.1  # speculation really happened
    expected = exact * draws
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2) / expected.clamp_min(1e-9))[keep].sum())
    df = int(keep.sum()) - 1
    assert counts[~keep].sum() <= 2 * expected[~keep].sum() + 10
    assert chi2 < df + 4 * (2 * df) ** 0.5, (chi2, df)  # ~ the 0.999 quantile


def test_text_level_wrapper_matches_plain_generate() -> None:
    from albumen.llm.generate import generate

    target, tok = tiny_model(seed=2), ByteTokenizer()
    cfg = SamplingConfig(max_new_tokens=30, ignore_eos=True)
    plain = generate(target, tok, "hello hello", cfg)
    pieces: list[str] = []
    spec = speculative_generate(target, tok, LookupDrafter(), "hello hello", cfg, on_text=pieces.append)
    assert spec.token_ids == plain.token_ids and spec.text == plain.text == "".join(pieces)
    assert spec.finish_reason == plain.finish_reason


def test_model_drafter_refuses_another_vocabulary() -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        list(speculative_decode(tiny_model(), ModelDrafter(tiny_model(vocab=300)), [1, 2], GREEDY))


def test_empty_prompt_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        list(speculative_decode(tiny_model(), LookupDrafter(), [], GREEDY))


def test_model_drafter_cost_is_its_weight_share() -> None:
    from albumen.llm.speculative.drafters.model import parameter_cost

    small, big = tiny_model(dim=32), tiny_model(dim=64, n_layers=4)
    big.setup_caches(1, 512)  # caches are not weights
    assert 0.05 < parameter_cost(small, big) < 0.5
    assert parameter_cost(big, small) == 1.0


class _CountingDrafter(RandomDrafter):
    def __init__(self, vocab: int) -> None:
        super().__init__(vocab)
        self.calls = 0

    def propose(self, tokens, k, cfg, generator):  # noqa: ANN001
        self.calls += 1
        return super().propose(tokens, k, cfg, generator)


@pytest.mark.parametrize("cfg", [GREEDY, SamplingConfig(max_new_tokens=30, temperature=0.8, top_p=0.9, seed=3,
                                                         ignore_eos=True, repetition_penalty=1.2)])
def test_k0_is_plain_decoding_without_the_drafter(cfg: SamplingConfig) -> None:
    """A fixed k = 0 runs the plain decode step: the drafter is never asked, no block is verified, and the output
    (sampled too, same seed) equals plain decoding's."""
    target = tiny_model(seed=5)
    prompt = [3, 1, 4, 1, 5]
    drafter, stats = _CountingDrafter(260), SpeculativeStats()
    got = list(speculative_decode(target, drafter, prompt, cfg, SpeculativeConfig(k=0, adaptive=False), stats=stats))
    assert got == plain_tokens(target, prompt, cfg)
    assert drafter.calls == 0 and stats.drafted == 0
    assert stats.target_steps == cfg.max_new_tokens - 1 and set(stats.draft_lengths) == {0}
