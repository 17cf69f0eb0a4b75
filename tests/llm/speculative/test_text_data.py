"""Teacher-forced text data for the draft head: features and argmax labels equal what decoding computes, padding
changes nothing, shards resume, and train_head reads them with the target's choices as labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.speculative import text_data
from albumen.llm.speculative.text_data import document_windows, generate_text_data, teacher_forced
from albumen.llm.speculative.train_head import build_vocab, load_shards
from albumen.llm.testing import ByteTokenizer, tiny_model


def _cached_features(model, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Normed last hidden states and argmax per position from the engine's cached forward."""
    feats: list[torch.Tensor] = []
    hook = model.model.layers[-1].register_forward_hook(lambda m, a, out: feats.append(model.model.norm(out)))
    model.setup_caches(1, 64)
    with torch.inference_mode():
        logits = model(torch.tensor([ids]), torch.arange(len(ids)))[0]
    hook.remove()
    return feats[0][0], logits.argmax(-1)


def test_teacher_forced_matches_the_cached_forward_and_ignores_padding() -> None:
    model = tiny_model(seed=3)
    windows = [[5, 9, 2, 7, 1, 3, 8, 4, 6, 2], [11, 12, 13, 14]]  # the second is right-padded in the batch
    rows = teacher_forced(model, windows)
    for w, (toks, feats, nxt) in zip(windows, rows):
        ref_feats, ref_next = _cached_features(model, w)
        assert toks == w and feats.dtype == torch.float16 and feats.shape == (len(w) - 1, model.args.dim)
        torch.testing.assert_close(feats.float(), ref_feats[:-1].float(), atol=2e-3, rtol=2e-3)
        assert nxt.tolist() == ref_next[:-1].tolist()


def test_windows_are_chat_replies_cut_to_length() -> None:
    tok = ByteTokenizer()
    docs = ["word " * 60, "short one, but long enough to keep as a window of text"]
    wins = document_windows(tok, docs, 64)
    assert all(16 <= len(w) <= 64 for w in wins) and len(wins) >= 5
    first = tok.decode(wins[0])
    assert "Write a short news report." in first
    with pytest.raises(ValueError, match="window"):
        document_windows(tok, docs, 8)


def test_shards_resume_and_load_with_argmax_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [f"Article {i}: the river rose again this spring and the town came out to watch it." for i in range(6)]
    monkeypatch.setattr(text_data, "corpus_documents", lambda: docs)
    model, tok = tiny_model(seed=1), ByteTokenizer()
    first = generate_text_data(model, tok, tmp_path, minutes=5, window=48, batch_size=4, log=lambda s: None)
    assert first["remaining"] == 0 and first["text_tokens"] > 0
    again = generate_text_data(model, tok, tmp_path, minutes=5, window=48, batch_size=4, log=lambda s: None)
    assert again["text_tokens"] == 0
    seqs, _ = load_shards(tmp_path)
    assert len(seqs) == first["windows"]
    toks, feats, plen, labels = seqs[0]
    _, ref_next = _cached_features(model, toks.tolist())
    assert plen == 0 and labels.tolist() == ref_next[:-1].tolist()  # the target's choices, not the text
    vocab = build_vocab(seqs, 300)
    assert set(vocab.tolist()) <= {t for s in seqs for t in s[3].tolist()}
