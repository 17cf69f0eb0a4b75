from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from albumen.search.dates import DateRange
from albumen.search.llm_parser import QUERY_SCHEMA, LLMQueryParser, build_prompt, engine_query_parser
from albumen.search.query import Vocabulary

TODAY = date(2026, 11, 28)
VOCAB = Vocabulary.build(["Anna Berg", "Tom"], ["Paris", "France"])


class FakeGuided:
    """Returns a canned answer and records what it was asked."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, prompt: str, schema: dict) -> Any:
        self.calls.append((prompt, schema))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_llm_adds_what_rules_missed_and_is_checked() -> None:
    fake = FakeGuided({"text": "dog", "people": ["anna", "Zorro"], "places": ["France", "Atlantis"],
                       "when": "christmas 2022"})
    q = LLMQueryParser(fake)("my pup with Ana around the holidays", VOCAB, TODAY)
    assert q.people == ("Anna Berg",)  # "Zorro" is not in the library: dropped
    assert q.places == ("France",)  # "Atlantis" dropped
    assert q.dates is not None and q.dates.ranges == (DateRange(date(2022, 12, 24), date(2022, 12, 27)),)
    assert q.text == "my pup with Ana around the holidays"  # the rules' text wins when there is one
    prompt, schema = fake.calls[0]
    assert schema is QUERY_SCHEMA and "Anna Berg" in prompt and "2026-11-28" in prompt


def test_rules_dates_are_never_narrowed_by_the_llm() -> None:
    # SmolLM2 once answered when="2026-11-28" (today, from the prompt): intersected with "last summer" that emptied
    # every result. The rules' date phrase stands; the LLM's "when" only counts when the rules found none.
    fake = FakeGuided({"text": "dog", "people": [], "places": [], "when": "2026-11-28"})
    q = LLMQueryParser(fake)("dog last summer", VOCAB, TODAY)
    assert q.dates is not None and q.dates.ranges == (DateRange(date(2026, 6, 1), date(2026, 9, 1)),)


def test_rules_and_llm_agree_without_duplicates() -> None:
    fake = FakeGuided(json.dumps({"text": "cake", "people": ["Tom"], "places": [], "when": ""}))
    q = LLMQueryParser(fake)("cake with Tom", VOCAB, TODAY)
    assert q.people == ("Tom",) and q.text == "cake" and q.dates is None


def test_llm_text_used_when_rules_leave_none() -> None:
    fake = FakeGuided({"text": "birthday  party", "people": [], "places": [], "when": ""})
    assert LLMQueryParser(fake)("Tom", VOCAB, TODAY).text == "birthday party"


def test_failures_fall_back_to_rules() -> None:
    errors: list[Exception] = []
    for answer in (RuntimeError("model not loaded"), "not json", ["a", "list"]):
        q = LLMQueryParser(FakeGuided(answer), on_error=errors.append)("cake with Tom in 2023", VOCAB, TODAY)
        assert q.people == ("Tom",) and q.text == "cake" and q.dates is not None
    assert len(errors) == 3


def test_prompt_is_bounded() -> None:
    vocab = Vocabulary.build([f"Person {i}" for i in range(500)], [])
    assert len(build_prompt("x", vocab, TODAY, max_names=10)) < 800


def test_engine_parser_absent_or_present_never_raises() -> None:
    parser = engine_query_parser()
    assert parser is None or isinstance(parser, LLMQueryParser)


@pytest.mark.heavy  # loads SmolLM2-135M (~20 s on 2 cores) and decodes with guided JSON
def test_real_engine_guided_json_adds_only_vouched_for_filters() -> None:
    from albumen.search.llm_parser import engine_query_parser

    parser = engine_query_parser()
    assert parser is not None
    errors: list[Exception] = []
    parser.on_error = errors.append
    vocab = Vocabulary.build(["Anna Berg", "Tom Smith"], ["Lisbon", "Portugal"])
    q = parser("dog on the beach with Anna last summer in Lisbon", vocab, date(2026, 11, 28))
    assert not errors, errors
    # the rules found these; the LLM may add, never invent: every filter is a name the library has
    assert q.people == ("Anna Berg",) and q.places == ("Lisbon",)
    assert q.dates is not None and q.dates.matches(date(2026, 7, 1)) and q.text == "dog on the beach"
