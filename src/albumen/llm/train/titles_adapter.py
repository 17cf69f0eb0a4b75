"""One command for the memory-titles adapter: dataset (teacher) -> SmolLM2-135M + LoRA -> held-out report.

    python -m albumen.llm.train.titles_adapter                      # everything, resumable (stages run to the end)
    python -m albumen.llm.train.titles_adapter --stage data --teacher-minutes 10
    python -m albumen.llm.train.titles_adapter --stage train --train-minutes 10
    python -m albumen.llm.train.titles_adapter --stage eval

Every stage is resumable and can be time-boxed, so the whole thing can run in chunks on a shared CPU (``all`` moves
on to the next stage only when the previous one is complete): the teacher appends to
``assets/titles/teacher.jsonl`` and skips done ids; training checkpoints under ``build/titles_train`` and continues
from the last checkpoint (same result as one uninterrupted run); the final adapter is copied to
``assets/adapters/titles`` (PEFT format) and the report to ``assets/adapters/titles/eval.json`` (+ ``eval.md``).

This module only wires the stages together with the recipe's settings (``RECIPE``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from albumen.llm.adapters.config import LLAMA_ALL_LINEAR, AdapterConfig
from albumen.llm.train.datasets.titles import assets_dir, chat_example, parse_reply
from albumen.llm.train.sft import SFTConfig

__all__ = ["ADAPTER", "RECIPE", "STUDENT", "main", "train_titles"]

STUDENT = "smollm2-135m"
ADAPTER = AdapterConfig(r=8, alpha=16.0, dropout=0.05, target_modules=LLAMA_ALL_LINEAR, base_model=STUDENT)
# One epoch over the whole train split (~1,900 examples of ~157 tokens, packed ~3 to a 512-token row: ~160 steps of
# 4 rows, ~45 min on one CPU thread in two or three time-boxed chunks).
RECIPE = SFTConfig(lr=1e-3, epochs=1.0, batch_size=4, grad_accum=1, seq_len=512, pack=True, warmup_steps=8,
                   min_lr_ratio=0.1, eval_every=40, save_every=10, keep_checkpoints=2, seed=0)


def _adapter_dir() -> Path:
    return assets_dir().parent / "adapters" / "titles"


def _heldout_chats(path: Path) -> list[dict]:
    """Held-out facts with the teacher's valid reply as the assistant turn (for eval loss only)."""
    from albumen.llm.train.datasets.titles import Facts

    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        reply = parse_reply(rec["teacher"])
        if reply is not None:
            out.append(chat_example(Facts.from_json(rec["facts"]), reply))
    return out


def _check_same_data(work: Path, train_jsonl: Path) -> str:
    """The sha256 of the train split, recorded in ``work`` on the first chunk; a later chunk on other data (the
    teacher added examples since) is refused, since resuming would mix two datasets in one schedule."""
    import hashlib

    if not train_jsonl.is_file():
        raise SystemExit(f"{train_jsonl}: no train split; run the data stage first")
    digest = hashlib.sha256(train_jsonl.read_bytes()).hexdigest()
    stamp = work / "train_data.sha256"
    if stamp.is_file() and stamp.read_text().strip() != digest:
        raise SystemExit(f"{train_jsonl} changed since the checkpoints in {work} were made; "
                         f"delete {work} (or pass another --work) to train on the new data")
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    return digest


def _train_seconds(history: Sequence[dict]) -> float:
    """Training time over every chunk: each run's log restarts its clock, so add up the last time of each run."""
    total, last = 0.0, 0.0
    for h in history:
        if h["seconds"] < last:  # a new chunk (resumed run) began
            total += last
        last = h["seconds"]
    return round(total + last, 1)


