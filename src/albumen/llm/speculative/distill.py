"""Align a draft model with its target (sequence-level distillation, as in DistillSpec, Zhou et al. 2023,
https://arxiv.org/abs/2310.08461): the target answers the training prompts greedily, the draft model learns those
answers token for token with a LoRA adapter, and the adapter is merged and the draft quantized for drafting.

    python -m albumen.llm.speculative.distill data --teacher build/speculative/quant/qwen2.5-1.5b-int4 --minutes 20
    python -m albumen.llm.speculative.distill label --teacher qwen2.5-1.5b --dtype bfloat16 --minutes 20   # optional
    python -m albumen.llm.speculative.distill train --student qwen2.5-0.5b --minutes 30 [--labels]
    python -m albumen.llm.speculative.distill export --student qwen2.5-0.5b --out build/speculative/quant/qwen2.5-0.5b-distilled-int4

Greedy verification accepts a draft token exactly when it is the target's argmax, so the draft's job is to predict the
target's greedy choices: training on the target's own greedy answers (not on human text) is what raises acceptance.
Prompts come from the train split of ``prompts.py`` (disjoint from the benchmark's). Every stage is resumable and
bounded by ``--minutes``: ``data`` appends to a JSONL file (one record per prompt, with the token ids, so the student
learns the teacher's exact tokens) and skips prompts already answered; ``label`` (optional) relabels those answers with
the target's own greedy choice after every prefix, in one causal pass per answer (answers from an int4 copy of the
target are made fast; the bf16 target's labels are what its verification will accept); ``train`` continues from its
last checkpoint (``albumen.llm.train.sft``); ``export`` folds the adapter into a float copy of the student and
quantizes it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from albumen.llm.adapters.config import LLAMA_ALL_LINEAR, AdapterConfig
from albumen.llm.train.data import IGNORE, Example
from albumen.llm.train.sft import SFTConfig

__all__ = ["ADAPTER", "RECIPE", "examples_from", "export_student", "teacher_data", "train_student"]

DEFAULT_DIR = Path("build/speculative/distill")
ADAPTER = AdapterConfig(r=16, alpha=32.0, dropout=0.0, target_modules=LLAMA_ALL_LINEAR)
RECIPE = SFTConfig(lr=5e-4, epochs=1.0, batch_size=4, grad_accum=1, seq_len=512, pack=True, warmup_steps=8,
                   min_lr_ratio=0.1, eval_every=25, save_every=5, keep_checkpoints=2, seed=0)


def teacher_data(
    model: Any, tokenizer: Any, prompts: Sequence[str], out: Path, minutes: float, max_new_tokens: int = 128,
    log: Callable[[str], None] = print, shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Answer prompts greedily with the teacher and append {"index", "prompt", "prompt_ids", "reply_ids", "eos"} to
    ``out``; prompts already there are skipped. ``shard`` (i, n): only prompts i, i+n, ... (n processes share the
    work, each with its own file). Returns counts and time."""
    from albumen.llm.generate import _prompt_ids, generate_tokens
    from albumen.llm.sampling import SamplingConfig

    out.parent.mkdir(parents=True, exist_ok=True)
    done = {rec["index"] for rec in _records([out])}
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    eos = list(tokenizer.eos_ids)
    t0 = time.perf_counter()
    made = answered = 0
    todo = [i for i in range(shard[0], len(prompts), shard[1]) if i not in done]
    with out.open("a", encoding="utf-8") as f:
        for i in todo:
            prompt = prompts[i]
            if time.perf_counter() - t0 > minutes * 60:
                break
            ids = _prompt_ids(tokenizer, prompt, chat=True)
            reply = list(generate_tokens(model, ids, cfg, eos))
            stopped = len(reply) < max_new_tokens
            f.write(json.dumps({"index": i, "prompt": prompt, "prompt_ids": ids, "reply_ids": reply,
                                "eos": eos[0] if stopped and eos else None}) + "\n")
            f.flush()
            made += len(reply)
            answered += 1
            if answered % 20 == 0:
                rate = made / (time.perf_counter() - t0)
                log(f"{answered} answers, {made} tokens ({rate:.1f} tok/s)")
    return {"answered": answered, "new_tokens": made, "seconds": round(time.perf_counter() - t0, 1),
            "remaining": len(todo) - answered}


def _records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: the prompt is answered again next time
                print(f"{path}:{n}: skipped a broken line")
    return out


def _reply(rec: dict[str, Any]) -> list[int]:
    """A record's answer ids and its EOS, if it stopped there."""
    return list(rec["reply_ids"]) + ([rec["eos"]] if rec.get("eos") is not None else [])


