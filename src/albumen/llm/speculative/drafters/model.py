"""A smaller model with the same tokenizer as the drafter (Qwen2.5-0.5B for Qwen2.5-1.5B).

The draft model keeps its own static KV cache. Before drafting it compares the accepted tokens with what it has fed
so far and re-feeds only from the first difference (rolling back is decoding again from an earlier position), so
drafts the target accepted are never recomputed. Drafts are drawn from the draft model's distribution under the same
sampling settings as the target (argmax when greedy) and reported with their probabilities.

With a draft vocabulary (vocab.py) the draft model's LM head is swapped, for the sequence, for one restricted to those
ids plus the prompt's own tokens: a draft step then reads a fraction of the head's rows. Tokens outside are never
drafted; under sampling q is the softmax over the restricted set (zero elsewhere), so the rule stays exact.

This module knows nothing about model files: pass a loaded ``Transformer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from albumen.llm.model import Transformer, use_decode_linears
from albumen.llm.sampling import SamplingConfig, logits_to_probs
from albumen.llm.speculative.drafters.base import Draft, unsure

__all__ = ["ModelDrafter", "parameter_cost", "restrict_vocab"]


def parameter_cost(draft: Transformer, target: Transformer) -> float:
    """A draft token's cost relative to a target step, estimated by bytes of weights read per token."""

    def weight_bytes(m: Transformer) -> int:
        seen: set[int] = set()
        total = 0
        buffers = [b for n, b in m.named_buffers() if "kv_cache" not in n]  # weights only, not the caches
        for t in [*m.parameters(), *buffers]:
            if t.data_ptr() not in seen and not t.is_meta:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total

    return min(1.0, weight_bytes(draft) / max(1, weight_bytes(target)))


