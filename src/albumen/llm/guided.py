"""Guided generation: output constrained to a JSON schema by masking logits at every step.

The schema is compiled into nodes; a byte-level pushdown automaton over those nodes says which next bytes keep the
output a valid prefix of some document that validates. Its state is an immutable stack of small tuples (frames), so
states can be memoized. A token is allowed when all its bytes are accepted in turn; the vocabulary is walked as a trie
so that dead prefixes are pruned, and inside strings the common "plain text" tokens are checked in one vectorized
comparison instead of byte by byte.

Supported: objects (``properties``, ``required``; keys come in schema order, optional ones may be skipped, no extra
keys), strings (``minLength``, ``maxLength``), ``enum`` and ``const`` (any JSON values), integers and numbers
(``minimum``, ``maximum``; no exponents), booleans, null, arrays (``items``, ``minItems``, ``maxItems``). Output is
compact JSON (no whitespace). To make every output finish, strings without ``maxLength`` are capped at
``GuideLimits.max_string_length`` and arrays without ``maxItems`` at ``GuideLimits.max_items``; still valid outputs.
Unsupported keywords (``anyOf``, ``$ref``, ``pattern`` ...) raise ``SchemaError``.
This module knows nothing about models; it only needs each token's bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.tokenizer import Tokenizer

__all__ = [
    "GuideLimits",
    "JsonSchemaConstraint",
    "SchemaError",
    "TokenIndex",
    "compile_schema",
    "completion_bytes",
    "generate_json",
]

_IGNORED = {"title", "description", "$schema", "default", "examples", "$id", "$comment", "additionalProperties"}
_ESCAPABLE = frozenset(b'"\\/bfnrt')
_MAX_INT_DIGITS, _MAX_FRAC_DIGITS = 15, 6
# Allowed range of the next UTF-8 continuation byte, by the code stored in a string frame's ``pending // 10``.
_CONT_RANGES = ((0x80, 0xBF), (0xA0, 0xBF), (0x80, 0x9F), (0x90, 0xBF), (0x80, 0x8F))


class SchemaError(ValueError):
    """A schema this engine cannot enforce; the message names the keyword."""


@dataclass(frozen=True)
class GuideLimits:
    max_string_length: int = 200
    max_items: int = 16


@dataclass(frozen=True)
class Node:
    kind: str  # object | array | string | number | integer | literal
    props: tuple[tuple[bytes, int, bool], ...] = ()  # object: (b'"key":', child node, required)
    item: int = -1  # array: child node
    min_len: int = 0  # string chars / array items
    max_len: int = 0
    literals: tuple[bytes, ...] = ()  # literal: the allowed serialized values
    lo: float | None = None  # number bounds
    hi: float | None = None


def _literal(values: list[Any]) -> Node:
    return Node("literal", literals=tuple(
        json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in values))


def compile_schema(schema: dict[str, Any], limits: GuideLimits = GuideLimits()) -> list[Node]:
    """Compile ``schema`` into nodes; node 0 is the root."""
    nodes: list[Node] = []

    def add(s: Any, where: str) -> int:
        if not isinstance(s, dict):
            raise SchemaError(f"{where}: a schema must be an object, got {s!r}")
        unknown = set(s) - _IGNORED - {"type", "properties", "required", "items", "minItems", "maxItems", "enum",
                                       "const", "minLength", "maxLength", "minimum", "maximum"}
        if unknown:
            raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)}")
        idx = len(nodes)
        nodes.append(Node("literal"))  # placeholder, so children get later indices
        if "const" in s:
            nodes[idx] = _literal([s["const"]])
        elif "enum" in s:
            if not s["enum"]:
                raise SchemaError(f"{where}: empty enum")
            nodes[idx] = _literal(list(s["enum"]))
        else:
            nodes[idx] = _typed(s, where)
        return idx

    def _typed(s: dict[str, Any], where: str) -> Node:
        kind = s.get("type")
        if kind == "object":
            required = set(s.get("required", ()))
            props = s.get("properties", {})
            if missing := required - set(props):
                raise SchemaError(f"{where}: required keys without a schema: {sorted(missing)}")
            return Node("object", props=tuple(
                ((json.dumps(k, ensure_ascii=False) + ":").encode(), add(v, f"{where}.{k}"), k in required)
                for k, v in props.items()))
        if kind == "array":
            lo, hi = int(s.get("minItems", 0)), int(s.get("maxItems", max(limits.max_items, s.get("minItems", 0))))
            if lo > hi:
                raise SchemaError(f"{where}: minItems > maxItems")
            return Node("array", item=add(s.get("items", {"type": "string"}), f"{where}[]"), min_len=lo, max_len=hi)
        if kind == "string":
            lo = int(s.get("minLength", 0))
            hi = int(s.get("maxLength", max(limits.max_string_length, lo)))
            if lo > hi:
                raise SchemaError(f"{where}: minLength > maxLength")
            return Node("string", min_len=lo, max_len=hi)
        if kind in ("number", "integer"):
            lo, hi = s.get("minimum"), s.get("maximum")
            if lo is not None and hi is not None and lo > hi:
                raise SchemaError(f"{where}: minimum > maximum")
            return Node(kind, lo=lo, hi=hi)
        if kind == "boolean":
            return _literal([True, False])
        if kind == "null":
            return _literal([None])
        raise SchemaError(f"{where}: unsupported or missing type {kind!r}")

    add(schema, "$")
    return nodes


# ---- the automaton: frames are tuples, a state is a tuple of frames (bottom first) ----
# ("value", node)                      a value of ``node`` is about to start
# ("lit", options, pos)                matching one of the serialized options
# ("str", node, nchars, pending, esc)  inside a string (esc: -1 before the opening quote, 1 after a backslash;
#                                      pending: UTF-8 continuation bytes still due, + 10 * a range code)
# ("num", node, text)                  a number so far
# ("obj", node, next_prop, phase, cands, pos)   phase: open | first | member | key | comma
# ("arr", node, count, phase)          phase: open | first | more | item


def _num_viable(text: bytes, node: Node, complete: bool) -> bool:
    """Can ``text`` (a number prefix) still become, or is it (``complete``), a value within the node's bounds?"""
    if node.lo is None and node.hi is None:
        return True
    s = text.decode()
    neg = s.startswith("-")
    body = s[1:] if neg else s
    # Closed intervals of magnitudes the prefix can still reach (mirrored below for negatives). The last reachable
    # value below the next step is ``eps`` under it, since at most _MAX_FRAC_DIGITS decimals can follow.
    frac = node.kind == "number"
    eps = 10.0**-_MAX_FRAC_DIGITS if frac else 1
    if not body:
        intervals = [(0.0, 1e300)]
    elif body.endswith("."):
        v = float(body[:-1])
        intervals = [(v, v + 1 - eps)]
    elif complete:
        v = float(body)
        intervals = [(v, v)]
    elif "." in body:
        v, step = float(body), 10.0 ** -(len(body.split(".")[1]))
        intervals = [(v, v + step - eps)]
    else:
        v = int(body)
        if v == 0:
            intervals = [(0.0, 1.0 - eps if frac else 0.0)]
        else:
            intervals = [(v * 10**k, (v + 1) * 10**k - eps) for k in range(_MAX_INT_DIGITS - len(body) + 1)]
    lo = node.lo if node.lo is not None else -1e300
    hi = node.hi if node.hi is not None else 1e300
    for a, b in intervals:
        a, b = (-b, -a) if neg else (a, b)
        if a <= hi and b >= lo:
            return True
    return False


