"""Supervised fine-tuning of one adapter on a frozen base, on CPU.

``train_sft`` is the whole loop: cosine learning rate with warm-up, gradient accumulation with the loss normalised
by the number of assistant tokens in the full (accumulated) batch, gradient clipping, periodic eval loss, and
checkpoints (adapter in PEFT format + optimiser/RNG state) that a killed run resumes from, bit for bit: the data
order is a function of (seed, epoch) and the RNG state is saved, so a resumed run equals an uninterrupted one.

This module knows the optimisation. It knows nothing about the data format (``data.py``), the adapter maths
(``adapters/``) or how progress is shown (the ``on_log`` callback).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from albumen.llm.adapters.registry import AdapterRegistry, trainable_parameters
from albumen.llm.train.data import IGNORE, Example, make_batches, pack_examples

__all__ = [
    "SFTConfig", "SFTResult", "causal_lm_loss", "cosine_lr", "evaluate", "latest_checkpoint", "model_loss", "train_sft",
]

STATE_FILE = "trainer_state.pt"


@dataclass(frozen=True)
class SFTConfig:
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int = 0  # 0 = from epochs; a step is one optimiser update
    batch_size: int = 4
    grad_accum: int = 1
    seq_len: int = 512
    pack: bool = True
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50  # 0 = only at the end
    save_every: int = 50  # 0 = only at the end
    keep_checkpoints: int = 2
    seed: int = 0
    log_every: int = 1


@dataclass
class SFTResult:
    steps: int
    train_loss: float  # mean of the last logged window
    eval_loss: float | None
    seconds: float
    history: list[dict[str, Any]]


def cosine_lr(step: int, total: int, base_lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup`` steps, then cosine decay to ``min_ratio * base_lr``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out  # HF models return an object, ours a tensor


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and how many there were.

    logits (B, T, V) predict labels shifted by one: position t is scored against labels[:, t + 1]. The labels are
    shifted (and the last position given IGNORE), not the logits: slicing (B, T, V) would copy the largest tensor of
    the step.
    """
    shift_labels = F.pad(labels[:, 1:], (0, 1), value=IGNORE).reshape(-1)  # (B*T,)
    flat = logits.reshape(-1, logits.shape[-1])  # (B*T, V), a view
    loss = F.cross_entropy(flat if flat.dtype == torch.float32 else flat.float(), shift_labels,
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((shift_labels != IGNORE).sum())


def model_loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``causal_lm_loss`` of ``model`` on (ids, labels) (B, T); for Albumen's ``Transformer`` the LM head runs only
    on the labelled positions.

    In SFT most positions are prompt (label IGNORE), and the head (V x D) is the largest matmul of a small model: we
    take the final normed hidden states (the head swapped for an identity for one call), keep the N positions that
    have a next-token label and score only those, (N, D) -> (N, V). Same numbers as the full logits, less time and
    memory. Other models (transformers) go through their full logits.
    """
    from albumen.llm.model import Transformer

    if not isinstance(model, Transformer):
        return causal_lm_loss(_logits(model(ids)), labels)
    head = model.lm_head
    model.lm_head = nn.Identity()
    try:
        hidden = model(ids)  # (B, T, D), already through the final norm
    finally:
        model.lm_head = head
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE)  # (B, T): position t predicts token t + 1
    keep = targets != IGNORE
    logits = head(hidden[keep])  # (N, V)
    loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.no_grad()
def evaluate(model: nn.Module, rows: Sequence[Example], batch_size: int, pad_id: int) -> float:
    """Mean loss per assistant token over ``rows``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for ids, labels in make_batches(rows, batch_size, pad_id, seed=0, epoch=0, shuffle=False):
        loss, n = model_loss(model, ids, labels)
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def latest_checkpoint(out_dir: Path) -> Path | None:
    cks = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return next((c for c in reversed(cks) if (c / STATE_FILE).is_file()), None)


def _save_checkpoint(out_dir: Path, step: int, reg: AdapterRegistry, name: str, opt: torch.optim.Optimizer,
                     state: dict[str, Any], keep: int) -> Path:
    ck = out_dir / f"checkpoint-{step}"
    reg.save(name, ck)
    payload = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), **state}
    torch.save(payload, ck / (STATE_FILE + ".tmp"))
    (ck / (STATE_FILE + ".tmp")).replace(ck / STATE_FILE)  # the state file is written last: its presence = complete
    old = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep] if keep > 0 else []
    for p in old:
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    return ck