def _head_rows(lm_head: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(len(ids), D) float rows of an LM head: plain, quantized (dequantized rows) or LoRA-wrapped (its base)."""
    if hasattr(lm_head, "rows"):
        return lm_head.rows(ids)
    base = getattr(lm_head, "base", None)
    if isinstance(base, nn.Module):
        return _head_rows(base, ids)
    weight = getattr(lm_head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return weight[ids]
    raise TypeError(f"cannot read rows from the LM head {type(lm_head).__name__}")


def _sliced_quantized(lm_head: nn.Module, ids: torch.Tensor) -> nn.Module | None:
    """The rows ``ids`` of an int4 / int8 head as a module of the same class (codes and scales sliced, not
    re-quantized: the same weights, in milliseconds), or None for other heads."""
    from albumen.llm.quant.linear import Int4Linear, Int8Linear

    if type(lm_head) not in (Int4Linear, Int8Linear) or lm_head.bias is not None:
        return None
    small = type(lm_head).empty(lm_head.in_features, int(ids.numel()), lm_head.scheme, bias=False)
    for name, buf in lm_head.named_buffers(recurse=False):
        if buf is not None and buf.dim() >= 1 and buf.shape[0] == lm_head.out_features:
            setattr(small, name, buf[ids].clone())
    return small


def restrict_vocab(model: Transformer, vocab: torch.Tensor) -> nn.Module:
    """An LM head for ``model`` over ``vocab`` (Vd,) only: (..., D) -> (..., Vd) logits, in the head's format
    (a quantized head stays quantized with its scheme, a float head stays float, on the decode kernels)."""
    lm_head = model.lm_head
    n = int(vocab.numel())
    # Rows padded to a multiple of 16 (copies of the first; sliced off below): the int4 kernel needs N % 16 == 0.
    padded = torch.cat([vocab, vocab[:1].expand(-n % 16)])
    rows = _head_rows(lm_head, padded)  # (Vp, D)
    dtype = model.model.norm.weight.dtype
    linear = nn.Linear(rows.shape[1], rows.shape[0], bias=False, dtype=torch.float32)
    linear.weight = nn.Parameter(rows.float().contiguous(), requires_grad=False)
    scheme = getattr(lm_head, "scheme", None)
    sliced = _sliced_quantized(lm_head, padded)
    if sliced is not None:
        small: nn.Module = sliced
    elif scheme is not None and hasattr(type(lm_head), "from_float"):
        small = type(lm_head).from_float(linear, scheme)
    else:
        small = linear.to(dtype)
        use_decode_linears(small)
    return (small if padded.numel() == n else _FirstColumns(small, n)).eval()


class ModelDrafter:
    """Drafts with a small causal LM that shares the target's vocabulary."""

    def __init__(self, model: Transformer, name: str = "model", cost: float | None = None,
                 vocab: torch.Tensor | None = None, min_confidence: float = 0.0, keep_unsure: bool = False,
                 alternative: bool = False) -> None:
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}")
        self.model = model
        # Stop a draft before a token whose draft probability (top-1 of the draft's distribution) is below this: an
        # unsure draft token is usually rejected, and the rows it would add to the verification cost time. The rule
        # reads only the draft's own distribution, so the acceptance rule stays exact. ``keep_unsure``: stop after
        # that token instead (it is proposed, nothing after it): where a verification row costs little next to a
        # draft pass, the pass that found the token unsure is not wasted.
        self.min_confidence = min_confidence
        self.keep_unsure = keep_unsure or alternative
        # ``alternative`` (greedy, with the rule): also offer the draft's second choice for the doubted token, as a
        # tree leaf the target scores in the same verification call (Draft.alternatives).
        if alternative and min_confidence <= 0:
            raise ValueError("an alternative for the doubted token needs a confidence rule (min_confidence > 0)")
        self.alternative = alternative
        self.passes = 0  # draft forward passes so far (one per drafted or confidence-stopped token)
        self.name = name
        self._cost = cost
        self.cost = cost if cost is not None else 0.25
        self._fed: list[int] = []  # the tokens whose keys/values sit in the draft cache, by position
        self.vocab = None if vocab is None else torch.unique(vocab.long())  # (Vd,) static draft vocabulary
        self._ids: torch.Tensor | None = None  # (Vs,) the ids the swapped-in head scores this sequence
        self._full_head: nn.Module | None = None
        self._static_head: nn.Module | None = None
        self._plan: Any | None = None  # the draft model's single-call decode plan with the restricted head, if any
        self._n_ids = 0  # rows of the restricted head that score real ids (the rest is padding)

    def start(self, target: Transformer, prompt_ids: Sequence[int], max_seq_len: int) -> None:
        if self.model.args.vocab_size != target.args.vocab_size:
            raise ValueError(f"the draft model's vocabulary ({self.model.args.vocab_size}) differs from the "
                             f"target's ({target.args.vocab_size}): they must share a tokenizer")
        if self._cost is None:
            self.cost = parameter_cost(self.model, target)
        self.model.setup_caches(1, min(max_seq_len, self.model.args.max_seq_len))
        self._plan = self._vocab_plan(prompt_ids) if self.vocab is not None else None
        if self.vocab is not None and self._plan is None:
            self._swap_head(prompt_ids)
        self._fed = []
        if len(prompt_ids) > 1:  # prefill the prompt with the target's (so it counts in the time to first token)
            with torch.inference_mode():
                self.model(torch.tensor([list(prompt_ids[:-1])]), torch.arange(len(prompt_ids) - 1), last_only=True)
            self._fed = list(prompt_ids[:-1])

    def finish(self) -> None:
        if self._full_head is not None:  # the draft model gets its own head back
            self.model.lm_head = self._full_head
            self._full_head = None
        self._ids = None
        self._plan = None

    def _vocab_plan(self, prompt_ids: Sequence[int]) -> Any | None:
        """A quantized draft model's whole step in one C++ call (``quant.plan``), finished by its head's rows for the
        draft vocabulary plus the prompt's tokens (sliced, not re-quantized; padded to 16 rows with copies of the
        first id, which never win an argmax over the original); None where the plan does not apply."""
        from albumen.llm.quant.plan import quant_decode_plan

        assert self.vocab is not None
        prompt = torch.unique(torch.tensor(list(prompt_ids), dtype=torch.long))
        extra = prompt[~torch.isin(prompt, self.vocab) & (prompt < self.model.args.vocab_size)]
        ids = torch.cat([self.vocab, extra])  # (Vs,)
        small = _sliced_quantized(self.model.lm_head, torch.cat([ids, ids[:1].expand(-ids.numel() % 16)]))
        if small is None:
            return None
        with torch.inference_mode():
            plan = quant_decode_plan(self.model, head=small.eval())
        if plan is not None:
            self._ids = ids
            self._n_ids = int(ids.numel())
        return plan

    def _swap_head(self, prompt_ids: Sequence[int]) -> None:
        """Score only the draft vocabulary plus the prompt's tokens this sequence (rows: static set, then extras)."""
        assert self.vocab is not None
        full = self._full_head if self._full_head is not None else self.model.lm_head
        if self._static_head is None:
            self._static_head = restrict_vocab(self.model, self.vocab)
        prompt = torch.unique(torch.tensor(list(prompt_ids), dtype=torch.long))
        extra = prompt[~torch.isin(prompt, self.vocab) & (prompt < self.model.args.vocab_size)]
        head = self._static_head
        if extra.numel():
            self.model.lm_head = full
            head = _ConcatHead(self._static_head, restrict_vocab(self.model, extra))
        self._ids = torch.cat([self.vocab, extra])  # (Vs,) row i of the head scores token _ids[i]
        self._full_head = full
        self.model.lm_head = head

    def _choose(self, logits: torch.Tensor, cfg: SamplingConfig,
                generator: torch.Generator | None) -> tuple[int, torch.Tensor | None]:
        """(token, q (V,) or None) from the draft logits (1, V), or (1, Vs) over ``_ids`` with a draft vocabulary."""
        if cfg.greedy:  # greedy verification never reads q
            index = int(logits.argmax(-1))
            return (index if self._ids is None else int(self._ids[index])), None
        if self._ids is not None:  # the restricted distribution, zero outside the draft vocabulary
            full = torch.full((1, self.model.args.vocab_size), float("-inf"), dtype=torch.float32)
            logits = full.index_copy_(1, self._ids, logits.float())
        q = logits_to_probs(logits, cfg)  # (1, V)
        return int(torch.multinomial(q, 1, generator=generator)), q[0]

    def _valid_prefix(self, tokens: Sequence[int]) -> int:
        n = min(len(self._fed), len(tokens))
        for i in range(n):
            if self._fed[i] != tokens[i]:
                return i
        return n

    def propose(self, tokens: Sequence[int], k: int, cfg: SamplingConfig, generator: torch.Generator | None) -> Draft:
        if k <= 0:
            return Draft([])
        tokens = list(tokens)
        if len(tokens) + k > self.model.max_seq_len:
            return Draft([])  # the draft cache is full: let the target go on alone
        valid = min(self._valid_prefix(tokens), len(tokens) - 1)  # the last token is always fed, for its logits
        if self._plan is not None:
            return self._propose_on_plan(tokens, valid, k, cfg, generator)
        block = torch.tensor([tokens[valid:]])  # (1, T)
        base = len(tokens)
        logits = self.model(block, torch.arange(valid, base), last_only=True)[:, -1]  # (1, V)
        self._fed = tokens  # a private copy: drafts are appended as they are fed
        drafted: list[int] = []
        probs: list[torch.Tensor] = []
        for i in range(k):
            self.passes += 1
            doubt = unsure(logits, self.min_confidence)
            if doubt and not self.keep_unsure:
                break
            token, q = self._choose(logits, cfg, generator)
            if q is not None:
                probs.append(q)
            drafted.append(token)
            if doubt:
                return self._draft(drafted, probs, logits, cfg)
            if i + 1 < k:
                logits = self.model(torch.tensor([[token]]), torch.tensor([base + i]))[:, -1]
                self._fed.append(token)
        return Draft(drafted, torch.stack(probs) if probs else None)  # probs: (k, V) when sampling

    def _draft(self, drafted: list[int], probs: list[torch.Tensor], logits: torch.Tensor,
               cfg: SamplingConfig) -> Draft:
        """A draft that stopped after a doubted token (the last): with ``alternative`` and greedy decoding, the draft's
        second choice there (from ``logits`` (1, V) or (1, Vs)) rides along as a tree leaf."""
        alternatives: tuple[tuple[int, int], ...] = ()
        if self.alternative and cfg.greedy and logits.shape[-1] > 1:
            row = logits[0].float().clone()
            row[int(row.argmax())] = float("-inf")  # the drafted token (greedy: the argmax, first of ties)
            second = int(row.argmax())
            alternatives = ((len(drafted), second if self._ids is None else int(self._ids[second])),)
        return Draft(drafted, torch.stack(probs) if probs else None, alternatives)


    def _propose_on_plan(self, tokens: list[int], valid: int, k: int, cfg: SamplingConfig,
                         generator: torch.Generator | None) -> Draft:
        """``propose`` on the decode plan: catch up on tokens[valid:] in blocks of up to 8, then one call per draft."""
        plan, n = self._plan, self._n_ids
        greedy = cfg.greedy and self.min_confidence <= 0  # argmax in C++; the confidence rule needs the logits
        for start in range(valid, len(tokens), 8):
            chunk = tokens[start:start + 8]
            if greedy:
                index = plan.block_argmax(chunk, start)[-1]
            else:
                logits = plan.block_logits(chunk, start)[-1:, :n]  # (1, Vs)
        self._fed = tokens
        drafted: list[int] = []
        probs: list[torch.Tensor] = []
        base = len(tokens)
        for i in range(k):
            self.passes += 1
            doubt = False
            if greedy:
                token = int(self._ids[index])
            else:
                doubt = unsure(logits, self.min_confidence)
                if doubt and not self.keep_unsure:
                    break
                token, q = self._choose(logits, cfg, generator)
                if q is not None:
                    probs.append(q)
            drafted.append(token)
            if doubt:
                return self._draft(drafted, probs, logits, cfg)
            if i + 1 < k:
                if greedy:
                    index = plan.argmax(token, base + i)
                else:
                    logits = plan.logits(token, base + i)[:, :n]
                self._fed.append(token)
        return Draft(drafted, torch.stack(probs) if probs else None)


class _FirstColumns(nn.Module):
    """A head whose output keeps only its first ``n`` logits: (..., D) -> (..., n)."""

    def __init__(self, head: nn.Module, n: int) -> None:
        super().__init__()
        self.head, self.n = head, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)[..., : self.n]


class _ConcatHead(nn.Module):
    """Two heads side by side: (..., D) -> (..., V1 + V2)."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.first(x), self.second(x)], dim=-1)
