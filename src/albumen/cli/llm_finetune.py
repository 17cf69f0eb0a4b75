"""CLI command ``albumen llm finetune``: train one LoRA/DoRA/QLoRA adapter on a chat JSONL file.

Thin: parse flags, load the model and data, call ``albumen.llm.train.sft.train_sft`` with a progress bar, print a
summary. Running the same command again after a kill resumes from the last checkpoint in ``--out``. Heavy imports
happen inside the command.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

import typer

from albumen.cli.context import Context, fail

__all__ = ["register"]


def _targets(spec: str) -> tuple[str, ...] | str:
    """``all`` / ``attention`` / comma-separated names / ``re:<regex>``."""
    from albumen.llm.adapters.config import LLAMA_ALL_LINEAR, LLAMA_ATTENTION

    if spec.startswith("re:"):
        return spec[3:]
    named = {"all": LLAMA_ALL_LINEAR, "attention": LLAMA_ATTENTION}
    return named.get(spec, tuple(s.strip() for s in spec.split(",") if s.strip()))


def _split(examples: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    if fraction <= 0 or len(examples) < 10:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(examples) * fraction))
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def register(app: typer.Typer) -> None:
    """Add ``finetune`` to the ``albumen llm`` sub-app."""

    @app.command("finetune")
    def finetune(
        ctx: typer.Context,
        model: Optional[str] = typer.Option(None, "--model", help="Preset name, .gguf file or model folder."),
        data: Path = typer.Option(..., "--data", help='Chat JSONL: {"messages": [{"role", "content"}, ...]} a line.'),
        out: Path = typer.Option(..., "--out", help="Adapter folder (PEFT format); checkpoints go inside it."),
        eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Chat JSONL for eval loss."),
        eval_fraction: float = typer.Option(0.05, "--eval-fraction", help="Held out of --data when no --eval-data."),
        r: int = typer.Option(8, "--rank", "-r", help="LoRA rank."),
        alpha: float = typer.Option(16.0, "--alpha", help="LoRA alpha (scale = alpha / rank)."),
        dropout: float = typer.Option(0.0, "--dropout"),
        targets: str = typer.Option("all", "--targets",
                                    help="all | attention | comma-separated module names | re:<regex>."),
        dora: bool = typer.Option(False, "--dora", help="Weight-decomposed LoRA."),
        base: str = typer.Option("float32", "--base",
                                 help="Frozen base: float32, bf16, or a quant scheme (int8, int4-g32) = QLoRA."),
        lr: float = typer.Option(2e-4, "--lr"),
        epochs: float = typer.Option(1.0, "--epochs"),
        max_steps: int = typer.Option(0, "--max-steps", help="Optimiser steps (0: from --epochs)."),
        batch_size: int = typer.Option(4, "--batch-size"),
        grad_accum: int = typer.Option(1, "--grad-accum"),
        seq_len: int = typer.Option(512, "--seq-len"),
        pack: bool = typer.Option(True, "--pack/--no-pack", help="Pack short examples into full rows."),
        warmup: int = typer.Option(10, "--warmup"),
        eval_every: int = typer.Option(50, "--eval-every"),
        save_every: int = typer.Option(50, "--save-every"),
        seed: int = typer.Option(0, "--seed"),
        resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the last checkpoint in --out."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (no progress bar)."),
    ) -> None:
        """Fine-tune an adapter on MODEL (frozen) with assistant-only loss; resumable after a kill."""
        import torch

        from albumen.llm.adapters.config import AdapterConfig
        from albumen.llm.adapters.qlora import quantize_targets
        from albumen.llm.adapters.registry import AdapterRegistry
        from albumen.llm.loading import resolve_folder
        from albumen.llm.tokenizer import HFTokenizer
        from albumen.llm.train.data import load_chat_jsonl
        from albumen.llm.train.sft import SFTConfig, train_sft
        from albumen.llm.weights.safetensors_io import load_folder

        c: Context = ctx.obj or Context()
        cfg = c.config()
        name = model or cfg.llm.model
        models_dir = Path(cfg.llm.models_dir) if cfg.llm.models_dir else cfg.data_dir / "models"
        try:
            config = SFTConfig(lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
                               seq_len=seq_len, pack=pack, warmup_steps=warmup, eval_every=eval_every,
                               save_every=save_every, seed=seed)
            acfg = AdapterConfig(r=r, alpha=alpha, dropout=dropout, target_modules=_targets(targets), use_dora=dora,
                                 base_model=name)
        except ValueError as exc:
            fail(str(exc))
        try:
            folder = resolve_folder(name, models_dir)
            net = load_folder(folder, torch.float32)
            tok = HFTokenizer.from_folder(folder)
        except (FileNotFoundError, ValueError, OSError) as exc:
            fail(f"cannot load model {name!r}: {exc}")
        try:
            train_rep = load_chat_jsonl(data, tok, max_len=seq_len)
            eval_rep = load_chat_jsonl(eval_data, tok, max_len=seq_len) if eval_data else None
        except FileNotFoundError as exc:
            fail(str(exc))
        for err in (train_rep.errors + (eval_rep.errors if eval_rep else []))[:20]:
            typer.echo(f"skipped {err}", err=True)
        train_rows, eval_rows = (train_rep.examples, eval_rep.examples) if eval_rep else _split(
            train_rep.examples, eval_fraction, seed)
        if not train_rows:
            fail(f"{data}: no usable training examples ({len(train_rep.errors)} bad lines)")
        pad_id = tok.eos_ids[0] if tok.eos_ids else 0
        try:
            if base != "float32":
                quantize_targets(net, acfg.target_modules, base)
            reg = AdapterRegistry(net)
            torch.manual_seed(seed)  # LoRA A's random init
            reg.add("adapter", acfg)
        except (ValueError, KeyError) as exc:
            fail(str(exc))
        trainable = sum(p.numel() for p in reg.state_dict("adapter").values())
        total = sum(p.numel() for p in net.parameters())
        result = _train(train_sft, net, reg, train_rows, eval_rows, config, out, pad_id, resume, as_json)
        summary = {
            "out": str(out), "steps": result.steps, "train_examples": len(train_rows), "eval_examples": len(eval_rows),
            "skipped_lines": len(train_rep.errors), "truncated": train_rep.truncated,
            "train_loss": round(result.train_loss, 4),
            "eval_loss": None if result.eval_loss is None else round(result.eval_loss, 4),
            "trainable_params": trainable, "trainable_share": round(trainable / total, 5),
            "seconds": round(result.seconds, 1),
        }
        typer.echo(json.dumps(summary) if as_json else "\n".join(f"{k}: {v}" for k, v in summary.items()))


def _train(train_sft: Any, net: Any, reg: Any, train_rows: list[Any], eval_rows: list[Any], config: Any, out: Path,
           pad_id: int, resume: bool, quiet: bool) -> Any:
    """``train_sft`` under a rich progress bar (or silently with ``--json``)."""
    if quiet:
        return train_sft(net, reg, "adapter", train_rows, config, out, pad_id, eval_rows=eval_rows, resume=resume)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]finetune"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("train", total=None, info="")

        def on_log(rec: dict[str, Any]) -> None:
            info = f"loss {rec['loss']:.3f} lr {rec['lr']:.2e}"
            if "eval_loss" in rec:
                info += f" eval {rec['eval_loss']:.3f}"
            progress.update(task, completed=rec["step"], total=rec["total"], info=info)

        return train_sft(net, reg, "adapter", train_rows, config, out, pad_id, eval_rows=eval_rows, on_log=on_log,
                         resume=resume)
