"""Held-out report for the memory-titles adapter: the student with and without its adapter against the teacher.

For every held-out fact set the base model and the adapted model write a reply (greedy, the same batched decoder as
the teacher); the report gives, per model:

- ``valid_json``: share of replies that parse as ``{"title": str, "subtitle": str}``;
- ``hallucinated``: share of valid replies naming a place or person that is not in the facts (``find_hallucinations``);
- ``agreement``: word-level F1 and ROUGE-L F1 of title + subtitle against the teacher's reply, and the share of
  titles that are exactly the teacher's (case-insensitive); only over facts where both replies are valid;
- side-by-side examples.

This module knows the metrics and the report layout; the task lives in ``datasets/titles.py``, the decoder in
``datasets/teacher.py``.

    python -m albumen.llm.train.titles_eval --adapter assets/adapters/titles --out build/titles_eval.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albumen.llm.train.datasets.titles import (
    Facts,
    TitleReply,
    assets_dir,
    find_hallucinations,
    load_gazetteer,
    parse_reply,
)

__all__ = ["ModelScores", "evaluate_replies", "generate_replies", "main", "rouge_l_f1", "word_f1"]


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def word_f1(a: str, b: str) -> float:
    """Unigram-overlap F1 between two texts (bag of lower-cased words)."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return float(wa == wb)
    common = sum(min(wa.count(w), wb.count(w)) for w in set(wa))
    if common == 0:
        return 0.0
    p, r = common / len(wa), common / len(wb)
    return 2 * p * r / (p + r)


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1: longest common word subsequence, as a harmonic mean of its precision and recall."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return float(wa == wb)
    prev = [0] * (len(wb) + 1)
    for x in wa:
        cur = [0]
        for j, y in enumerate(wb):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(wa), lcs / len(wb)
    return 2 * p * r / (p + r)


@dataclass
class ModelScores:
    n: int
    valid_json: float
    hallucinated: float  # share of valid replies with at least one unknown place/person
    agreement_word_f1: float | None
    agreement_rouge_l: float | None
    exact_title: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _text(r: TitleReply) -> str:
    return f"{r.title}. {r.subtitle}"


def evaluate_replies(facts: Sequence[Facts], raws: Sequence[str], teacher_raws: Sequence[str] | None = None
                     ) -> ModelScores:
    """Scores of one model's raw replies (same order as ``facts``)."""
    gz = load_gazetteer()
    replies = [parse_reply(r) for r in raws]
    valid = [(f, r) for f, r in zip(facts, replies) if r is not None]
    halluc = sum(1 for f, r in valid if find_hallucinations(r, f, gz))
    f1s, rls, exact = [], [], []
    if teacher_raws is not None:
        for r, t_raw in zip(replies, teacher_raws):
            t = parse_reply(t_raw)
            if r is None or t is None:
                continue
            f1s.append(word_f1(_text(r), _text(t)))
            rls.append(rouge_l_f1(_text(r), _text(t)))
            exact.append(float(r.title.lower() == t.title.lower()))

    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return ModelScores(len(facts), len(valid) / max(len(facts), 1), halluc / max(len(valid), 1), mean(f1s),
                       mean(rls), mean(exact))


def generate_replies(model: Any, tok: Any, facts: Sequence[Facts], batch_size: int = 16,
                     max_new_tokens: int = 48) -> list[str]:
    """Greedy replies in the order of ``facts`` (batched by prompt length, like the teacher)."""
    from albumen.llm.train.datasets.teacher import _prompt_parts, batch_plan, teacher_generate

    out: list[str] = [""] * len(facts)
    plan = batch_plan([len(_prompt_parts(tok, f)[1]) for f in facts], batch_size, window=len(facts) or 1)
    for idx in plan:
        for i, raw in zip(idx, teacher_generate(model, tok, [facts[i] for i in idx], max_new_tokens), strict=True):
            out[i] = raw
    return out


def _load_heldout(path: Path, limit: int) -> tuple[list[Facts], list[str]]:
    facts, teacher = [], []
    for line in path.read_text(encoding="utf-8").splitlines()[:limit]:
        rec = json.loads(line)
        facts.append(Facts.from_json(rec["facts"]))
        teacher.append(rec["teacher"])
    return facts, teacher


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    import torch

    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.loading import load_model

    p = argparse.ArgumentParser(description="Held-out report: base vs adapter vs teacher on memory titles.")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--adapter", type=Path, default=assets_dir().parent / "adapters" / "titles")
    p.add_argument("--heldout", type=Path, default=assets_dir() / "heldout.jsonl")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--examples", type=int, default=6)
    p.add_argument("--out", type=Path, default=None, help="write the report JSON here")
    a = p.parse_args(argv)
    from albumen.llm.train.threads import pick_threads

    pick_threads()
    facts, teacher = _load_heldout(a.heldout, a.limit)
    if not facts:
        raise SystemExit(f"{a.heldout}: no held-out examples; build the dataset first")
    model, tok = load_model(a.model, dtype=torch.float32)
    reg = AdapterRegistry(model)
    reg.load("titles", a.adapter)
    t0 = time.perf_counter()
    raws: dict[str, list[str]] = {}
    for name in ("base", "adapter"):
        with reg.using(None if name == "base" else "titles"):
            raws[name] = generate_replies(model, tok, facts)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {
        "heldout": len(facts), "model": a.model, "adapter": str(a.adapter), "generation_s": round(seconds, 1),
        "teacher": evaluate_replies(facts, teacher).to_json(),
        "base": evaluate_replies(facts, raws["base"], teacher).to_json(),
        "adapter_scores": evaluate_replies(facts, raws["adapter"], teacher).to_json(),
        "examples": [
            {"facts": {k: v for k, v in facts[i].to_json().items() if k not in ("id", "photo_count")},
             "teacher": teacher[i].strip(), "base": raws["base"][i].strip(), "adapter": raws["adapter"][i].strip()}
            for i in range(min(a.examples, len(facts)))
        ],
    }
    text = json.dumps(report, indent=1, ensure_ascii=False)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return report


if __name__ == "__main__":
    main()