def _num_step(frame: tuple, b: int, nodes: list[Node]) -> tuple | None:
    _, n, text = frame
    node = nodes[n]
    c = chr(b) if b < 0x80 else ""
    body = text[1:] if text.startswith(b"-") else text
    int_part = body.split(b".")[0]
    if c == "-":
        ok = not text
    elif c and c in "0123456789":
        if b"." in body:
            ok = len(body.split(b".")[1]) < _MAX_FRAC_DIGITS
        else:
            ok = int_part != b"0" and len(int_part) < _MAX_INT_DIGITS
    elif c == ".":
        ok = node.kind == "number" and bool(int_part) and b"." not in body
    else:
        ok = False
    if not ok:
        return None
    new = text + bytes([b])
    return ("num", n, new) if _num_viable(new, node, complete=False) else None


def _can_end(frame: tuple, nodes: list[Node]) -> bool:
    """Can this frame end here, handing the next byte to its parent?"""
    if frame[0] == "lit":
        return any(len(o) == frame[2] for o in frame[1])
    if frame[0] == "num":
        text = frame[2]
        return bool(text) and text[-1] in b"0123456789" and _num_viable(text, nodes[frame[1]], complete=True)
    return False


def _start(node_idx: int, nodes: list[Node]) -> tuple:
    node = nodes[node_idx]
    if node.kind == "literal":
        return ("lit", node.literals, 0)
    if node.kind == "string":
        return ("str", node_idx, 0, 0, -1)
    if node.kind in ("number", "integer"):
        return ("num", node_idx, b"")
    if node.kind == "object":
        return ("obj", node_idx, 0, "open", (), 0)
    return ("arr", node_idx, 0, "open")


