"""Optional: let the on-device LLM read a query too, through guided (schema-constrained) JSON generation.

The rules in ``albumen.search.query`` stay in charge; the LLM only *adds* what they missed, and everything it says is
checked before use:
- people and places it names must be in the library's vocabulary (resolved like typed names), so a hallucinated
  name can never become a filter that silently empties the result;
- its ``when`` is a phrase, interpreted by our own date rules (``find_dates``), never a date it computed itself;
- the semantic text stays the rules' text unless the rules left none.

``LLMQueryParser(generate_json)`` takes any ``(prompt, schema) -> dict`` callable, which is the seam tests fake.
``engine_query_parser()`` wires it to ``albumen.llm.guided`` when that module exists (imported lazily); it returns
None otherwise, so nothing here needs the LLM to be installed.

This module knows the query schema and how to trust the answer; it knows nothing about how tokens are generated.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from albumen.search.dates import find_dates
from albumen.search.query import ParsedQuery, Vocabulary, parse_query

__all__ = ["QUERY_SCHEMA", "JsonGenerator", "LLMQueryParser", "build_prompt", "engine_query_parser"]

JsonGenerator = Callable[[str, dict[str, Any]], Any]

QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 120},
        "people": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 6},
        "places": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 4},
        "when": {"type": "string", "maxLength": 60},
    },
    "required": ["text", "people", "places", "when"],
    "additionalProperties": False,
}


def build_prompt(raw: str, vocabulary: Vocabulary, today: date, max_names: int = 40) -> str:
    """The instruction for the LLM: the query, today's date and (a bounded list of) the names it may use."""
    people = ", ".join(vocabulary.people[:max_names]) or "(none)"
    places = ", ".join(sorted(set(vocabulary.places.values()))[:max_names]) or "(none)"
    return (
        "Split a photo search query into JSON fields.\n"
        "text: what should be visible in the photo (no names, places or dates).\n"
        "people: names of people from this list only: " + people + ".\n"
        "places: places from this list only: " + places + ".\n"
        'when: the time phrase as written (like "last summer", "christmas 2022"), or "".\n'
        f"Today is {today.isoformat()}.\n"
        f"Query: {raw}\nJSON:"
    )


def _as_object(answer: Any) -> dict[str, Any]:
    if isinstance(answer, str):
        answer = json.loads(answer)
    if not isinstance(answer, dict):
        raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
    return answer


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class LLMQueryParser:
    """Rules first, then the LLM's guided JSON for what the rules missed (see the module docstring).

    Args:
        generate_json: ``(prompt, schema) -> dict or JSON text``.
        on_error: called with the exception when the LLM fails; the rules' answer is used either way.
    """

    def __init__(self, generate_json: JsonGenerator, on_error: Callable[[Exception], None] | None = None) -> None:
        self.generate_json = generate_json
        self.on_error = on_error

    def __call__(self, raw: str, vocabulary: Vocabulary, today: date) -> ParsedQuery:
        rules = parse_query(raw, vocabulary, today)
        try:
            answer = _as_object(self.generate_json(build_prompt(raw, vocabulary, today), QUERY_SCHEMA))
        except Exception as exc:  # the LLM is a helper: any failure falls back to the rules
            if self.on_error is not None:
                self.on_error(exc)
            return rules
        extra = self._checked(raw, answer, vocabulary, today)
        if rules.dates is not None:  # the rules read a date phrase: the LLM's may only narrow it to nothing (it
            extra = replace(extra, dates=None)  # echoed "today" from the prompt here once), so it is not used
        return rules.merged(extra)

    @staticmethod
    def _checked(raw: str, answer: dict[str, Any], vocabulary: Vocabulary, today: date) -> ParsedQuery:
        """Only the parts of the LLM's answer that the library can vouch for."""
        people_aliases = vocabulary.people_aliases()
        people = [people_aliases[p.strip().lower()] for p in _strings(answer.get("people"))
                  if p.strip().lower() in people_aliases]
        places = [vocabulary.places.get(p.strip().lower()) or vocabulary.places.get(p.strip())
                  for p in _strings(answer.get("places"))]
        when = answer.get("when") if isinstance(answer.get("when"), str) else ""
        dates, _ = find_dates(when, today) if when else (None, [])
        text = answer.get("text") if isinstance(answer.get("text"), str) else ""
        return ParsedQuery(raw=raw, text=" ".join(text.split()), people=tuple(dict.fromkeys(people)),
                           places=tuple(dict.fromkeys(p for p in places if p)), dates=dates)


def engine_query_parser(**engine_options: Any) -> LLMQueryParser | None:
    """An ``LLMQueryParser`` on the on-device engine's guided JSON, or None when ``albumen.llm.guided`` is absent.

    ``albumen.llm.guided`` is expected to offer ``generate_json(prompt, schema, **options) -> dict``.
    """
    try:
        guided = importlib.import_module("albumen.llm.guided")
    except ImportError:
        return None
    generate = getattr(guided, "generate_json", None)
    if not callable(generate):
        return None
    return LLMQueryParser(lambda prompt, schema: generate(prompt, schema, **engine_options))
