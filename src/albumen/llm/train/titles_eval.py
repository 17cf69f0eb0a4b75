"""Held-out report for the memory-titles adapter: the student with and without its adapter against the teacher.

For every held-out fact set the base model and the adapted model write a reply (greedy, the same batched decoder as
the teacher, no reply prefix: the raw JSON skill is measured). The base is also run once more with its reply started
as ``{"title": "`` (the teacher's guide), so that what it writes is compared to the adapter's, not only its format.
The report gives, per model:

- ``valid_json``: share of replies that parse as ``{"title": str, "subtitle": str}``;
- ``hallucinated``: share of valid replies naming a place or person that is not in the facts (``find_hallucinations``;
  None when no reply is valid), with the flagged names listed under ``flagged`` so the figure can be checked;
- ``agreement``: word-level F1 and ROUGE-L F1 of title + subtitle against the teacher's reply, and the share of
  titles that are exactly the teacher's (case-insensitive); only over facts where both replies are valid;
- side-by-side examples, and the held-out ids the report used. ``--markdown`` writes the tables of docs/adapters.md.

This module knows the metrics and the report layout; the task lives in ``datasets/titles.py``, the decoder in
``datasets/teacher.py``.

    python -m albumen.llm.train.titles_eval --adapter assets/adapters/titles --out build/titles_eval.json \
        --markdown build/titles_eval.md
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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

__all__ = [
    "ModelScores", "evaluate_replies", "generate_replies", "main", "report_markdown", "rouge_l_f1", "word_f1",
]


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
    hallucinated: float | None  # share of valid replies with at least one unknown place/person; None: none valid
    agreement_word_f1: float | None
    agreement_rouge_l: float | None
    exact_title: float | None
    flagged: dict[str, list[str]] = field(default_factory=dict)  # fact id -> the names that are not in the facts

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
    flagged = {f.id: bad for f, r in valid if (bad := find_hallucinations(r, f, gz))}
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

    halluc = len(flagged) / len(valid) if valid else None
    return ModelScores(len(facts), len(valid) / max(len(facts), 1), halluc, mean(f1s), mean(rls), mean(exact), flagged)


def generate_replies(model: Any, tok: Any, facts: Sequence[Facts], batch_size: int = 16,
                     max_new_tokens: int = 48, reply_prefix: str = "") -> list[str]:
    """Greedy replies in the order of ``facts`` (batched by prompt length, like the teacher); ``reply_prefix`` starts
    the assistant turn and is part of each reply."""
    from albumen.llm.train.datasets.teacher import _prompt_parts, batch_plan, teacher_generate

    out: list[str] = [""] * len(facts)
    plan = batch_plan([len(_prompt_parts(tok, f)[1]) for f in facts], batch_size, window=len(facts) or 1)
    for idx in plan:
        batch = [facts[i] for i in idx]
        for i, raw in zip(idx, teacher_generate(model, tok, batch, max_new_tokens, reply_prefix), strict=True):
            out[i] = raw
    return out


_ROWS = (("teacher", "teacher (qwen2.5-1.5b)"), ("base", "SmolLM2-135M base"),
         ("base_prefixed", 'SmolLM2-135M base, reply started with `{"title": "`'),
         ("adapter_scores", "SmolLM2-135M + titles adapter"))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The held-out table and the side-by-side examples as Markdown (what docs/adapters.md shows)."""
    lines = ["| model | valid JSON | hallucinated entity (of valid) | word F1 vs teacher | ROUGE-L vs teacher "
             "| exact title |", "|---|---|---|---|---|---|"]
    for key, label in _ROWS:
        if key not in report:
            continue
        s = report[key]
        lines.append(f"| {label} | {_fmt(s['valid_json'])} | {_fmt(s['hallucinated'])} | "
                     f"{_fmt(s['agreement_word_f1'])} | {_fmt(s['agreement_rouge_l'])} | {_fmt(s['exact_title'])} |")
    lines += ["", f"Held-out: {report['heldout']} fact sets ({report['heldout_ids'][0]} .. "
              f"{report['heldout_ids'][-1]}), never trained on. Flagged names (adapter): "
              + (", ".join(f"{k}: {', '.join(v)}" for k, v in report["adapter_scores"]["flagged"].items()) or "none"),
              "", "Side by side (held-out):", ""]
    for ex in report["examples"]:
        f = ex["facts"]
        places = "; ".join(f"{p['city']}, {p['country']}" for p in f["places"])
        people = ", ".join(f["people"]) or "none"
        lines.append(f"- facts: {f['kind']}, {f['start']}..{f['end']}, {places}, people: {people}, "
                     f"scenes: {', '.join(f['tags'])}")
        for key in ("teacher", "base", "base_prefixed", "adapter"):
            if key in ex:
                text = " ".join(ex[key].split()).replace("`", "'")
                lines.append(f"  - {key.replace('_', ' ')}: `{text}`")
    return "\n".join(lines) + "\n"


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
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                   help="student weights (bf16: the base the adapter was trained on; ~2x faster decoding here)")
    p.add_argument("--out", type=Path, default=None, help="write the report JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables and examples as Markdown here")
    a = p.parse_args(argv)
    from albumen.llm.train.threads import pick_threads

    pick_threads()
    facts, teacher = _load_heldout(a.heldout, a.limit)
    if not facts:
        raise SystemExit(f"{a.heldout}: no held-out examples; build the dataset first")
    model, tok = load_model(a.model, dtype=getattr(torch, a.dtype))
    reg = AdapterRegistry(model)
    reg.load("titles", a.adapter)
    t0 = time.perf_counter()
    from albumen.llm.train.datasets.teacher import REPLY_PREFIX

    raws: dict[str, list[str]] = {}
    for name, adapter, prefix in (("base", None, ""), ("base_prefixed", None, REPLY_PREFIX),
                                  ("adapter", "titles", "")):
        with reg.using(adapter):
            raws[name] = generate_replies(model, tok, facts, reply_prefix=prefix)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {
        "heldout": len(facts), "heldout_ids": [f.id for f in facts], "model": a.model, "dtype": a.dtype, "adapter": str(a.adapter),
        "generation_s": round(seconds, 1),
        "teacher": evaluate_replies(facts, teacher).to_json(),
        "base": evaluate_replies(facts, raws["base"], teacher).to_json(),
        "base_prefixed": evaluate_replies(facts, raws["base_prefixed"], teacher).to_json(),
        "adapter_scores": evaluate_replies(facts, raws["adapter"], teacher).to_json(),
        "examples": [
            {"facts": {k: v for k, v in facts[i].to_json().items() if k not in ("id", "photo_count")},
             "teacher": teacher[i].strip(), **{k: raws[k][i].strip() for k in raws}}
            for i in range(min(a.examples, len(facts)))
        ],
    }
    text = json.dumps(report, indent=1, ensure_ascii=False)
    for path, body in ((a.out, text + "\n"), (a.markdown, report_markdown(report) if a.markdown else "")):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
    print(text)
    return report


if __name__ == "__main__":
    main()
