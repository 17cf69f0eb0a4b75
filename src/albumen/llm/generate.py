"""Autoregressive generation as a ladder of small functions, in the spirit of gpt-fast:

    logits_to_probs -> sample          (sampling.py)
    prefill -> decode_one_token -> decode_n_tokens -> generate_tokens -> generate / stream

Batch size 1 (one prompt at a time, as an on-device assistant runs). A ``Constraint`` (guided.py) can mask the logits
at every step; stop strings and EOS end generation; text is streamed through a callback or an iterator. The KV cache
is set up here, sized to prompt + max_new_tokens. This module knows nothing about model files or JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig, sample
from albumen.llm.tokenizer import Tokenizer

__all__ = [
    "Constraint",
    "GenerationResult",
    "GenerationStats",
    "TextAssembler",
    "decode_n_tokens",
    "decode_one_token",
    "generate",
    "generate_tokens",
    "prefill",
    "stream",
]


class Constraint(Protocol):
    """Restricts which tokens may come next (e.g. a JSON schema). ``done`` means the output is complete."""

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens that keep the output valid."""
        ...

    def advance(self, token: int) -> None: ...

    @property
    def done(self) -> bool: ...


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float = 0.0  # prompt in -> first new token out (prefill + one sample)
    decode_s: float = 0.0  # time for the tokens after the first

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.new_tokens - 1) / self.decode_s if self.new_tokens > 1 and self.decode_s > 0 else 0.0


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos", "stop", "length" or "constraint"
    stats: GenerationStats = field(default_factory=GenerationStats)


def prefill(model: Transformer, prompt: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
    """Run the prompt (B, T) through the model, filling the cache from ``start_pos``; logits of the last position (B, V)."""
    input_pos = torch.arange(start_pos, start_pos + prompt.shape[1], device=prompt.device)
    return model(prompt, input_pos, last_only=True)[:, -1]


def decode_one_token(model: Transformer, token: torch.Tensor, pos: int) -> torch.Tensor:
    """One step: token (B, 1) at position ``pos`` -> logits (B, V) for the next one."""
    return model(token, torch.tensor([pos], device=token.device))[:, -1]


def _pick(
    logits: torch.Tensor, cfg: SamplingConfig, gen: torch.Generator | None, seen: torch.Tensor | None,
    constraint: Constraint | None,
) -> torch.Tensor:
    """Mask by the constraint (if any), then sample: (1, V) -> (1,)."""
    if constraint is not None:
        allowed = constraint.allowed().to(logits.device)
        if not bool(allowed.any()):
            raise RuntimeError("the constraint allows no token; the schema cannot be completed with this vocabulary")
        logits = logits.float().masked_fill(~allowed, float("-inf"))
    return sample(logits, cfg, gen, seen)


def decode_n_tokens(
    model: Transformer, first: int, start_pos: int, n: int, pick: Callable[[torch.Tensor], int],
    plan: Any | None = None, greedy: bool = False,
) -> Iterator[int]:
    """Feed ``first`` at ``start_pos`` and keep decoding; yields up to ``n`` new tokens (the caller may stop early).

    With a ``plan`` (``Transformer.decode_plan``) each step is one C++ call instead of a module forward; with
    ``greedy`` (plain argmax: no penalty, no constraint, so ``pick`` would only take the argmax) the plan also picks
    the token, and no logits tensor is made.
    """
    token = first
    for i in range(n):
        if plan is None:
            token = pick(decode_one_token(model, torch.tensor([[token]]), start_pos + i))
        elif greedy:
            token = plan.argmax(token, start_pos + i)
        else:
            token = pick(plan.logits(token, start_pos + i))
        yield token


def generate_tokens(
    model: Transformer,
    prompt_ids: Sequence[int],
    cfg: SamplingConfig,
    eos_ids: Sequence[int] = (),
    constraint: Constraint | None = None,
    stats: GenerationStats | None = None,
) -> Iterator[int]:
    """Yield new token ids until EOS (not yielded), the constraint is done, or ``max_new_tokens``."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    stats = stats if stats is not None else GenerationStats()
    stats.prompt_tokens = len(prompt_ids)
    total = len(prompt_ids) + cfg.max_new_tokens
    if total > model.args.max_seq_len:
        raise ValueError(f"prompt ({len(prompt_ids)}) + max_new_tokens ({cfg.max_new_tokens}) exceeds the context "
                         f"length {model.args.max_seq_len}")
    if cfg.max_new_tokens == 0:
        return
    model.setup_caches(1, min(model.args.max_seq_len, -(-total // 256) * 256))
    gen = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
    eos = set() if cfg.ignore_eos else set(eos_ids)
    seen = list(prompt_ids)

    penalize = cfg.repetition_penalty != 1.0

    def pick(logits: torch.Tensor) -> int:
        seen_ids = torch.tensor([seen]) if penalize else None
        token = int(_pick(logits, cfg, gen, seen_ids, constraint)[0])
        seen.append(token)
        if constraint is not None:
            constraint.advance(token)
        return token

    start = time.perf_counter()
    with torch.inference_mode():
        first = pick(prefill(model, torch.tensor([list(prompt_ids)])))
        stats.ttft_s = time.perf_counter() - start
        stats.new_tokens = 1
        if first in eos:
            return
        yield first
        if constraint is not None and constraint.done:
            return
        t0 = time.perf_counter()
        plan = model.decode_plan()  # None where the model must run module by module (LoRA, quantized, hooks)
        greedy = plan is not None and cfg.greedy and not penalize and constraint is None
        for token in decode_n_tokens(model, first, len(prompt_ids), cfg.max_new_tokens - 1, pick, plan, greedy):
            stats.new_tokens += 1
            stats.decode_s = time.perf_counter() - t0
            if token in eos:
                return
            yield token
            if constraint is not None and constraint.done:
                return


class TextAssembler:
    """Incremental detokenization with stop strings: feed ids, get the text that is safe to show so far.

    Text is held back while it ends in an incomplete UTF-8 character or could be the start of a stop string.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self.tokenizer, self.stop = tokenizer, tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.emitted = 0
        self.stopped = False
        self.text = ""

    def feed(self, token: int) -> str:
        """Add a token; return the newly safe text ("" if nothing yet). After a stop string, returns ""."""
        if self.stopped:
            return ""
        self.ids.append(token)
        full = self.tokenizer.decode(self.ids)
        for s in self.stop:
            cut = full.find(s)
            if cut >= 0:
                self.stopped = True
                full = full[:cut]
        self.text = full
        safe = len(full)
        if not self.stopped:
            if full.endswith("\ufffd"):
                safe = len(full.rstrip("\ufffd"))
            for s in self.stop:  # hold back a suffix that might grow into a stop string
                for k in range(min(len(s) - 1, len(full)), 0, -1):
                    if full.endswith(s[:k]):
                        safe = min(safe, len(full) - k)
                        break
        new = full[self.emitted : safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return new

    def flush(self) -> str:
        """Whatever was held back, at the end of generation."""
        rest = self.text[self.emitted :]
        self.emitted = len(self.text)
        return rest


def _prompt_ids(tokenizer: Tokenizer, prompt: str | Sequence[int] | Sequence[dict[str, str]], chat: bool) -> list[int]:
    if isinstance(prompt, str):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}]) if chat else prompt
        return tokenizer.encode(text)
    items = list(prompt)
    if items and isinstance(items[0], dict):
        return tokenizer.encode(tokenizer.apply_chat_template(items))  # type: ignore[arg-type]
    return [int(i) for i in items]  # type: ignore[arg-type]


