"""The acceptance rule of speculative sampling (Leviathan et al. 2023, https://arxiv.org/abs/2211.17192; Chen et al.
2023, https://arxiv.org/abs/2302.01318), as pure functions of tensors.

A drafter proposed tokens x_1..x_k drawn from its distributions q_1..q_k; the target scored the same block in one
forward pass and gives p_1..p_{k+1} (row i is the target's distribution for the token at draft slot i, row k+1 the
one after the last draft). Each x_i is kept with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection the
token is redrawn from the residual norm(max(0, p_i - q_i)) and the rest of the draft is dropped; if all k survive, a
bonus token is drawn from p_{k+1}. The tokens that come out are distributed exactly as if drawn from the target one
by one. With greedy decoding p is one-hot at the argmax and the rule reduces to "keep the longest prefix on which
the draft equals the target's argmax, then take the target's argmax".

This module knows nothing about models, caches or tokenizers.
"""

from __future__ import annotations

import torch

__all__ = ["greedy_verify", "residual_distribution", "speculative_verify"]


def greedy_verify(draft: torch.Tensor, target_logits: torch.Tensor) -> tuple[int, int]:
    """Greedy acceptance: the longest prefix of ``draft`` that equals the target's argmax, then one target token.

    Args:
        draft: (k,) proposed token ids, k >= 0.
        target_logits: (k+1, V) target scores; row i scores the token at draft slot i (row k: the bonus slot).
    Returns:
        (n, token): n accepted draft tokens (0..k) and the target's own choice for slot n.
    """
    k = draft.shape[0]
    best = target_logits.argmax(-1)  # (k+1,)
    mismatch = (best[:k] != draft).nonzero()
    n = int(mismatch[0, 0]) if mismatch.numel() else k
    return n, int(best[n])


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): where to redraw a rejected token. p, q: (V,) -> (V,).

    When p <= q everywhere (rejection then has probability 0 up to rounding), fall back to p.
    """
    r = (p - q).clamp_min(0.0)
    total = r.sum()
    return r / total if float(total) > 0 else p


def speculative_verify(
    draft: torch.Tensor,
    draft_probs: torch.Tensor | None,
    target_probs: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[int, int]:
    """The exact acceptance rule for sampled drafts.

    Args:
        draft: (k,) proposed token ids.
        draft_probs: (k, V) the distributions the drafts were drawn from; None for a deterministic drafter
            (prompt lookup), i.e. q_i one-hot at x_i.
        target_probs: (k+1, V) the target's distributions for the draft slots and the bonus slot.
        generator: seeds the uniforms and the redraw.
    Returns:
        (n, token): n accepted draft tokens (0..k) and the token for slot n (residual redraw or bonus).
    """
    k = draft.shape[0]
    p_x = target_probs[:k].gather(-1, draft[:, None]).squeeze(-1)  # (k,) p_i(x_i)
    if draft_probs is None:
        q_x = torch.ones_like(p_x)
    else:
        q_x = draft_probs.gather(-1, draft[:, None]).squeeze(-1)  # (k,) q_i(x_i)
    u = torch.rand(k, generator=generator, dtype=p_x.dtype)
    # Keep x_i when u_i < p_i(x_i) / q_i(x_i), written without the division (q_i(x_i) > 0 since x_i was drawn from q_i).
    rejected = (u * q_x >= p_x).nonzero()
    if not rejected.numel():  # every draft survived: the bonus token comes from p_{k+1}
        return k, int(torch.multinomial(target_probs[k], 1, generator=generator))
    n = int(rejected[0, 0])
    if draft_probs is None:
        q_n = torch.zeros_like(target_probs[n])
        q_n[draft[n]] = 1.0
    else:
        q_n = draft_probs[n]
    redraw = residual_distribution(target_probs[n], q_n)
    return n, int(torch.multinomial(redraw, 1, generator=generator))
