"""Teacher-forced training data for the draft head from real text: the target reads human-written documents (the news
articles that ship in gensim's wheel) formatted as chat replies, and a hook records its normed last hidden state at
every position, together with the target's own next-token choice there (its argmax), which is what the head must
learn to predict under greedy verification.

Reading text is a batched forward pass (no decoding loop), several times more tokens per second than generating, so
it widens the head's data well beyond the target's own answers to the training prompts. Shards (``text-*.pt``) have
the same fields as the generation shards of train_head.py plus ``next``.

This module knows where the corpus files are and how to window them; it knows the model only as a ``Transformer``.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from albumen.llm.model import Transformer

__all__ = ["corpus_documents", "document_windows", "generate_text_data", "teacher_forced"]

_GENSIM_FILES = ("lee_background.cor", "lee.cor")  # 300 + 25 news articles, one per line
_REQUEST = "Write a short news report."


def corpus_documents() -> list[str]:
    """The gensim test corpora's news articles (one document per non-empty line); [] when gensim is not installed."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(spec.submodule_search_locations[0]) / "test" / "test_data"
    docs: list[str] = []
    for name in _GENSIM_FILES:
        path = folder / name
        if path.is_file():
            docs += [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                     if len(line.strip()) > 80]
    return docs


def document_windows(tokenizer: Any, docs: Sequence[str], window: int) -> list[list[int]]:
    """Each document as the assistant's reply to a fixed request (chat template), cut into windows of at most
    ``window`` tokens (the last one may be shorter; windows under 16 tokens are dropped)."""
    if window < 16:
        raise ValueError(f"window must be at least 16 tokens, got {window}")
    out: list[list[int]] = []
    for doc in docs:
        text = tokenizer.apply_chat_template([{"role": "user", "content": _REQUEST},
                                              {"role": "assistant", "content": doc}], add_generation_prompt=False)
        ids = tokenizer.encode(text)
        out += [ids[i : i + window] for i in range(0, len(ids), window) if len(ids) - i >= 16]
    return out


def teacher_forced(model: Transformer, windows: Sequence[Sequence[int]]) -> list[tuple[list[int], torch.Tensor,
                                                                                          torch.Tensor]]:
    """The target over a batch of token windows (right-padded: causal attention never sees the padding).

    Returns per window (tokens, feats, next): feats (L-1, D) fp16 normed last hidden states of the positions whose
    successor is known, next (L-1,) int32 the target's argmax at those positions.
    """
    lengths = [len(w) for w in windows]
    ids = torch.zeros(len(windows), max(lengths), dtype=torch.long)
    for b, w in enumerate(windows):
        ids[b, : len(w)] = torch.tensor(list(w))
    model.clear_caches()  # the plain causal forward over the whole window
    captured: list[torch.Tensor] = []
    hook = model.model.layers[-1].register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        with torch.inference_mode():
            logits = model(ids)  # (B, T, V)
            feats = model.model.norm(captured[-1])  # (B, T, D)
    finally:
        hook.remove()
    best = logits.argmax(-1).to(torch.int32)  # (B, T)
    return [(list(w), feats[b, : n - 1].to(torch.float16).clone(), best[b, : n - 1].clone())
            for b, (w, n) in enumerate(zip(windows, lengths))]


def generate_text_data(model: Transformer, tokenizer: Any, data_dir: Path, minutes: float, window: int = 256,
                       batch_size: int = 4, log: Any = print) -> dict[str, Any]:
    """Teacher-forced shards over the corpus until ``minutes`` pass; windows already in shards are skipped."""
    data_dir.mkdir(parents=True, exist_ok=True)
    windows = document_windows(tokenizer, corpus_documents(), window)
    if not windows:
        raise ValueError("no corpus text found (gensim's test data)")
    done = {i for s in data_dir.glob("text-*.pt") for i in torch.load(s)["window_index"]}
    todo = [i for i in range(len(windows)) if i not in done]
    t0 = time.perf_counter()
    made = processed = 0
    for j in range(0, len(todo), batch_size):
        if time.perf_counter() - t0 > minutes * 60:
            break
        idx = todo[j : j + batch_size]
        t_batch = time.perf_counter()
        rows = teacher_forced(model, [windows[i] for i in idx])
        seconds = time.perf_counter() - t_batch
        shard = {"window_index": idx, "prompt_len": [0] * len(idx), "tokens": [r[0] for r in rows],
                 "feats": [r[1] for r in rows], "next": [r[2] for r in rows], "seconds": seconds}
        index = len(list(data_dir.glob("text-*.pt")))
        tmp = data_dir / f".text-{index:05d}.tmp"
        torch.save(shard, tmp)
        tmp.rename(data_dir / f"text-{index:05d}.pt")
        new = sum(len(r[0]) for r in rows)
        made += new
        processed += len(idx)
        log(f"{len(idx)} windows: {new} tokens in {seconds:.1f}s ({new / seconds:.0f} tok/s)")
    return {"text_tokens": made, "seconds": time.perf_counter() - t0, "windows": len(windows),
            "remaining": len(todo) - processed}
