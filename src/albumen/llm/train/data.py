"""Chat JSONL -> token ids with assistant-only labels -> packed or padded training batches.

A record is ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``. The conversation is
rendered with the tokenizer's own chat template; the characters each assistant turn adds (its content and the
template's end-of-turn marker) are the only positions with a label, everything else is ``IGNORE`` (-100), so the
loss is on assistant tokens only.

This module knows the record format, the template-diff rule for finding assistant spans, packing and padding. It
knows nothing about models or optimisation; the tokenizer is any object with ``encode(text, add_bos=False)`` and
``apply_chat_template(messages, add_generation_prompt)``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

__all__ = [
    "IGNORE",
    "ChatTokenizer",
    "DataError",
    "Example",
    "LoadReport",
    "encode_chat",
    "load_chat_jsonl",
    "make_batches",
    "pack_examples",
]

IGNORE = -100
_ROLES = ("system", "user", "assistant")


class ChatTokenizer(Protocol):
    def encode(self, text: str, add_bos: bool | None = None) -> list[int]: ...

    def apply_chat_template(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str: ...


class DataError(ValueError):
    """A record that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE where no loss is taken

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError("input_ids and labels differ in length")


@dataclass
class LoadReport:
    """What ``load_chat_jsonl`` kept and why it dropped the rest (one bad line never stops a run)."""

    examples: list[Example] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "file:line: why"
    truncated: int = 0


def _check_messages(rec: Any) -> list[dict[str, str]]:
    if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list) or not rec["messages"]:
        raise DataError('a record must be an object with a non-empty "messages" list')
    msgs = rec["messages"]
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise DataError(f"each message needs role in {_ROLES} and string content, got {str(m)[:80]}")
    if not any(m["role"] == "assistant" for m in msgs):
        raise DataError("no assistant message: nothing to learn")
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def encode_chat(messages: Sequence[dict[str, str]], tok: ChatTokenizer) -> Example:
    """Tokenise a conversation; labels are the ids of what each assistant turn adds to the rendered text.

    Rule: render the conversation up to turn i (with the generation prompt when turn i is the assistant's) and up to
    turn i+1; the difference is turn i's text. Segments are tokenised one by one, so a label span never starts or
    ends inside a token.
    """
    ids: list[int] = []
    labels: list[int] = []
    done = ""  # rendered text already tokenised
    for i, m in enumerate(messages):
        is_assistant = m["role"] == "assistant"
        before = tok.apply_chat_template(list(messages[:i]), add_generation_prompt=is_assistant) if i else ""
        after = tok.apply_chat_template(list(messages[: i + 1]), add_generation_prompt=False)
        if is_assistant:
            if not before.startswith(done) or not after.startswith(before):
                raise DataError("the chat template does not render conversations as prefixes of each other")
            prompt_ids = tok.encode(before[len(done) :], add_bos=False)
            reply_ids = tok.encode(after[len(before) :], add_bos=False)
            ids += prompt_ids + reply_ids
            labels += [IGNORE] * len(prompt_ids) + reply_ids
            done = after
    if not any(lbl != IGNORE for lbl in labels):
        raise DataError("the assistant turns rendered to no tokens")
    return Example(ids, labels)


def load_chat_jsonl(path: str | Path, tok: ChatTokenizer, max_len: int = 1024) -> LoadReport:
    """Every usable record of a chat JSONL file; bad lines are reported, over-long ones truncated."""
    report = LoadReport()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such data file")
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ex = encode_chat(_check_messages(json.loads(line)), tok)
            except (json.JSONDecodeError, DataError) as exc:
                report.errors.append(f"{p.name}:{n}: {exc}")
                continue
            if len(ex.input_ids) > max_len:
                ex = Example(ex.input_ids[:max_len], ex.labels[:max_len])
                report.truncated += 1
                if all(lbl == IGNORE for lbl in ex.labels[1:]):
                    report.errors.append(f"{p.name}:{n}: the assistant turn starts after max_len={max_len}")
                    continue
            report.examples.append(ex)
    return report


def pack_examples(examples: Sequence[Example], seq_len: int, pad_id: int) -> list[Example]:
    """First-fit-decreasing bin packing of whole examples into rows of ``seq_len`` (padding: labels IGNORE).

    Examples in one row attend to each other (the model has no document mask); with short chat examples this costs
    little and removes nearly all padding. An example longer than ``seq_len`` gets its own (truncated) row.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].input_ids))
    rows: list[tuple[list[int], list[int]]] = []
    for i in order:
        ex = examples[i]
        ids, lab = ex.input_ids[:seq_len], ex.labels[:seq_len]
        for r_ids, r_lab in rows:
            if len(r_ids) + len(ids) <= seq_len:
                r_ids += ids
                r_lab += lab
                break
        else:
            rows.append((list(ids), list(lab)))
    return [Example(r + [pad_id] * (seq_len - len(r)), lb + [IGNORE] * (seq_len - len(lb))) for r, lb in rows]


def _collate(rows: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), t), IGNORE, dtype=torch.long)  # (B, T)
    for b, r in enumerate(rows):
        ids[b, : len(r.input_ids)] = torch.tensor(r.input_ids)
        labels[b, : len(r.labels)] = torch.tensor(r.labels)
    return ids, labels


def make_batches(
    rows: Sequence[Example], batch_size: int, pad_id: int, seed: int, epoch: int, shuffle: bool = True,
    start: int = 0, count: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, labels) batches of shape (B, T), in an order fixed by (seed, epoch): batch ``start`` onwards
    (``count`` of them, or all), so a resumed run picks up exactly where it stopped."""
    order = list(range(len(rows)))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    starts = range(start * batch_size, len(order), batch_size)
    for i in starts if count is None else starts[:count]:
        yield _collate([rows[j] for j in order[i : i + batch_size]], pad_id)