def train_titles(work: Path, minutes: float, config: SFTConfig = RECIPE) -> dict:
    """Train (or continue training) the titles adapter; copies it into the assets when training is complete."""
    import torch

    from albumen.llm.adapters.qlora import quantize_targets
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.loading import load_model
    from albumen.llm.train.data import encode_chat, load_chat_jsonl
    from albumen.llm.train.sft import train_sft

    digest = _check_same_data(work, assets_dir() / "train.jsonl")
    model, tok = load_model(STUDENT, dtype=torch.float32)
    rep = load_chat_jsonl(assets_dir() / "train.jsonl", tok, max_len=config.seq_len)
    eval_rows = [encode_chat(c["messages"], tok) for c in _heldout_chats(assets_dir() / "heldout.jsonl")[:32]]
    # The frozen base in bf16 (QLoRA-style; the adapter stays fp32): bf16 matmuls are ~4x faster than fp32 here.
    quantize_targets(model, ADAPTER.target_modules, "bf16")
    reg = AdapterRegistry(model)
    torch.manual_seed(config.seed)  # LoRA A's random init (overwritten by a checkpoint when resuming)
    reg.add("titles", ADAPTER)

    def log(rec: dict) -> None:
        print(json.dumps(rec), flush=True)

    res = train_sft(model, reg, "titles", rep.examples, config, work, pad_id=tok.eos_ids[0], eval_rows=eval_rows,
                    on_log=log, time_limit_s=minutes * 60)
    from albumen.llm.train.sft import latest_checkpoint

    total = res.history[-1]["total"] if res.history else 0
    done = bool(res.history) and res.steps >= total
    src = work if done else latest_checkpoint(work)  # out of time: export the last checkpoint, marked partial
    evals = [h["eval_loss"] for h in res.history if "eval_loss" in h]
    summary = {"steps": res.steps, "total": total, "complete": done, "train_examples": len(rep.examples),
               "skipped": len(rep.errors), "epochs": config.epochs, "eval_loss": evals[-1] if evals else None,
               "seconds": _train_seconds(res.history), "train_sha256": digest}
    if src is not None:  # the repo copy in bf16: half the size (4.9 MB at r=8), loads into fp32 or bf16 models
        from albumen.llm.adapters.peft_format import read_adapter, write_adapter

        dst = _adapter_dir()
        cfg, tensors = read_adapter(src)
        write_adapter(dst, cfg, tensors, dtype=torch.bfloat16)
        (dst / "train_history.json").write_text(json.dumps({"summary": summary, "history": res.history}, indent=1)
                                                + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the memory-titles dataset, adapter and report (resumable).")
    p.add_argument("--stage", choices=["all", "data", "train", "eval"], default="all")
    p.add_argument("--teacher-minutes", type=float, default=0.0, help="time box of this run's teacher (0: until done)")
    p.add_argument("--train-minutes", type=float, default=0.0, help="time box of this run's training (0: until done)")
    p.add_argument("--epochs", type=float, default=RECIPE.epochs, help="passes over the train split (recipe: 1)")
    p.add_argument("--heldout", type=int, default=50, help="held-out fact sets (kept out of training)")
    p.add_argument("--work", type=Path, default=Path("build/titles_train"), help="training checkpoints")
    a = p.parse_args(argv)
    from albumen.llm.train.threads import pick_threads

    print(f"titles: {pick_threads()} torch threads", flush=True)
    if a.stage in ("all", "data"):
        from albumen.llm.train.datasets.teacher import main as build_data

        from albumen.llm.train.datasets.teacher import missing_targets

        build_data(["--minutes", str(a.teacher_minutes or 1e6), "--heldout", str(a.heldout)])
        if a.stage == "all" and (left := missing_targets(assets_dir())):
            print(f"titles: {left} fact sets still lack a teacher reply; run the same command again to continue")
            return
    if a.stage in ("all", "train"):
        summary = train_titles(a.work, a.train_minutes, dataclasses.replace(RECIPE, epochs=a.epochs))
        print(json.dumps(summary), flush=True)
        if a.stage == "all" and not summary["complete"]:
            print("titles: training stopped at its time box; run the same command again to continue")
            return
    if a.stage in ("all", "eval"):
        from albumen.llm.train.titles_eval import main as evaluate

        evaluate(["--adapter", str(_adapter_dir()), "--out", str(_adapter_dir() / "eval.json"),
                  "--markdown", str(_adapter_dir() / "eval.md")])


if __name__ == "__main__":
    main()