def _advance(frame: tuple, b: int, nodes: list[Node]) -> tuple | None:
    """Frames replacing ``frame`` after byte ``b`` (possibly none: the frame is complete), or None if ``b`` is invalid."""
    kind = frame[0]
    if kind == "value":
        return _advance(_start(frame[1], nodes), b, nodes)
    if kind == "lit":
        options, pos = frame[1], frame[2]
        keep = tuple(o for o in options if len(o) > pos and o[pos] == b)
        if not keep:
            return None
        if len(keep) == 1 and len(keep[0]) == pos + 1:
            return ()
        return (("lit", keep, pos + 1),)
    if kind == "num":
        new = _num_step(frame, b, nodes)
        return (new,) if new is not None else None
    if kind == "str":
        return _str_advance(frame, b, nodes)
    if kind == "obj":
        return _obj_advance(frame, b, nodes)
    return _arr_advance(frame, b, nodes)


def _str_advance(frame: tuple, b: int, nodes: list[Node]) -> tuple | None:
    _, n, count, pending, esc = frame
    node = nodes[n]
    if esc == -1:
        return (("str", n, 0, 0, 0),) if b == 0x22 else None
    if esc == 1:  # the char after a backslash; the escape counts as one character
        return (("str", n, count + 1, 0, 0),) if b in _ESCAPABLE else None
    if pending:  # a continuation byte; the first one after some lead bytes has a narrower range (RFC 3629)
        lo, hi = _CONT_RANGES[pending // 10]
        return (("str", n, count, pending % 10 - 1, 0),) if lo <= b <= hi else None
    if b == 0x22:
        return () if count >= node.min_len else None
    if count >= node.max_len or b < 0x20 or b == 0x7F:
        return None
    if b == 0x5C:
        return (("str", n, count, 0, 1),)
    if b < 0x80:
        return (("str", n, count + 1, 0, 0),)
    need = 1 if 0xC2 <= b <= 0xDF else 2 if 0xE0 <= b <= 0xEF else 3 if 0xF0 <= b <= 0xF4 else 0
    code = {0xE0: 1, 0xED: 2, 0xF0: 3, 0xF4: 4}.get(b, 0)  # no overlong forms, surrogates or code points > U+10FFFF
    return (("str", n, count + 1, need + 10 * code, 0),) if need else None


def _obj_advance(frame: tuple, b: int, nodes: list[Node]) -> tuple | None:
    _, n, nxt, phase, cands, pos = frame
    props = nodes[n].props
    if phase == "open":
        return (("obj", n, 0, "first", (), 0),) if b == 0x7B else None
    rest_required = any(req for _, _, req in props[nxt:])
    if b == 0x7D and phase in ("first", "comma"):  # '}'
        return () if not rest_required else None
    if phase == "comma":
        return (("obj", n, nxt, "member", (), 0),) if b == 0x2C and nxt < len(props) else None
    if phase in ("first", "member"):
        # keys allowed next: from ``nxt`` up to and including the first required one (optional ones may be skipped)
        options = []
        for j in range(nxt, len(props)):
            options.append(j)
            if props[j][2]:
                break
        return _obj_advance(("obj", n, nxt, "key", tuple(options), 0), b, nodes) if options else None
    keep = tuple(j for j in cands if len(props[j][0]) > pos and props[j][0][pos] == b)
    if not keep:
        return None
    if len(keep) == 1 and len(props[keep[0]][0]) == pos + 1:  # key and colon matched: the value follows
        j = keep[0]
        return (("obj", n, j + 1, "comma", (), 0), ("value", props[j][1]))
    return (("obj", n, nxt, "key", keep, pos + 1),)


def _arr_advance(frame: tuple, b: int, nodes: list[Node]) -> tuple | None:
    _, n, count, phase = frame
    node = nodes[n]
    if phase == "open":
        return (("arr", n, 0, "first"),) if b == 0x5B else None
    if b == 0x5D and phase in ("first", "more"):  # ']'
        return () if count >= node.min_len else None
    if phase == "more":
        return (("arr", n, count, "item"),) if b == 0x2C and count < node.max_len else None
    if phase == "first" and node.max_len == 0:
        return None
    child = _advance(("value", node.item), b, nodes)
    return None if child is None else (("arr", n, count + 1, "more"), *child)


def step(state: tuple, b: int, nodes: list[Node]) -> tuple | None:
    """The state after byte ``b``, or None when ``b`` cannot continue a valid document."""
    while state:
        top = state[-1]
        new = _advance(top, b, nodes)
        if new is not None:
            return state[:-1] + new
        if not _can_end(top, nodes):
            return None
        state = state[:-1]  # a number or literal that may end: the byte belongs to the parent
    return None


def can_finish(state: tuple, nodes: list[Node]) -> bool:
    return not state or (len(state) == 1 and _can_end(state[0], nodes))


@dataclass
class TokenIndex:
    """A tokenizer's vocabulary prepared for masking: a byte trie, and the "plain string text" tokens."""

    vocab_size: int
    pieces: list[bytes | None] = field(default_factory=list)
    trie: dict = field(default_factory=dict)
    special_trie: dict = field(default_factory=dict)  # tokens that are not plain string text
    plain_chars: torch.Tensor = field(default_factory=lambda: torch.zeros(0))  # (V,) chars; -1 = not plain

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> TokenIndex:
        pieces = tokenizer.token_bytes()
        index = cls(vocab_size=tokenizer.vocab_size, pieces=pieces)
        plain = torch.full((index.vocab_size,), -1, dtype=torch.long)
        for idx, piece in enumerate(pieces):
            if not piece:
                continue
            try:
                text = piece.decode("utf-8")
                is_plain = not any(c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F for c in text)
            except UnicodeDecodeError:
                is_plain = False
            if is_plain:
                plain[idx] = len(text)
            for trie in (index.trie,) if is_plain else (index.trie, index.special_trie):
                node = trie
                for byte in piece:
                    node = node.setdefault(byte, {})
                node.setdefault(-1, []).append(idx)
        index.plain_chars = plain
        return index


class JsonSchemaConstraint:
    """A ``Constraint`` (see generate.py) for one generation. Masks are memoized per automaton state."""

    def __init__(
        self, schema: dict[str, Any], tokenizer: Tokenizer, index: TokenIndex | None = None,
        limits: GuideLimits = GuideLimits(),
    ) -> None:
        self.nodes = compile_schema(schema, limits)
        self.index = index or TokenIndex.from_tokenizer(tokenizer)
        self.eos_ids = tuple(tokenizer.eos_ids)
        self.state: tuple = (("value", 0),)
        self.text = b""
        self._memo: dict[tuple, torch.Tensor] = {}

    @property
    def done(self) -> bool:
        return not self.state

    def allowed(self) -> torch.Tensor:
        if self.state not in self._memo:
            self._memo[self.state] = self._compute(self.state)
        return self._memo[self.state]

    def advance(self, token: int) -> None:
        if token in self.eos_ids:
            return
        piece = self._bytes(token)
        state = self.state
        for b in piece:
            state = step(state, b, self.nodes)
            if state is None:
                raise ValueError(f"token {token} ({piece!r}) is not allowed after {self.text[-40:]!r}")
        self.state, self.text = state, self.text + piece

    def _bytes(self, token: int) -> bytes:
        piece = self.index.pieces[token] if 0 <= token < len(self.index.pieces) else None
        if piece is None:
            raise ValueError(f"token {token} has no text (a special token)")
        return piece

    def _compute(self, state: tuple) -> torch.Tensor:
        mask = torch.zeros(self.index.vocab_size, dtype=torch.bool)
        top = state[-1] if state else None
        trie = self.index.trie
        if top is not None and top[0] == "str" and top[3] == 0 and top[4] == 0:
            # Plain text tokens only extend the string: allowed while they fit in maxLength.
            room = self.nodes[top[1]].max_len - top[2]
            plain = self.index.plain_chars
            mask |= (plain >= 0) & (plain <= room)
            trie = self.index.special_trie
        ids: list[int] = []
        self._walk(trie, state, ids)
        if ids:
            mask[torch.tensor(ids)] = True
        if can_finish(state, self.nodes):
            for e in self.eos_ids:
                mask[e] = True
        return mask

    def _walk(self, node: dict, state: tuple, out: list[int]) -> None:
        for b, child in node.items():
            if b == -1:
                continue
            new = step(state, b, self.nodes)
            if new is None:
                continue
            out.extend(child.get(-1, ()))
            if len(child) > 1 or -1 not in child:
                self._walk(child, new, out)


# ---- finishing a document when the token budget runs out ----


def _preferred_bytes(state: tuple, nodes: list[Node]) -> bytes:
    """Candidate next bytes, best first, that lead quickly to the end of the document from ``state``."""
    top = state[-1]
    kind = top[0]
    if kind in ("lit", "num") and _can_end(top, nodes):
        return _preferred_bytes(state[:-1], nodes) if len(state) > 1 else b""  # the byte belongs to the parent
    if kind == "value":
        node = nodes[top[1]]
        if node.kind == "literal":
            return min(node.literals, key=len)[:1]
        return {"string": b'"', "object": b"{", "array": b"["}.get(node.kind, b"0123456789-.")
    if kind == "lit":
        return min((o for o in top[1] if len(o) > top[2]), key=len)[top[2]:top[2] + 1]
    if kind == "num":
        return b"0123456789-."
    if kind == "str":
        _, n, count, pending, esc = top
        if esc == -1:
            return b'"'
        if esc == 1:
            return b"/"
        if pending:
            return bytes([_CONT_RANGES[pending // 10][0]])
        return b'"' if count >= nodes[n].min_len else b"a"
    if kind == "obj":
        _, n, nxt, phase, cands, pos = top
        props = nodes[n].props
        if phase == "open":
            return b"{"
        if phase == "key":
            return min((props[j][0] for j in cands), key=len)[pos:pos + 1]
        required_left = any(req for _, _, req in props[nxt:])
        if phase == "member":
            return next(p[0][:1] for p in props[nxt:])
        return (b"," if phase == "comma" else b'"') if required_left else b"}"
    _, n, count, phase = top  # array
    node = nodes[n]
    if phase == "open":
        return b"["
    if phase == "item" or (phase == "first" and count < node.min_len):
        return _preferred_bytes(state[:-1] + (("value", node.item),), nodes)
    return b"]" if count >= node.min_len else b","


def completion_bytes(state: tuple, nodes: list[Node], limit: int = 100_000) -> bytes:
    """A short byte string that takes ``state`` to a complete, valid document (b"" when it already is one).

    Greedy: at each step the first acceptable byte from ``_preferred_bytes`` (close strings, skip optional keys,
    stop arrays at ``minItems``, the smallest digits that keep a number within bounds).
    """
    out = bytearray()
    while not can_finish(state, nodes):
        if len(out) >= limit:
            raise RuntimeError("could not complete the JSON document")
        for b in _preferred_bytes(state, nodes):
            new = step(state, b, nodes)
            if new is not None:
                state = new
                out.append(b)
                break
        else:
            raise RuntimeError(f"no way to complete the JSON document after {bytes(out)!r}")
    return bytes(out)


def generate_json(
    prompt: str | Sequence[dict[str, str]],
    schema: dict[str, Any],
    model: Any = "smollm2-135m",
    tokenizer: Tokenizer | None = None,
    cfg: SamplingConfig | None = None,
    chat: bool = True,
    limits: GuideLimits = GuideLimits(),
    dtype: str = "float32",
) -> Any:
    """Generate a JSON value that validates against ``schema``; returns it parsed.

    ``model`` is a loaded ``Transformer`` (then ``tokenizer`` is required) or anything ``load_model`` accepts.
    If ``cfg.max_new_tokens`` runs out first, the document is finished with the shortest valid completion
    (``completion_bytes``), so the result always parses and validates.
    """
    from albumen.llm.generate import generate

    if isinstance(model, (str, Path)):
        from albumen.llm.loading import load_model

        model, tokenizer = load_model(model, dtype)
    if tokenizer is None:
        raise ValueError("pass the tokenizer together with a loaded model")
    constraint = JsonSchemaConstraint(schema, tokenizer, limits=limits)
    generate(model, tokenizer, prompt, cfg or SamplingConfig(max_new_tokens=256), constraint, chat=chat)
    return json.loads((constraint.text + completion_bytes(constraint.state, constraint.nodes)).decode("utf-8"))
