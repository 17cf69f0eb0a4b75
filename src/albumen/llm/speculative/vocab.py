"""Draft vocabularies: the tokens a draft model may propose (FR-Spec, Zhao et al. 2025,
https://arxiv.org/abs/2502.14856).

A draft model's LM head reads one row per vocabulary entry for every drafted token: for Qwen2.5-0.5B that is
151936 x 896 weights, 27 % of the model. Restricting the draft's head to the tokens the target actually emits cuts a
draft step's cost; it stays lossless because the target verifies every draft, and with sampling the drafter reports
q as the softmax over the restricted set (zero elsewhere), which the acceptance rule uses consistently.

The set: the tokens most frequent in real English text and chat transcripts (gensim's news articles, the training
split of the speculative prompts), ties and the rest filled in BPE rank order (a byte-level BPE merges frequent pairs
first, so a low id is a frequent token of the tokenizer's own corpus), plus the special tokens. A drafter adds the
prompt's own tokens per sequence (names and places a grounded story copies). ``--answers DIR`` also counts the
target's own greedy answers (``distill.py data``'s teacher-*.jsonl: train-split prompts), the tokens it really emits.

    python -m albumen.llm.speculative.vocab --model qwen2.5-0.5b --size 32768 --out assets/drafters/qwen2.5.vocab.json
    python -m albumen.llm.speculative.vocab --model smollm2-135m --size 16384 --answers build/speculative/self-draft \
        --out assets/drafters/smollm2.vocab.json

This module knows tokenizers and text; it knows nothing about models.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["draft_vocab", "load_draft_vocab", "save_draft_vocab", "token_counts"]


def token_counts(tokenizer: Any, texts: Iterable[str], vocab_size: int) -> torch.Tensor:
    """(vocab_size,) how often each token id occurs in ``texts``."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for text in texts:
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        if ids.numel():
            counts += torch.bincount(ids[ids < vocab_size], minlength=vocab_size)
    return counts


def draft_vocab(counts: torch.Tensor, size: int, always: Sequence[int] = ()) -> torch.Tensor:
    """The ``size`` most frequent ids (ties: lower id first), plus ``always``; sorted (Vd,) long.

    Args:
        counts: (V,) token counts.
        size: how many ids to keep by frequency (at most V).
        always: ids kept regardless (EOS, chat markers).
    """
    if not 1 <= size <= counts.numel():
        raise ValueError(f"size must be in 1..{counts.numel()}, got {size}")
    vocab = counts.numel()
    # Sort by count descending, id ascending: counts * V - id is unique and monotone in both.
    key = counts.to(torch.float64) * vocab - torch.arange(vocab, dtype=torch.float64)
    top = key.topk(size).indices
    keep = torch.cat([top, torch.tensor(list(always), dtype=torch.long)])
    return torch.unique(keep[(keep >= 0) & (keep < vocab)])  # sorted


def save_draft_vocab(path: str | Path, ids: torch.Tensor, meta: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"meta": meta, "ids": [int(i) for i in ids]}))


def load_draft_vocab(path: str | Path) -> torch.Tensor:
    """(Vd,) sorted long ids from ``save_draft_vocab``'s file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no draft vocabulary there (build one with python -m "
                                "albumen.llm.speculative.vocab)")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("ids"), list) or not data["ids"]:
        raise ValueError(f"{path}: not a draft vocabulary file (no 'ids' list)")
    return torch.unique(torch.tensor(data["ids"], dtype=torch.long))


def _training_texts(tokenizer: Any) -> list[str]:
    """English text the vocabulary is counted on: news articles as chat replies and the training prompts (never the
    bench split)."""
    from albumen.llm.speculative.prompts import grounded_prompts, open_prompts
    from albumen.llm.speculative.text_data import corpus_documents

    facts = Path(__file__).resolve().parents[4] / "assets" / "titles" / "facts.jsonl"
    prompts = grounded_prompts(facts, 400, "train") + open_prompts(100, "train")
    chats = [[{"role": "user", "content": p}] for p in prompts]
    chats += [[{"role": "user", "content": "Write a short news report."}, {"role": "assistant", "content": d}]
              for d in corpus_documents()]
    return [tokenizer.apply_chat_template(c, add_generation_prompt=False) for c in chats]


def main() -> None:
    p = argparse.ArgumentParser(description="Build a draft vocabulary for a tokenizer (FR-Spec style).")
    p.add_argument("--model", default="qwen2.5-0.5b", help="a preset or folder whose tokenizer to count with")
    p.add_argument("--size", type=int, default=32768)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--answers", type=Path, default=None,
                   help="also count the target's answers (teacher-*.jsonl of distill.py data) in this folder")
    args = p.parse_args()
    from albumen.llm.loading import resolve_folder
    from albumen.llm.tokenizer import HFTokenizer

    folder = resolve_folder(args.model)
    tok = HFTokenizer.from_folder(folder)
    vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
    texts = _training_texts(tok)
    counts = token_counts(tok, texts, vocab_size)
    answers = 0
    if args.answers is not None:
        from albumen.llm.speculative.distill import _records

        records = _records(sorted(args.answers.glob("teacher-*.jsonl")))
        if not records:
            raise SystemExit(f"{args.answers}: no teacher-*.jsonl answers")
        ids_all = torch.tensor([t for r in records for t in r["reply_ids"] if 0 <= t < vocab_size], dtype=torch.long)
        counts += torch.bincount(ids_all, minlength=vocab_size)
        answers = len(records)
    ids = draft_vocab(counts, args.size, always=list(tok.eos_ids))
    seen = int((counts > 0).sum())
    save_draft_vocab(args.out, ids, {"tokenizer": args.model, "size": len(ids), "texts": len(texts),
                                     "answers": answers, "tokens_counted": int(counts.sum()), "distinct_seen": seen})
    print(f"{args.out}: {len(ids)} ids ({seen} distinct tokens seen in {int(counts.sum())} counted)")


if __name__ == "__main__":
    main()
