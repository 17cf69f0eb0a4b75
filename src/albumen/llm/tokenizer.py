"""Tokenizers: the interface the engine uses, and the Hugging Face ``tokenizers`` implementation behind it.

A tokenizer turns text into ids and back, knows its special ids (BOS, EOS and the chat template's end-of-turn), and
renders a chat template (Jinja, as in HF ``tokenizer_config.json`` or GGUF ``tokenizer.chat_template``). It also
exposes each token's raw bytes, which guided generation needs to know what text a token would add. This module knows
nothing about models or files beyond ``tokenizer.json`` / ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["Tokenizer", "HFTokenizer", "render_chat_template", "byte_decoder"]


class Tokenizer:
    """What the engine needs from a tokenizer. Subclasses implement the four abstract methods."""

    bos_id: int | None = None
    eos_ids: tuple[int, ...] = ()
    add_bos: bool = False
    chat_template: str | None = None
    special_tokens: dict[str, str] = {}

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Ids for ``text``; special-token strings in the text (e.g. ``<|im_start|>``) become their ids."""
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ``ids``, special tokens dropped."""
        raise NotImplementedError

    def token_bytes(self) -> list[bytes | None]:
        """The raw bytes each id stands for; None for special/control tokens that never appear in plain text."""
        raise NotImplementedError

    def apply_chat_template(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation ``[{"role": ..., "content": ...}]``."""
        if not self.chat_template:
            # No template in the model files: a plain transcript, so base models still get a sensible prompt.
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
            return text + ("assistant: " if add_generation_prompt else "")
        return render_chat_template(self.chat_template, messages, add_generation_prompt, self.special_tokens)


def render_chat_template(
    template: str, messages: Sequence[dict[str, str]], add_generation_prompt: bool, special_tokens: dict[str, str]
) -> str:
    """Render a HF-style Jinja chat template in a sandbox, with the same whitespace settings as transformers."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, indent=indent, ensure_ascii=False)
    return env.from_string(template).render(
        messages=list(messages), add_generation_prompt=add_generation_prompt, **special_tokens
    )


def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character -> byte table (the inverse of its ``bytes_to_unicode``)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (from ``tokenizer.json``) plus the chat template and special ids."""

    def __init__(self, backend: Any, config: dict[str, Any]) -> None:
        self._tok = backend
        self.config = config
        vocab = backend.get_vocab(with_added_tokens=True)

        def token_id(name: str) -> int | None:
            tok = config.get(name)
            if isinstance(tok, dict):
                tok = tok.get("content")
            return vocab.get(tok) if tok else None

        self.bos_id = token_id("bos_token")
        eos = {token_id("eos_token")}
        # Chat models end a turn with their own marker; stopping there is what users expect.
        for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"):
            if marker in vocab:
                eos.add(vocab[marker])
        eos.update(config.get("eos_token_ids") or ())
        self.eos_ids = tuple(sorted(i for i in eos if i is not None))
        self.add_bos = bool(config.get("add_bos_token", False)) and self.bos_id is not None
        self.chat_template = config.get("chat_template")
        self.special_tokens = {
            name: (v.get("content") if isinstance(v, dict) else v) or ""
            for name, v in config.items()
            if name in ("bos_token", "eos_token", "pad_token", "unk_token")
        }

    @classmethod
    def from_folder(cls, folder: str | Path) -> HFTokenizer:
        """Load ``tokenizer.json`` and ``tokenizer_config.json`` (if present) from a model folder."""
        from tokenizers import Tokenizer as Backend

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no tokenizer.json (only fast tokenizers are supported)")
        cfg_path = folder / "tokenizer_config.json"
        config = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        template_path = folder / "chat_template.jinja"
        if "chat_template" not in config and template_path.is_file():
            config["chat_template"] = template_path.read_text(encoding="utf-8")
        return cls(Backend.from_file(str(path)), config)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_bytes(self) -> list[bytes | None]:
        return list(self._token_bytes)

    @cached_property
    def _token_bytes(self) -> tuple[bytes | None, ...]:
        table = byte_decoder()
        special = {t.content for t in self._tok.get_added_tokens_decoder().values() if t.special}
        out: list[bytes | None] = [None] * self.vocab_size
        for piece, idx in self._tok.get_vocab(with_added_tokens=True).items():
            if idx >= len(out) or piece in special:
                continue
            if all(ch in table for ch in piece):  # byte-level BPE: each char stands for one byte
                out[idx] = bytes(table[ch] for ch in piece)
            else:  # other vocabularies: ask the decoder
                out[idx] = self._tok.decode([idx], skip_special_tokens=False).encode("utf-8")
        return tuple(out)
