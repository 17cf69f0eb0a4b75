"""Teacher batching: shared-prefix KV + batched greedy decode == one-by-one greedy decode; resumable splits."""

from __future__ import annotations

import json

import pytest
import torch

from albumen.llm.testing import ByteTokenizer, tiny_model
from albumen.llm.train.datasets.teacher import (
    _prompt_parts,
    batch_plan,
    build_splits,
    missing_targets,
    run_teacher,
    teacher_generate,
)
from albumen.llm.train.datasets.titles import sample_facts


def _greedy_one(model, tok, fact, n: int, prefix: str = "") -> str:
    head, rest = _prompt_parts(tok, fact)
    ids = head + rest + tok.encode(prefix)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids + out]))[0, -1].argmax())  # no cache: the plain causal forward
            if nxt in tok.eos_ids:
                break
            out.append(nxt)
    return prefix + tok.decode(out)


@pytest.mark.parametrize("prefix", ["", '{"title": "'])
def test_batched_teacher_equals_one_by_one(prefix):
    tok, model = ByteTokenizer(), tiny_model(seed=2)
    facts = sample_facts(40, seed=1)
    plan = batch_plan([len(_prompt_parts(tok, f)[1]) for f in facts], batch_size=3)
    batch = [facts[i] for i in max(plan, key=len)]
    assert len(batch) >= 2
    got = teacher_generate(model, tok, batch, max_new_tokens=10, reply_prefix=prefix)
    model.clear_caches()
    assert got == [_greedy_one(model, tok, f, 10, prefix) for f in batch]


def test_batch_plan_groups_equal_lengths_and_keeps_window_order():
    lengths = [5, 7, 5, 5, 7, 9, 5, 7]
    plan = batch_plan(lengths, batch_size=2, window=4)
    assert sorted(i for b in plan for i in b) == list(range(8))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in plan)
    first_window = [i for b in plan[:3] for i in b]
    assert sorted(first_window) == [0, 1, 2, 3]  # window 0 is answered before window 1
    assert [len(b) for b in plan[:3]] == [2, 1, 1]  # full batches first within a window
    assert len(batch_plan(lengths, batch_size=4)) == 3  # one window: lengths 5 (4), 7 (3), 9 (1)


def test_teacher_resumes_and_splits(tmp_path):
    tok, model = ByteTokenizer(), tiny_model(seed=2)
    facts = sample_facts(12, seed=1)
    out = tmp_path / "teacher.jsonl"
    with pytest.raises(FileNotFoundError, match="no fact sets"):
        missing_targets(tmp_path)
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(f.to_json()) + "\n" for f in facts))
    assert run_teacher(facts[:5], out, model, tok, batch_size=4, max_new_tokens=4) == 5
    assert missing_targets(tmp_path) == 7
    assert run_teacher(facts, out, model, tok, batch_size=4, max_new_tokens=4) == 7  # the first 5 are skipped
    assert missing_targets(tmp_path) == 0
    with out.open("a") as f:  # fake good replies for two ids and a line cut by a kill
        for fact in facts[:2]:
            f.write(json.dumps({"id": fact.id, "raw": '{"title": "A day", "subtitle": "With friends"}'}) + "\n")
        f.write('{"id": "t1-000')
    counts = build_splits(facts, out, tmp_path, heldout=2)
    assert counts["answered"] == 12 and counts["heldout"] == 2
    assert counts["valid"] == 2 and counts["train"] == 2  # 4 tokens of a random model are never valid JSON
    rec = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert rec["messages"][-1]["role"] == "assistant"