def examples_from(records: Sequence[dict[str, Any]], labels: dict[int, list[int]] | None = None) -> list[Example]:
    """The teacher's answers as training examples: loss on the reply ids (and its EOS), not on the prompt. With
    ``labels`` (record index -> one label per reply position, from ``teacher_labels``) the targets are those labels
    (another model's greedy choice after each prefix of the same text) and records without labels are left out."""
    rows = []
    for rec in records:
        reply = _reply(rec)
        if not reply:
            continue
        targets = reply
        if labels is not None:
            if rec["index"] not in labels:
                continue
            targets = list(labels[rec["index"]])
            if len(targets) != len(reply):
                raise ValueError(f"record {rec['index']}: {len(targets)} labels for {len(reply)} reply tokens")
        rows.append(Example(list(rec["prompt_ids"]) + reply, [IGNORE] * len(rec["prompt_ids"]) + targets))
    return rows


@torch.inference_mode()
def teacher_labels(model: Any, records: Sequence[dict[str, Any]], out: Path, minutes: float,
                   log: Callable[[str], None] = print, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Relabel answers with ``model``'s greedy choice after every prefix (one causal pass per answer, several times
    faster than generating): append {"index", "labels"} to ``out``, one label per reply position (and its EOS), and
    skip records already there. Answers written by a quantized copy of the target, relabelled by the target itself,
    teach the draft the target's own choices on text close to the target's. ``shard`` as in ``teacher_data``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {rec["index"] for rec in _records([out])}
    todo = [r for n, r in enumerate(sorted(records, key=lambda r: r["index"]))
            if n % shard[1] == shard[0] and r["index"] not in done]
    t0 = time.perf_counter()
    made = same = labelled = 0
    with out.open("a", encoding="utf-8") as f:
        for rec in todo:
            if time.perf_counter() - t0 > minutes * 60:
                break
            prompt, reply = list(rec["prompt_ids"]), _reply(rec)
            if not reply:
                continue
            ids = torch.tensor([prompt + reply[:-1]])
            if getattr(model, "has_caches", False):
                model.clear_caches()
            picks = model(ids)[0, len(prompt) - 1:].argmax(-1).tolist()  # the choice after each prefix
            f.write(json.dumps({"index": rec["index"], "labels": picks}) + "\n")
            f.flush()
            made += len(picks)
            same += sum(a == b for a, b in zip(picks, reply))
            labelled += 1
            if labelled % 20 == 0:
                log(f"{labelled} answers, {made} labels ({made / (time.perf_counter() - t0):.0f} labels/s), "
                    f"{same / made:.1%} equal to the answer's own tokens")
    return {"labelled": labelled, "labels": made, "equal_to_answer": same / made if made else None,
            "seconds": round(time.perf_counter() - t0, 1), "remaining": len(todo) - labelled}


def _labels(paths: Iterable[Path]) -> dict[int, list[int]]:
    return {rec["index"]: rec["labels"] for rec in _records(paths)}