def stream(
    model: Transformer,
    tokenizer: Tokenizer,
    prompt: str | Sequence[int] | Sequence[dict[str, str]],
    cfg: SamplingConfig = SamplingConfig(),
    constraint: Constraint | None = None,
    chat: bool = False,
    result: GenerationResult | None = None,
) -> Iterator[str]:
    """Yield text pieces as they are generated. ``prompt``: text, ids, or chat messages. Fills ``result`` if given."""
    result = result if result is not None else GenerationResult("", [], "length")
    ids = _prompt_ids(tokenizer, prompt, chat)
    text = TextAssembler(tokenizer, cfg.stop)
    result.finish_reason = "length"
    for token in generate_tokens(model, ids, cfg, tokenizer.eos_ids, constraint, result.stats):
        result.token_ids.append(token)
        piece = text.feed(token)
        if piece:
            yield piece
        if text.stopped:
            result.finish_reason = "stop"
            break
    else:
        if constraint is not None and constraint.done:
            result.finish_reason = "constraint"
        elif len(result.token_ids) < cfg.max_new_tokens:
            result.finish_reason = "eos"
    tail = text.flush()
    if tail:
        yield tail
    result.text = text.text


def generate(
    model: Transformer,
    tokenizer: Tokenizer,
    prompt: str | Sequence[int] | Sequence[dict[str, str]],
    cfg: SamplingConfig = SamplingConfig(),
    constraint: Constraint | None = None,
    chat: bool = False,
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Generate a completion; ``on_text`` receives each streamed piece. Returns text, ids, finish reason and stats."""
    result = GenerationResult("", [], "length")
    for piece in stream(model, tokenizer, prompt, cfg, constraint, chat, result):
        if on_text is not None:
            on_text(piece)
    return result