def _restore(ck: Path, reg: AdapterRegistry, name: str, opt: torch.optim.Optimizer) -> dict[str, Any]:
    from albumen.llm.adapters.peft_format import read_adapter

    _, tensors = read_adapter(ck)
    reg._assign(name, tensors)
    payload = torch.load(ck / STATE_FILE, weights_only=False)
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"])
    return payload


def train_sft(
    model: nn.Module,
    registry: AdapterRegistry,
    name: str,
    train: Sequence[Example],
    config: SFTConfig,
    out_dir: str | Path,
    pad_id: int,
    eval_rows: Sequence[Example] = (),
    on_log: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    time_limit_s: float = 0.0,
) -> SFTResult:
    """Train adapter ``name`` (already added to ``registry``) and write the final adapter to ``out_dir``.

    ``stop_after``: return after that many optimiser steps in this call (tests use it to simulate a kill).
    ``time_limit_s``: return once this call has trained that long (0: no limit), after saving a checkpoint, so that
    running again continues exactly; training in time-boxed chunks gives the same adapter as one long run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = pack_examples(train, config.seq_len, pad_id) if config.pack else list(train)
    if not rows:
        raise ValueError("no training examples")
    batches_per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * batches_per_epoch / config.grad_accum))
    torch.manual_seed(config.seed)
    registry.activate(name)
    params = trainable_parameters(model, name)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    step, history = 0, []
    ck = latest_checkpoint(out) if resume else None
    if ck is not None:
        payload = _restore(ck, registry, name, opt)
        step, history = payload["step"], payload["history"]
        if payload["config"] != dataclasses.asdict(config):
            raise ValueError(f"{ck}: the checkpoint was made with another config; use a fresh --out or the same flags")
    model.train()
    t0, win_loss, win_tokens, eval_loss = time.monotonic(), 0.0, 0, None
    micro = step * config.grad_accum  # micro-batches already consumed
    done_this_call = 0
    while step < total:
        epoch, offset = divmod(micro, batches_per_epoch)
        group = list(make_batches(rows, config.batch_size, pad_id, config.seed, epoch, start=offset,
                                  count=config.grad_accum))
        n_tokens = sum(int((lb[:, 1:] != IGNORE).sum()) for _, lb in group)
        for ids, labels in group:
            loss_sum, _ = model_loss(model, ids, labels)
            (loss_sum / max(n_tokens, 1)).backward()  # normalised over the whole accumulated batch
            win_loss += float(loss_sum.detach())
        win_tokens += n_tokens
        micro += len(group)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        lr = cosine_lr(step, total, config.lr, config.warmup_steps, config.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        done_this_call += 1
        last = step == total
        if config.log_every and (step % config.log_every == 0 or last):
            rec = {"step": step, "total": total, "loss": win_loss / max(win_tokens, 1), "lr": lr,
                   "grad_norm": grad_norm, "seconds": round(time.monotonic() - t0, 3)}
            win_loss, win_tokens = 0.0, 0
            if eval_rows and (last or (config.eval_every and step % config.eval_every == 0)):
                eval_loss = evaluate(model, eval_rows, config.batch_size, pad_id)
                rec["eval_loss"] = eval_loss
            history.append(rec)
            if on_log:
                on_log(rec)
        out_of_time = bool(time_limit_s) and time.monotonic() - t0 > time_limit_s
        if last or out_of_time or (config.save_every and step % config.save_every == 0):
            state = {"step": step, "history": history, "config": dataclasses.asdict(config)}
            _save_checkpoint(out, step, registry, name, opt, state, config.keep_checkpoints)
        if out_of_time or (stop_after is not None and done_this_call >= stop_after):
            break
    if step >= total:
        registry.save(name, out)
        (out / "train_history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    model.eval()
    tail = [h["loss"] for h in history[-10:]]
    return SFTResult(step, sum(tail) / max(len(tail), 1), eval_loss, time.monotonic() - t0, history)