def train_student(student: str, data: Sequence[Path], work: Path, minutes: float, config: SFTConfig = RECIPE,
                  heldout: int = 16, labels: Sequence[Path] = (), adapter: AdapterConfig = ADAPTER) -> dict[str, Any]:
    """Train (or continue) the draft's LoRA adapter on the teacher's answers; the adapter ends in ``work``."""
    from albumen.llm.adapters.qlora import quantize_targets
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.loading import load_model
    from albumen.llm.train.sft import train_sft

    records = sorted(_records(data), key=lambda r: (r["index"], r["prompt"]))
    rows = examples_from(records, _labels(labels) if labels else None)
    if len(rows) <= heldout:
        raise SystemExit(f"{[str(p) for p in data]}: {len(rows)} answers; run the data stage first")
    model, tok = load_model(student, dtype=torch.float32)
    quantize_targets(model, adapter.target_modules, "bf16")  # frozen base in bf16 (the adapter stays fp32)
    reg = AdapterRegistry(model)
    torch.manual_seed(config.seed)
    reg.add("draft", adapter)
    res = train_sft(model, reg, "draft", rows[heldout:], config, work, pad_id=tok.eos_ids[0],
                    eval_rows=rows[:heldout], on_log=lambda rec: print(json.dumps(rec), flush=True),
                    time_limit_s=minutes * 60)
    total = res.history[-1]["total"] if res.history else 0
    evals = [h["eval_loss"] for h in res.history if "eval_loss" in h]
    summary = {"steps": res.steps, "total": total, "complete": bool(res.history) and res.steps >= total,
               "examples": len(rows) - heldout, "reply_tokens": sum(len(r["reply_ids"]) for r in records),
               "eval_loss_first": evals[0] if evals else None, "eval_loss": evals[-1] if evals else None,
               "seconds_this_call": round(res.seconds, 1)}
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def export_student(student: str, adapter_dir: Path, out: Path, scheme: str = "int4-g32-all") -> dict[str, Any]:
    """Fold the adapter (a PEFT folder: ``adapter_dir`` itself when training finished, else its latest checkpoint)
    into a float copy of the student, quantize it with ``scheme`` and save a checkpoint folder that ``load_model``
    and ``model:PATH`` drafters read."""
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.loading import parse_dtype, resolve_folder
    from albumen.llm.quant import QuantConfig, quantize_model
    from albumen.llm.quant.checkpoint import copy_model_files, save_quantized
    from albumen.llm.train.sft import latest_checkpoint
    from albumen.llm.weights.safetensors_io import load_folder

    src = adapter_dir if (adapter_dir / "adapter_config.json").is_file() else latest_checkpoint(adapter_dir)
    if src is None:
        raise SystemExit(f"{adapter_dir}: no adapter; run the train stage first")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty")
    folder = resolve_folder(student, None)
    model = load_folder(folder, parse_dtype("float32"))
    reg = AdapterRegistry(model)
    reg.load("draft", src)
    reg.activate("draft")
    reg.merge_and_unload()
    qconfig = QuantConfig.from_scheme(scheme)
    quantize_model(model, qconfig)
    save_quantized(model, out, qconfig, model.args.to_hf_config())
    copy_model_files(folder, out)
    summary = {"student": student, "adapter": str(src), "scheme": scheme, "out": str(out)}
    (out / "distill.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _prompts(facts: Path, grounded: int, open_: int) -> list[str]:
    from albumen.llm.speculative.prompts import grounded_prompts, open_prompts

    return grounded_prompts(facts, grounded, "train") + open_prompts(open_, "train")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["data", "label", "train", "export"])
    p.add_argument("--teacher", default="qwen2.5-1.5b", help="data/label: the target (preset or checkpoint folder)")
    p.add_argument("--labels", action="store_true",
                   help="train: learn the labels of the label stage (labels-*.jsonl) instead of the answers' tokens")
    p.add_argument("--dtype", default="bfloat16", help="data: the teacher's float dtype")
    p.add_argument("--student", default="qwen2.5-0.5b", help="train/export: the draft model's preset or folder")
    p.add_argument("--facts", default="assets/titles/facts.jsonl")
    p.add_argument("--grounded", type=int, default=1200, help="data: grounded story prompts (train split)")
    p.add_argument("--open", type=int, default=0, help="data: open-ended prompts (train split)")
    p.add_argument("--shard", default="0/1", help="data: answer prompts i, i+n, ... (i/n) into teacher-i.jsonl, so "
                                                  "that n processes can share the work")
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="teacher-*.jsonl and the training checkpoints")
    p.add_argument("--work", default=None, help="train/export: the adapter's checkpoint folder (default DIR/train)")
    p.add_argument("--out", default=None, help="export: the quantized draft's folder")
    p.add_argument("--scheme", default="int4-g32-all", help="export: quantization scheme")
    p.add_argument("--rank", type=int, default=ADAPTER.r, help="train: the adapter's rank (alpha = 2 x rank)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.dir)
    work = Path(args.work) if args.work else root / "train"
    if args.stage == "data":
        from albumen.llm.loading import load_model

        i, n = (int(x) for x in args.shard.split("/"))
        if not 0 <= i < n:
            raise SystemExit(f"--shard {args.shard}: expected i/n with 0 <= i < n")
        prompts = _prompts(Path(args.facts), args.grounded, args.open)
        model, tok = load_model(args.teacher, args.dtype)
        summary = teacher_data(model, tok, prompts, root / f"teacher-{i}.jsonl", args.minutes, args.max_new_tokens,
                               log=lambda line: print(line, flush=True), shard=(i, n))
        print(json.dumps(summary))
    elif args.stage == "label":
        from albumen.llm.loading import load_model

        i, n = (int(x) for x in args.shard.split("/"))
        if not 0 <= i < n:
            raise SystemExit(f"--shard {args.shard}: expected i/n with 0 <= i < n")
        records = _records(sorted(root.glob("teacher-*.jsonl")))
        if not records:
            raise SystemExit(f"{root}: no teacher-*.jsonl; run the data stage first")
        model, _ = load_model(args.teacher, args.dtype)
        print(json.dumps(teacher_labels(model, records, root / f"labels-{i}.jsonl", args.minutes,
                                        log=lambda line: print(line, flush=True), shard=(i, n))))
    elif args.stage == "train":
        labels = sorted(root.glob("labels-*.jsonl")) if args.labels else []
        if args.labels and not labels:
            raise SystemExit(f"{root}: no labels-*.jsonl; run the label stage first")
        adapter = replace(ADAPTER, r=args.rank, alpha=2.0 * args.rank)
        print(json.dumps(train_student(args.student, sorted(root.glob("teacher-*.jsonl")), work, args.minutes,
                                       labels=labels, adapter=adapter)))
    else:
        if not args.out:
            raise SystemExit("export: --out FOLDER")
        print(json.dumps(export_student(args.student, work, Path(args.out), args.scheme)))


if __name__ == "__main__":
    main()
