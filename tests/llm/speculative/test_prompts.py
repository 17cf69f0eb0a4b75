"""The drafter prompt sets: the bench split never shares a topic or a record with the training splits."""

import json

import pytest

from albumen.llm.speculative.prompts import grounded_prompts, open_prompts


def _topics(prompts: list[str]) -> set[str]:
    return {p.split(" about ")[-1].split(" in ")[0].rstrip(".?") for p in prompts}


@pytest.mark.parametrize("train_split", ["train", "train-extra"])
def test_open_topics_of_train_splits_are_not_bench_topics(train_split: str) -> None:
    train = open_prompts(2000, train_split)
    bench = open_prompts(64, "bench")
    assert len(set(train)) == len(set(open_prompts(4000, train_split)))  # n beyond the pool repeats, adds nothing new
    assert not set(train) & set(bench)
    bench_topics = {p.rstrip(".?") for p in bench}
    assert not any(b.endswith(t) for b in bench_topics for t in _topics(train))


def test_extra_topics_are_new() -> None:
    assert not set(open_prompts(5000, "train")) & set(open_prompts(5000, "train-extra"))
    assert open_prompts(10, "train-extra") == open_prompts(10, "train-extra")  # seeded


def test_grounded_splits_use_disjoint_records(tmp_path) -> None:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("\n".join(json.dumps({"kind": "trip", "places": [{"city": f"C{i}"}], "people": [f"P{i}"],
                                           "tags": [], "photo_count": i}) for i in range(130)), encoding="utf-8")
    train = " ".join(grounded_prompts(facts, 200, "train"))
    bench = " ".join(grounded_prompts(facts, 200, "bench"))
    assert "Places: C29\n" in train and "Places: C30\n" not in train
    assert "Places: C30\n" in bench and "Places: C29\n" not in bench
