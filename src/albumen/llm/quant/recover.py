"""Accuracy recovery: a LoRA adapter trained on the frozen quantized model to match the float model (distillation).

The student is the quantized model with LoRA adapters on its (quantized) linears, via the adapter machinery
(``albumen.llm.adapters``: ``AdapterRegistry`` injects ``LoRALinear`` around ``Int4Linear`` & co., whose dequant path
carries the gradient). The teacher is the float model. The loss is the token-level forward KL of the student's
next-token distribution from the teacher's, on real text:

    L = mean_t KL(softmax(z_teacher_t / tau) || softmax(z_student_t / tau)) * tau^2      (Hinton et al. 2015)

so the adapter learns to undo the quantization error where the text actually goes, with no labels needed. Only the
adapter's parameters are updated (AdamW, linear warm-up then cosine decay, gradient clipping).

This module knows the distillation loop. It knows nothing about files, tokenizers or how the model was quantized.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albumen.llm.adapters.config import LLAMA_ALL_LINEAR, AdapterConfig
from albumen.llm.adapters.registry import AdapterRegistry, trainable_parameters

__all__ = ["RecoveryConfig", "RecoveryResult", "distillation_kl", "recover_with_lora"]


@dataclass(frozen=True)
class RecoveryConfig:
    """LoRA distillation settings; the defaults suit a 100-500 M model on a few thousand tokens of text."""

    r: int = 16
    alpha: float = 32.0
    target_modules: tuple[str, ...] = LLAMA_ALL_LINEAR
    steps: int = 60
    lr: float = 1e-3
    warmup: int = 5
    temperature: float = 1.0
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    adapter_name: str = "recovery"


@dataclass
class RecoveryResult:
    registry: AdapterRegistry
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def distillation_kl(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over positions of KL(teacher || student) at ``temperature``, scaled by tau^2. (..., V) -> scalar."""
    v = student_logits.shape[-1]
    t = F.log_softmax(teacher_logits.float().reshape(-1, v) / temperature, dim=-1)  # (M, V)
    s = F.log_softmax(student_logits.float().reshape(-1, v) / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def _lr_at(step: int, cfg: RecoveryConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def recover_with_lora(
    student: nn.Module,
    teacher: nn.Module | Callable[[Tensor], Tensor],
    windows: Sequence[Tensor],
    config: RecoveryConfig = RecoveryConfig(),
    registry: AdapterRegistry | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> RecoveryResult:
    """Train adapter ``config.adapter_name`` on ``student`` (quantized, frozen) to match ``teacher`` on ``windows``.

    Args:
        student: the quantized model; ``model(ids)`` -> (B, T, V) logits with no KV cache.
        teacher: the float model (or an ``ids -> logits`` function); never updated.
        windows: (B, T) token id tensors of real text, cycled through in order.
        config: adapter shape and optimisation.
        registry: an existing registry on ``student`` (default: a new one).
        on_step: called with (step, loss) after every update.
    Returns:
        the registry (adapter active, student in eval mode), the loss of every step, the wall time.
    """
    if not windows:
        raise ValueError("recovery needs at least one window of text")
    torch.manual_seed(config.seed)
    for m in (student, teacher):
        if isinstance(m, nn.Module) and hasattr(m, "clear_caches"):
            m.clear_caches()
    reg = registry or AdapterRegistry(student)
    adapter = AdapterConfig(r=config.r, alpha=config.alpha, target_modules=config.target_modules)
    reg.add(config.adapter_name, adapter)
    reg.activate(config.adapter_name)
    params = trainable_parameters(student, config.adapter_name)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    result = RecoveryResult(registry=reg)
    start = time.perf_counter()
    student.train()
    try:
        for step in range(config.steps):
            ids = windows[step % len(windows)]
            with torch.no_grad():
                target = teacher(ids)  # (B, T, V)
            loss = distillation_kl(target, student(ids), config.temperature)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            value = loss.detach().item()
            result.losses.append(value)
            if on_step is not None:
                on_step(step, value)
    finally:
        student.eval()
        for p in params:
            p.requires_grad_(False)
    result.seconds = time.perf_counter() - start
    return result
