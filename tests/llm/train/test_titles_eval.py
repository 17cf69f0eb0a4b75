"""Titles report metrics: word F1, ROUGE-L, valid-JSON / hallucination / agreement rates."""

from __future__ import annotations

import json

import pytest

from albumen.llm.train.datasets.titles import Facts, Place
from albumen.llm.train.titles_eval import evaluate_replies, rouge_l_f1, word_f1

FACTS = Facts("x1", "trip", "2023-07-02", "2023-07-05", (Place("Porto", "Porto", "Portugal"),), ("Ana",),
              ("beach", "sunset"), 40)


def _reply(title: str, subtitle: str) -> str:
    return json.dumps({"title": title, "subtitle": subtitle})


def test_word_f1_and_rouge_l():
    assert word_f1("Summer in Porto", "summer in porto") == 1.0
    assert word_f1("a b c d", "a b x y") == pytest.approx(0.5)
    assert rouge_l_f1("a b c d", "a x c d") == pytest.approx(0.75)  # LCS a c d: p = r = 3/4
    assert rouge_l_f1("a b c", "c b a") == pytest.approx(1 / 3)  # order matters for ROUGE-L, not for word F1
    assert word_f1("a b c", "c b a") == 1.0
    assert word_f1("", "x") == 0.0 and rouge_l_f1("", "") == 1.0


def test_rates():
    facts = [FACTS] * 4
    raws = [
        _reply("Porto with Ana", "A sunny trip to Portugal"),  # valid, grounded
        _reply("Lisbon with Ana", "Days by the sea"),  # valid, Lisbon is not in the facts
        "not json at all",
        _reply("Porto sunsets", "Beach days in July"),
    ]
    teacher = [_reply("Porto with Ana", "A sunny trip to Portugal")] * 3 + ["garbage"]
    s = evaluate_replies(facts, raws, teacher)
    assert s.n == 4 and s.valid_json == 0.75
    assert s.hallucinated == pytest.approx(1 / 3)
    assert s.exact_title == pytest.approx(0.5)  # compared where both are valid: replies 1 and 2
    assert s.agreement_word_f1 is not None and 0.5 < s.agreement_word_f1 < 1.0
    assert evaluate_replies(facts, raws).agreement_rouge_l is None  # no teacher: no agreement
