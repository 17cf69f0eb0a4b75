"""Training the draft head end to end on a tiny target: data shards, resumable training, better acceptance."""

from __future__ import annotations

from pathlib import Path

import torch

from albumen.llm.generate import _prompt_ids
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.head import HeadDrafter, load_head, save_head
from albumen.llm.speculative.train_head import (
    TrainConfig,
    batched_greedy,
    build_vocab,
    generate_data,
    init_head,
    load_shards,
    train_head,
)
from albumen.llm.testing import ByteTokenizer, tiny_model

from .conftest import plain_tokens


def test_batched_greedy_equals_plain_greedy_per_row() -> None:
    target = tiny_model(seed=5)
    prompts = [[1, 2, 3, 4], [9, 8, 7, 6], [5, 5, 5, 5]]
    rows = batched_greedy(target, prompts, 12, eos_ids=())
    for p, (toks, feats) in zip(prompts, rows):
        assert toks == p + plain_tokens(target, p, SamplingConfig(max_new_tokens=12, ignore_eos=True))
        assert feats.shape == (len(toks) - 1, target.args.dim)


def _acceptance(target, drafter, prompts) -> float:
    stats = SpeculativeStats()
    cfg = SamplingConfig(max_new_tokens=24, ignore_eos=True)
    for p in prompts:
        s = SpeculativeStats()
        list(speculative_decode(target, drafter, p, cfg, SpeculativeConfig(k=3, adaptive=False), stats=s))
        stats.drafted += s.drafted
        stats.accepted += s.accepted
    return stats.acceptance_rate


def test_training_raises_acceptance_and_resumes(tmp_path: Path) -> None:
    target, tok = tiny_model(seed=0, dim=64, tie_word_embeddings=False), ByteTokenizer()
    with torch.no_grad():  # larger logits: a random model then writes varied text instead of one repeated byte
        target.lm_head.weight.mul_(4.0)
        target.model.embed_tokens.weight.mul_(4.0)
    prompts = [f"story {i} about {w}" for i, w in enumerate(["cats", "dogs", "rain", "sun", "hills", "sea"] * 6)]
    summary = generate_data(target, tok, prompts, tmp_path / "data", minutes=5, batch_size=8, max_new_tokens=24,
                            log=lambda s: None)
    assert summary["remaining"] == 0 and summary["new_tokens"] > 0
    again = generate_data(target, tok, prompts, tmp_path / "data", minutes=5, log=lambda s: None)
    assert again["new_tokens"] == 0  # resumed: nothing left to do
    seqs, _ = load_shards(tmp_path / "data")
    assert len(seqs) == len(prompts)
    vocab = build_vocab(seqs, 64)
    untrained = HeadDrafter(init_head(target, vocab, "tiny"))
    cfg = TrainConfig(steps=60, batch_size=8, lr=3e-3, heldout=4, save_every=20)
    target.clear_caches()
    _, first = train_head(target, seqs, TrainConfig(**{**cfg.__dict__, "steps": 20}), tmp_path / "ckpt.pt", 5, "tiny",
                          64, log=lambda s: None)
    assert first["steps"] == 20
    head, summary = train_head(target, seqs, cfg, tmp_path / "ckpt.pt", 5, "tiny", 64, log=lambda s: None)
    assert summary["steps"] == 60 and summary["done"]  # resumed from step 20
    save_head(head, tmp_path / "head.safetensors", summary)
    loaded, meta = load_head(tmp_path / "head.safetensors")
    assert meta["steps"] == 60
    test_prompts = [_prompt_ids(tok, f"story {i} about {w}", chat=True) for i, w in enumerate(["cat", "sea", "hill"])]
    before = _acceptance(target, untrained, test_prompts)
    after = _acceptance(target, HeadDrafter(loaded), test_prompts)
    assert after > before + 0.1, (before, after)
    for p in test_prompts:  # and still exact
        cfg_g = SamplingConfig(max_new_tokens=24, ignore_eos=True)
        assert list(speculative_decode(target, HeadDrafter(loaded), p, cfg_g)) == plain_tokens(target, p, cfg_g)
