"""Measuring what quantization costs: perplexity and KL divergence to a reference model on held-out token windows.

``token_windows`` cuts a long id sequence into non-overlapping (1, T) windows; ``perplexity`` and
``kl_to_reference`` average over them. Whole-window forwards with no KV cache (the model must accept
``model(ids)``): quantized modules run the same kernels as for a prompt (wrap the call in ``reference_kernels`` for
the exact dequant path). This module knows logits and windows; it knows nothing about files, tokenizers or schemes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["kl_to_reference", "perplexity", "perplexity_and_kl", "token_windows"]

LogitsFn = Callable[[Tensor], Tensor]  # (1, T) ids -> (1, T, V) logits


def token_windows(ids: Sequence[int], window: int, count: int | None = None) -> list[Tensor]:
    """Non-overlapping (1, ``window``) id windows from the start of ``ids``; at most ``count`` of them."""
    if window < 2:
        raise ValueError("a window needs at least 2 tokens (one to predict)")
    n = len(ids) // window if count is None else min(count, len(ids) // window)
    if n == 0:
        raise ValueError(f"{len(ids)} tokens do not fill one window of {window}")
    return [torch.tensor([list(ids[i * window:(i + 1) * window])]) for i in range(n)]


def _logits_fn(model: nn.Module | LogitsFn) -> LogitsFn:
    if isinstance(model, nn.Module):
        if hasattr(model, "clear_caches"):
            model.clear_caches()
        return lambda ids: model(ids)
    return model


@torch.no_grad()
def perplexity(model: nn.Module | LogitsFn, windows: Sequence[Tensor]) -> float:
    """exp(mean next-token negative log-likelihood) over every predicted position of every window."""
    fn = _logits_fn(model)
    nll = 0.0
    count = 0
    for ids in windows:
        logits = fn(ids)[:, :-1].float()  # (1, T - 1, V): position t predicts t + 1
        target = ids[:, 1:]
        nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
        count += target.numel()
    return math.exp(nll / count)


@torch.no_grad()
def kl_to_reference(reference: Sequence[Tensor], model: nn.Module | LogitsFn, windows: Sequence[Tensor]) -> float:
    """Mean over positions of KL(P_ref || P_model); ``reference`` holds the reference logits of each window.

    The reference logits are passed in (computed once) so that many candidates compare to one float model without
    keeping it in memory.
    """
    fn = _logits_fn(model)
    total = 0.0
    count = 0
    for ref, ids in zip(reference, windows, strict=True):
        p = F.log_softmax(ref.float(), dim=-1)  # (1, T, V)
        q = F.log_softmax(fn(ids).float(), dim=-1)
        total += float((p.exp() * (p - q)).sum(-1).sum())
        count += ids.numel()
    return total / count


@torch.no_grad()
def perplexity_and_kl(
    model: nn.Module | LogitsFn, windows: Sequence[Tensor], reference: Sequence[Tensor | None]
) -> tuple[float, float]:
    """Both figures from one forward per window: (perplexity over all windows, mean KL over the windows that have
    reference logits; ``reference[i] is None`` skips window i for KL only)."""
    fn = _logits_fn(model)
    nll, count, kl, kl_count = 0.0, 0, 0.0, 0
    for ids, ref in zip(windows, reference, strict=True):
        logits = fn(ids).float()  # (1, T, V)
        v = logits.shape[-1]
        nll += float(F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1), reduction="sum"))
        count += ids.numel() - ids.shape[0]
        if ref is not None:
            p = F.log_softmax(ref.float(), dim=-1)
            kl += float((p.exp() * (p - F.log_softmax(logits, dim=-1))).sum(-1).sum())
            kl_count += ids.numel()
    return math.exp(nll / count), kl / max(kl_count, 1)
