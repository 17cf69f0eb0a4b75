"""Guided JSON: every output parses and validates (jsonschema is the oracle), masks agree with brute force."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest
import torch

from albumen.llm.generate import generate
from albumen.llm.guided import (
    GuideLimits,
    JsonSchemaConstraint,
    SchemaError,
    TokenIndex,
    can_finish,
    compile_schema,
    completion_bytes,
    generate_json,
    step,
)
from albumen.llm.sampling import SamplingConfig
from albumen.llm.testing import ByteTokenizer, one_thread, tiny_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


jsonschema = pytest.importorskip("jsonschema")

# Multi-byte pieces like a BPE vocabulary has: structure fused with text, partial UTF-8, escapes, numbers.
_MERGED = [
    b'{"', b'":', b'":"', b'","', b'"}', b'"]', b'["', b'},{"', b'true', b'false', b'null', b'123', b'-0', b'.5',
    b'title', b'the', b' the', b'ab', b'\\"', b'\\n', b'\\u00e9', b'\xc3\xa9', b'\xe2\x82', b'\xac', b'\xed\xa0',
    b'\xf4\x90', b'", "', b'"\n', b'}', b'],', b'1,', b'0.', b'name', b'"name":"', b'"tags":["', b'x' * 12,
]


class MergedTokenizer(ByteTokenizer):
    """Bytes 0..255, the four specials, then ``_MERGED`` pieces."""

    def __init__(self) -> None:
        super().__init__(260 + len(_MERGED))

    def token_bytes(self) -> list[bytes | None]:
        return super().token_bytes()[:260] + list(_MERGED)

    def decode(self, ids: Sequence[int]) -> str:
        pieces = self.token_bytes()
        return b"".join(pieces[i] or b"" for i in ids).decode("utf-8", errors="replace")


SCHEMAS = {
    "flat": {
        "type": "object",
        "properties": {"title": {"type": "string", "maxLength": 12}, "year": {"type": "integer"},
                       "ok": {"type": "boolean"}},
        "required": ["title", "year", "ok"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 2, "maxLength": 20},
            "chapters": {
                "type": "array", "minItems": 1, "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 8},
                                   "mood": {"enum": ["happy", "calm", "happ", 3, None]},
                                   "photos": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                                         "maximum": 99}, "maxItems": 4}},
                    "required": ["name", "photos"],
                },
            },
            "score": {"type": "number", "minimum": -1.5, "maximum": 2.25},
        },
        "required": ["title", "chapters"],
    },
    "all_optional": {
        "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 3}, "ab": {"type": "null"},
                       "abc": {"const": {"k": [1, "é"]}}},
    },
    "adversarial_numbers": {
        "type": "array", "minItems": 2, "maxItems": 5,
        "items": {"type": "number", "minimum": -10.25, "maximum": -9.5},
    },
    "tight_integers": {"type": "array", "minItems": 3, "maxItems": 3,
                       "items": {"type": "integer", "minimum": 997, "maximum": 1003}},
    "empty_string_only": {"type": "object", "properties": {"s": {"type": "string", "maxLength": 0}},
                          "required": ["s"]},
    "min_length": {"type": "array", "items": {"type": "string", "minLength": 5, "maxLength": 5}, "minItems": 1,
                   "maxItems": 2},
    "nested_arrays": {"type": "array", "maxItems": 2,
                      "items": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "boolean"}}},
    "enum_root": {"enum": ["x", "xy", 1, 12, True, {"a": 1}]},
    "number_root": {"type": "integer", "minimum": -3, "maximum": 250},
    "empty_object": {"type": "object"},
}


def _validates(value: object, schema: dict) -> None:
    jsonschema.validate(value, schema)


@pytest.mark.parametrize("tokenizer_cls", [ByteTokenizer, MergedTokenizer])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_sampled_outputs_always_parse_and_validate(name: str, tokenizer_cls: type) -> None:
    schema = SCHEMAS[name]
    tok = tokenizer_cls()
    model = tiny_model(vocab=tok.vocab_size, seed=3)
    index = TokenIndex.from_tokenizer(tok)
    for seed in range(3):
        for budget in (3, 48):  # a tiny budget forces the completion path
            cfg = SamplingConfig(temperature=1.5, max_new_tokens=budget, seed=seed)
            constraint = JsonSchemaConstraint(schema, tok, index=index, limits=GuideLimits(16, 4))
            generate(model, tok, "make json", cfg, constraint)
            text = (constraint.text + completion_bytes(constraint.state, constraint.nodes)).decode("utf-8")
            _validates(json.loads(text), schema)


def test_generate_json_returns_a_valid_value() -> None:
    tok = MergedTokenizer()
    model = tiny_model(vocab=tok.vocab_size, seed=5)
    schema = SCHEMAS["nested"]
    value = generate_json("plan", schema, model, tok, SamplingConfig(temperature=1.0, max_new_tokens=40, seed=1))
    _validates(value, schema)
    with pytest.raises(ValueError, match="tokenizer"):
        generate_json("plan", schema, model)


def _accepts(schema: dict, doc: bytes) -> bool:
    nodes = compile_schema(schema)
    state: tuple | None = (("value", 0),)
    for b in doc:
        state = step(state, b, nodes)
        if state is None:
            return False
    return can_finish(state, nodes)


@pytest.mark.parametrize(
    "doc",
    [
        b'{"title":"ab","chapters":[{"name":"x","photos":[]}]}',
        b'{"title":"\xc3\xa9\xc3\xa9","chapters":[{"name":"x","mood":null,"photos":[0,99]}],"score":-1.5}',
        b'{"title":"a\\"","chapters":[{"name":"","mood":"happ","photos":[]},{"name":"y","photos":[7]}],"score":2.25}',
    ],
)
def test_automaton_accepts_valid_documents(doc: bytes) -> None:
    schema = SCHEMAS["nested"]
    _validates(json.loads(doc), schema)
    assert _accepts(schema, doc)


@pytest.mark.parametrize(
    "doc",
    [
        b'{"chapters":[{"name":"x","photos":[]}]}',  # missing required key
        b'{"title":"a","chapters":[{"name":"x","photos":[]}]}',  # minLength
        b'{"title":"ab","chapters":[]}',  # minItems
        b'{"title":"ab","chapters":[{"name":"123456789","photos":[]}]}',  # maxLength
        b'{"title":"ab","chapters":[{"name":"x","photos":[100]}]}',  # maximum
        b'{"title":"ab","chapters":[{"name":"x","photos":[1.5]}]}',  # integer
        b'{"title":"ab","chapters":[{"name":"x","photos":[]}],"score":2.3}',  # maximum
        b'{"title":"ab","chapters":[{"name":"x","mood":"sad","photos":[]}]}',  # enum
        b'{"title":"ab","chapters":[{"name":"x","photos":[]}],"extra":1}',  # unknown key
        b'{"title":"a\xed\xa0\x80","chapters":[{"name":"x","photos":[]}]}',  # UTF-8 surrogate
        b'{"title":"ab\x01","chapters":[{"name":"x","photos":[]}]}',  # control character
        b'{"title":"ab","chapters":[{"name":"x","photos":[01]}]}',  # leading zero
        b'{"title":"ab","chapters":[{"name":"x","photos":[]}]',  # unfinished
    ],
)
def test_automaton_rejects_invalid_documents(doc: bytes) -> None:
    assert not _accepts(SCHEMAS["nested"], doc)


@pytest.mark.parametrize("name", ["nested", "adversarial_numbers", "min_length"])
def test_mask_equals_brute_force_over_the_vocabulary(name: str) -> None:
    tok = MergedTokenizer()
    pieces = tok.token_bytes()
    model = tiny_model(vocab=tok.vocab_size, seed=7)
    constraint = JsonSchemaConstraint(SCHEMAS[name], tok)
    gen = torch.Generator().manual_seed(0)
    checked = 0
    with torch.no_grad():
        while not constraint.done and checked < 25:
            mask = constraint.allowed()
            for idx, piece in enumerate(pieces):
                state: tuple | None = constraint.state
                for b in piece or b"":
                    state = step(state, b, constraint.nodes) if state is not None else None
                expected = piece is not None and state is not None
                if idx in tok.eos_ids:
                    expected = can_finish(constraint.state, constraint.nodes)
                assert bool(mask[idx]) == expected, (idx, piece, constraint.text)
            logits = model(torch.tensor([[0]]))[0, -1].masked_fill(~mask, float("-inf"))
            token = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
            if token in tok.eos_ids:
                break
            constraint.advance(token)
            checked += 1
    assert checked > 3


def test_completion_of_every_prefix_of_a_document_validates() -> None:
    schema = SCHEMAS["nested"]
    nodes = compile_schema(schema)
    doc = '{"title":"Été à Paris","chapters":[{"name":"jour 1","mood":"calm","photos":[12,3]}],"score":-1.25}'
    state: tuple = (("value", 0),)
    raw = doc.encode()
    for i, b in enumerate(raw):
        value = json.loads((raw[:i] + completion_bytes(state, nodes)).decode())
        _validates(value, schema)
        state = step(state, b, nodes)
        assert state is not None


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "a+"}, "pattern"),
        ({"anyOf": [{"type": "string"}]}, "anyOf"),
        ({"type": "string", "minLength": 3, "maxLength": 2}, "minLength"),
        ({"type": "array", "minItems": 3, "maxItems": 2}, "minItems"),
        ({"type": "object", "properties": {}, "required": ["x"]}, "required"),
        ({"type": ["string", "null"]}, "unsupported"),
        ({"enum": []}, "empty enum"),
        ({"type": "integer", "minimum": 3, "maximum": 1}, "minimum"),
    ],
)
def test_unsupported_or_impossible_schemas_are_clear_errors(schema: dict, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        compile_schema(schema)


def test_advance_rejects_a_token_the_mask_forbids() -> None:
    tok = ByteTokenizer()
    constraint = JsonSchemaConstraint({"type": "boolean"}, tok)
    assert not bool(constraint.allowed()[ord("x")])
    with pytest.raises(ValueError, match="not allowed"):
        constraint.advance(ord("x"))
