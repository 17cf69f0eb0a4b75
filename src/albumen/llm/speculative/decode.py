"""Speculative decoding: a drafter proposes k tokens, the target scores them in one forward pass, and the exact
acceptance rule (rule.py) keeps a prefix plus one token of the target's own.

The loop, per target step::

    draft = drafter.propose(tokens, k)                  # k cheap guesses
    logits = target([last] + draft, positions)          # one forward over k+1 positions
    n, token = verify(draft, logits)                    # keep n drafts, add the target's token
    tokens += draft[:n] + [token]                       # positions beyond are stale: overwritten next step

The target's static KV cache rolls back for free: the next block is written from the first unaccepted position, and
attention never reads beyond its own position (kv_cache.py). Drafters roll back their own caches. The draft length
follows the running acceptance rate and the measured draft and verify times (adaptive.py). Greedy output is
token-identical to plain greedy decoding; sampled output has exactly the target's distribution (repetition penalty
included). Guided-JSON constraints are not supported here: use plain ``generate`` for them.

This module knows nothing about model files; tokenizers only for the text-level wrapper at the bottom.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from albumen.llm.generate import (GenerationResult, GenerationStats, TextAssembler, _prompt_ids, decode_one_token,
                                  prefill)
from albumen.llm.model import Transformer
from albumen.llm.sampling import SamplingConfig, apply_repetition_penalty, logits_to_probs, sample
from albumen.llm.speculative.adaptive import AdaptiveDraftLength, SpeculativeConfig, StepCosts
from albumen.llm.speculative.drafters.base import Draft, Drafter
from albumen.llm.speculative.rule import greedy_verify, speculative_verify
from albumen.llm.tokenizer import Tokenizer

__all__ = ["TREE_MAX_ROWS", "SpeculativeStats", "speculative_decode", "speculative_generate", "target_scores"]


@dataclass
class SpeculativeStats(GenerationStats):
    """Plain generation stats plus what speculation did."""

    target_steps: int = 0  # verification forwards after the prefill
    drafted: int = 0
    accepted: int = 0
    draft_s: float = 0.0
    verify_s: float = 0.0
    draft_lengths: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_step(self) -> float:
        """Mean tokens produced per target verification step (accepted drafts + the target's own token)."""
        return (self.new_tokens - 1) / self.target_steps if self.target_steps else 0.0


def target_scores(logits: torch.Tensor, cfg: SamplingConfig, history: Sequence[int], draft: Sequence[int]) -> torch.Tensor:
    """The target's per-slot scores as ``sample`` would see them: repetition penalty with the tokens before each slot.

    Args:
        logits: (k+1, V) raw target logits for the draft slots and the bonus slot.
        history: the accepted tokens (prompt included) before slot 0.
        draft: the k drafted tokens (slot i also sees draft[:i]).
    Returns:
        (k+1, V) float logits.
    """
    logits = logits.float()
    if cfg.repetition_penalty == 1.0:
        return logits
    rows = []
    for i in range(logits.shape[0]):
        seen = torch.tensor([list(history) + list(draft[:i])])  # (1, N)
        rows.append(apply_repetition_penalty(logits[i : i + 1], seen, cfg.repetition_penalty))
    return torch.cat(rows)  # (k+1, V)


def _verify(
    draft: Draft, logits: torch.Tensor, cfg: SamplingConfig, history: Sequence[int], gen: torch.Generator | None
) -> tuple[int, int]:
    scores = target_scores(logits, cfg, history, draft.tokens)  # (k+1, V)
    ids = torch.tensor(draft.tokens, dtype=torch.long)
    if cfg.greedy:
        return greedy_verify(ids, scores)
    return speculative_verify(ids, draft.probs, logits_to_probs(scores, cfg), gen)


_NO_DRAFT = Draft([])
_PLAN_MAX_ROWS = 8  # a decode plan's block takes 1..8 tokens; longer blocks (k_max > 7) run as modules
# Leaves are added only while a block stays within this many rows: up to 6 rows the packed kernels keep every
# accumulator in registers (a row costs 1-2 % of a step); a 7th row is compute-bound (1.5x a step on Qwen2.5-1.5B
# bf16, docs/speculative.md), dearer than the token a leaf wins one time in three.
TREE_MAX_ROWS = 6


def _plain_step(target: Transformer, plan: Any | None, tokens: Sequence[int], pos: int, cfg: SamplingConfig,
                gen: torch.Generator | None) -> int:
    """One plain decode step (k = 0), as ``generate_tokens`` takes it: the last accepted token at ``pos`` -> the next
    token, through the target's single-call decode plan where it has one (``Transformer.decode_plan``; greedy
    without a penalty picks in C++), sampled exactly as ``sample`` does (repetition penalty over ``tokens``)."""
    penalize = cfg.repetition_penalty != 1.0
    if plan is not None and cfg.greedy and not penalize:
        return int(plan.argmax(tokens[-1], pos))
    if plan is not None:
        logits = plan.logits(tokens[-1], pos)  # (1, V)
    else:
        logits = decode_one_token(target, torch.tensor([[tokens[-1]]]), pos)  # (1, V)
    return int(sample(logits, cfg, gen, torch.tensor([tokens]) if penalize else None)[0])


def _plan_block(plan: Any, draft: Draft, tokens: Sequence[int], pos: int, cfg: SamplingConfig,
                gen: torch.Generator | None) -> tuple[int, list[int]]:
    """Verify ``draft`` with one block call of the target's decode plan (``block_argmax`` / ``block_logits``: each row
    scored exactly as a plain step scores it alone): the last accepted token at ``pos``, then the drafts. Returns
    (drafts kept, the tokens that follow them: the target's own, or an accepted alternative and the target's token
    after it). Greedy drafts with alternatives go as a small tree (``tree_argmax``) where the plan has one."""
    block = [tokens[-1], *draft.tokens]  # k + 1 tokens at pos .. pos + k
    if cfg.greedy and cfg.repetition_penalty == 1.0:  # the argmax per row is all greedy verification reads
        leaves = [(i, t) for i, t in draft.alternatives if 1 <= i <= len(draft.tokens)]
        leaves = leaves[:max(0, TREE_MAX_ROWS - len(block))]
        if leaves and hasattr(plan, "tree_argmax"):
            best = plan.tree_argmax(block + [t for _, t in leaves], pos,
                                    list(range(len(block))) + [i for i, _ in leaves])
        else:
            leaves, best = [], plan.block_argmax(block, pos)
        n = 0
        while n < len(draft.tokens) and draft.tokens[n] == best[n]:
            n += 1
        for row, (i, t) in enumerate(leaves, start=len(block)):
            if i == n + 1 and t == best[n]:  # the chain missed exactly here and the target picks this leaf
                plan.move_kv(pos + row, pos + i)
                return n, [t, int(best[row])]
        return n, [int(best[n])]
    n, token = _verify(draft, plan.block_logits(block, pos), cfg, tokens, gen)  # logits (k+1, V)
    return n, [token]


def _no_probe_left(control: AdaptiveDraftLength, steps_left: int) -> bool:
    """True when the controller will not draft again in the ``steps_left`` steps of this sequence."""
    until = control.steps_until_probe()
    return until is not None and until >= steps_left


def _release(drafter: Drafter) -> bool:
    """Let a drafter drop what it holds on the target (``release()``, optional); True if it had something."""
    release = getattr(drafter, "release", None)
    return bool(release()) if callable(release) else False


_COSTS: weakref.WeakKeyDictionary[Drafter, tuple[int, StepCosts]] = weakref.WeakKeyDictionary()


def _shared_costs(drafter: Drafter, target: Transformer, spec: SpeculativeConfig) -> StepCosts | None:
    """The measured step costs of this drafter with this target, kept across sequences (None: start afresh)."""
    if not spec.measure:
        return None
    try:
        kept = _COSTS.get(drafter)
    except TypeError:  # not weakly referenceable
        return None
    if kept is None or kept[0] != id(target) or len(kept[1].verify_s) != spec.k_max + 1:
        kept = (id(target), StepCosts(spec.k_max))
        _COSTS[drafter] = kept
    return kept[1]


def speculative_decode(
    target: Transformer,
    drafter: Drafter,
    prompt_ids: Sequence[int],
    cfg: SamplingConfig,
    spec: SpeculativeConfig = SpeculativeConfig(),
    eos_ids: Sequence[int] = (),
    stats: SpeculativeStats | None = None,
) -> Iterator[int]:
    """Yield new token ids, exactly as ``generate_tokens`` would (EOS not yielded, at most ``max_new_tokens``)."""
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    stats = stats if stats is not None else SpeculativeStats()
    stats.prompt_tokens = len(prompt_ids)
    total = len(prompt_ids) + cfg.max_new_tokens
    if total > target.args.max_seq_len:
        raise ValueError(f"prompt ({len(prompt_ids)}) + max_new_tokens ({cfg.max_new_tokens}) exceeds the context "
                         f"length {target.args.max_seq_len}")
    if cfg.max_new_tokens == 0:
        return
    cache_len = min(target.args.max_seq_len, -(-(total + spec.k_max + 1) // 256) * 256)
    target.setup_caches(1, cache_len)
    gen = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
    eos = set() if cfg.ignore_eos else set(eos_ids)
    control = AdaptiveDraftLength(spec, drafter.cost, costs=_shared_costs(drafter, target, spec))
    if hasattr(drafter, "length_policy"):  # a chain: each member drafts the length its own record calls for
        drafter.length_policy = control.best_k_at if spec.adaptive and spec.measure else None
    clock = control.clock
    tokens = list(prompt_ids)
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            # The target's single-call decode plan (plain steps and verification blocks), built before a drafter
            # hooks the target; None where the target runs module by module (LoRA, packed bf16 linears, ...).
            plan = target.decode_plan() if hasattr(target, "decode_plan") else None
            blocks = plan is not None and hasattr(plan, "block_logits")
            drafter.start(target, prompt_ids, cache_len)  # a draft model prefills here: part of the first token's time
            logits = prefill(target, torch.tensor([tokens]))
            first = int(sample(logits, cfg, gen, torch.tensor([tokens]))[0])
            # A drafter that reads the target's hidden states (the head) saw the prompt's through its hook; from
            # here the plan hands them over (``observe``), and the hook goes so that nothing keeps the plan off.
            observe = getattr(drafter, "observe", None) if blocks and hasattr(plan, "features") else None
            if callable(observe):
                _release(drafter)
            else:
                observe = None
                if plan is not None and target.decode_plan() is None:
                    plan, blocks = None, False  # the drafter hooked the target: run it module by module
            stats.ttft_s = time.perf_counter() - start
            stats.new_tokens = 1
            if first in eos:
                return
            tokens.append(first)
            yield first
            t0 = time.perf_counter()
            idle = False  # the last step was a plain one: the drafter first catches up on the tokens it missed
            released = False  # the drafter will not be asked again this sequence and let go of the target
            while stats.new_tokens < cfg.max_new_tokens:
                # Never draft past max_new_tokens or the cache: the target's own token always comes on top.
                k = 0 if released else min(control.next_k(), cfg.max_new_tokens - stats.new_tokens - 1)
                if k <= 0 and not released and _no_probe_left(control, cfg.max_new_tokens - stats.new_tokens):
                    # A drafter that watches the target (the head's feature hook) keeps it off the decode plan;
                    # once no draft can come before the end, release it and decode plainly on the plan.
                    released = _release(drafter)
                    if released and plan is None:
                        plan = target.decode_plan() if hasattr(target, "decode_plan") else None
                        blocks = plan is not None and hasattr(plan, "block_logits")
                pos = len(tokens) - 1  # the last accepted token is not in the target's cache yet
                t_draft = clock()
                if k <= 0:  # plain step: exactly what plain decoding runs, no drafter and no block bookkeeping
                    t_verify = t_draft
                    draft = _NO_DRAFT
                    on_plan = plan is not None
                    n, tail, n_kept = 0, [_plain_step(target, plan, tokens, pos, cfg, gen)], 0
                else:
                    draft = drafter.propose(tokens, k, cfg, gen)
                    # A chain's member may draft longer than k (its own record); never past k_max or the end.
                    cap = min(spec.k_max, cfg.max_new_tokens - stats.new_tokens - 1)
                    draft = Draft(draft.tokens[:cap], None if draft.probs is None else draft.probs[:cap],
                                  tuple((i, t) for i, t in draft.alternatives if i <= cap))
                    t_verify = clock()
                    on_plan = blocks and len(draft.tokens) < _PLAN_MAX_ROWS
                    if on_plan:
                        n, tail = _plan_block(plan, draft, tokens, pos, cfg, gen)
                    else:
                        block = torch.tensor([[tokens[-1], *draft.tokens]])  # (1, k+1)
                        logits = target(block, torch.arange(pos, pos + block.shape[1]))[0]  # (k+1, V)
                        n, token = _verify(draft, logits, cfg, tokens, gen)
                        tail = [token]
                    n_kept = n + len(tail) - 1  # an accepted alternative counts as an accepted draft token
                if observe is not None and not released and on_plan:
                    observe(pos, plan.features())  # (k+1, D): the hidden states of the rows just scored
                t_done = clock()
                stats.draft_s += t_verify - t_draft
                stats.verify_s += t_done - t_verify
                stats.target_steps += 1
                stats.drafted += len(draft)
                stats.accepted += n_kept
                stats.draft_lengths.append(len(draft))
                if spec.measure:  # measured costs steer the draft length (never the output)
                    # A draft after plain steps includes a one-off catch-up (a draft model re-feeds every token
                    # since it last ran): not the per-token cost of drafting on. Counting it would make a drafter
                    # look dearer the longer it idles, and keep it idle.
                    draft_s = t_verify - t_draft
                    control.update(len(draft), n_kept, None if idle else draft_s, t_done - t_verify,
                                   resume_s=draft_s if idle else None, allowed=k)
                else:
                    control.update(len(draft), n_kept, allowed=k)
                idle = not len(draft)
                for t in [*draft.tokens[:n], *tail]:
                    stats.new_tokens += 1
                    stats.decode_s = time.perf_counter() - t0
                    if t in eos:
                        return
                    tokens.append(t)
                    yield t
                    if stats.new_tokens >= cfg.max_new_tokens:
                        return
    finally:
        drafter.finish()


def speculative_generate(
    target: Transformer,
    tokenizer: Tokenizer,
    drafter: Drafter,
    prompt: str | Sequence[int] | Sequence[dict[str, str]],
    cfg: SamplingConfig = SamplingConfig(),
    spec: SpeculativeConfig = SpeculativeConfig(),
    chat: bool = False,
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """``generate`` with a drafter: same text, ids and finish reason; ``result.stats`` is a ``SpeculativeStats``."""
    stats = SpeculativeStats()
    result = GenerationResult("", [], "length", stats)
    text = TextAssembler(tokenizer, cfg.stop)
    ids = _prompt_ids(tokenizer, prompt, chat)
    for token in speculative_decode(target, drafter, ids, cfg, spec, tokenizer.eos_ids, stats):
        result.token_ids.append(token)
        piece = text.feed(token)
        if piece and on_text is not None:
            on_text(piece)
        if text.stopped:
            result.finish_reason = "stop"
            break
    else:
        if len(result.token_ids) < cfg.max_new_tokens:
            result.finish_reason = "eos"
    tail = text.flush()
    if tail and on_text is not None:
        on_text(tail)
    result.text = text.text
    return result
