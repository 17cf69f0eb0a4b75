"""Chat JSONL -> ids with assistant-only labels; packing; resumable batch order."""

from __future__ import annotations

import json

import pytest
import torch

from albumen.llm.testing import ByteTokenizer
from albumen.llm.train.data import IGNORE, Example, encode_chat, load_chat_jsonl, make_batches, pack_examples

MSGS = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "and?"},
    {"role": "assistant", "content": "bye"},
]


def test_labels_cover_exactly_the_assistant_turns():
    tok = ByteTokenizer()
    ex = encode_chat(MSGS, tok)
    full = tok.apply_chat_template(MSGS, add_generation_prompt=False)
    assert ex.input_ids == tok.encode(full)
    labelled = [t for t, lb in zip(ex.input_ids, ex.labels) if lb != IGNORE]
    assert labelled == tok.encode("hello<|im_end|>\nbye<|im_end|>\n")
    assert all(lb in (IGNORE, t) for t, lb in zip(ex.input_ids, ex.labels))


def test_bad_lines_are_reported_not_fatal(tmp_path):
    p = tmp_path / "d.jsonl"
    good = json.dumps({"messages": MSGS})
    lines = [good, "{not json", json.dumps({"messages": [{"role": "user", "content": "x"}]}),
             json.dumps({"messages": [{"role": "bot", "content": "x"}]}), "", good]
    p.write_text("\n".join(lines))
    rep = load_chat_jsonl(p, ByteTokenizer())
    assert len(rep.examples) == 2
    assert [e.split(":")[1] for e in rep.errors] == ["2", "3", "4"]
    assert "no assistant message" in rep.errors[1]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        load_chat_jsonl(tmp_path / "nope.jsonl", ByteTokenizer())


def test_truncation_keeps_rows_with_labels(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"messages": MSGS}) + "\n")
    rep = load_chat_jsonl(p, ByteTokenizer(), max_len=20)  # the assistant turn starts after 20 tokens
    assert rep.examples == [] and "after max_len" in rep.errors[0]


def test_packing_keeps_every_token_and_label():
    exs = [Example(list(range(n)), [IGNORE] + list(range(1, n))) for n in (5, 9, 3, 7, 2, 6)]
    rows = pack_examples(exs, seq_len=12, pad_id=0)
    assert all(len(r.input_ids) == 12 for r in rows)
    assert len(rows) == 3  # 32 tokens in rows of 12: first-fit-decreasing needs 3
    real = sorted(lb for r in rows for lb in r.labels if lb != IGNORE)
    assert real == sorted(lb for e in exs for lb in e.labels if lb != IGNORE)


def test_batch_order_is_seeded_and_resumable():
    rows = [Example([i, i], [i, i]) for i in range(10)]
    full = [ids[:, 0].tolist() for ids, _ in make_batches(rows, 3, 0, seed=1, epoch=0)]
    again = [ids[:, 0].tolist() for ids, _ in make_batches(rows, 3, 0, seed=1, epoch=0)]
    tail = [ids[:, 0].tolist() for ids, _ in make_batches(rows, 3, 0, seed=1, epoch=0, start=2)]
    other = [ids[:, 0].tolist() for ids, _ in make_batches(rows, 3, 0, seed=1, epoch=1)]
    assert full == again and tail == full[2:] and other != full
    assert sorted(sum(full, [])) == list(range(10))
    ids, labels = next(make_batches([Example([1, 2, 3], [1, 2, 3]), Example([4], [4])], 2, 9, 0, 0, shuffle=False))
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9]] and labels[1].tolist() == [4, IGNORE, IGNORE]
    assert ids.dtype == torch.long
