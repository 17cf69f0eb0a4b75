"""How well a draft model agrees with its target, measured without a clock.

Greedy verification accepts a draft token exactly when it is the target's argmax given the same prefix, and while the
draft agrees its own prefix is the target's. So one teacher-forced pass of the draft over the target's greedy reply
decides every step of greedy speculative decoding: ``agree[t]`` says whether the draft's argmax after ``reply[:t]``
is ``reply[t]``, and a step that starts at ``t`` with draft length ``k`` accepts the run of agreements
``agree[t:t + k]`` and adds the target's own token (``reply[0]`` comes from the prefill, so steps replay
``agree[1:]``). ``simulate_steps`` replays that exactly, so tokens per target step at any fixed k come out free of
the run-to-run timing noise that the speed benchmark carries; with measured step costs they predict the speed-up
(``predicted_speedup``). With the draft's confidence per position the replay also tries a
stopping rule: draft while the draft's top-1 probability stays above a threshold. ``replay_drafter`` runs a real
drafter (any policy, a confidence rule included, on its own text after a miss) against the target's cached greedy
reply: the same steps as the speculative loop, without running the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["StepReplay", "draft_confidence", "greedy_agreement", "predicted_speedup", "replay_drafter",
           "simulate_steps", "target_features"]


def greedy_agreement(logits: torch.Tensor, reply: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(T,) bool: the argmax of ``logits[t]`` (T, V), over ``allowed`` ids only when given (a draft vocabulary),
    equals ``reply[t]`` (T,)."""
    if logits.dim() != 2 or reply.shape != logits.shape[:1]:
        raise ValueError(f"logits (T, V) and reply (T,) expected, got {tuple(logits.shape)} and {tuple(reply.shape)}")
    if allowed is None:
        return logits.argmax(-1) == reply
    allowed = allowed.long()
    pick = allowed[logits.index_select(-1, allowed).argmax(-1)]
    return pick == reply


def draft_confidence(logits: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(T,) the draft's top-1 probability at each position, over ``allowed`` ids only when given (the distribution a
    draft vocabulary leaves)."""
    if allowed is not None:
        logits = logits.index_select(-1, allowed.long())
    return torch.softmax(logits.float(), -1).amax(-1)


@dataclass(frozen=True)
class StepReplay:
    tokens: int  # tokens emitted (accepted drafts + the target's own token per step)
    steps: int  # target (verification) steps
    drafted: int  # draft tokens proposed
    accepted: int  # draft tokens accepted
    lengths: tuple[int, ...] = ()  # tokens proposed at each step
    computed: tuple[int, ...] = ()  # draft forward passes at each step (one more than proposed where it stopped early)
    leaves: tuple[int, ...] = ()  # alternative leaves verified with each step's chain (extra rows; empty: none)

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def __add__(self, other: StepReplay) -> StepReplay:
        mine = self.leaves or (0,) * len(self.lengths)
        theirs = other.leaves or (0,) * len(other.lengths)
        leaves = mine + theirs if any(mine) or any(theirs) else ()
        return StepReplay(self.tokens + other.tokens, self.steps + other.steps, self.drafted + other.drafted,
                          self.accepted + other.accepted, self.lengths + other.lengths,
                          self.computed + other.computed, leaves)


def simulate_steps(agree: Sequence[bool] | torch.Tensor, k: int,
                   confidence: Sequence[float] | torch.Tensor | None = None, threshold: float = 0.0) -> StepReplay:
    """Replay greedy speculative decoding with draft length ``k`` over the tokens that follow the reply's first
    one (which the prompt's prefill makes), given their per-position draft agreement ``agree``: each step drafts
    min(k, tokens left - 1) tokens (the last token always comes from the target, as in the engine), accepts the leading
    agreements and emits one more token from the target.

    With ``confidence`` (the draft's top-1 probability per position, teacher-forced) and ``threshold`` > 0, a step
    stops drafting before the first token whose probability is below the threshold (that forward pass is still paid:
    ``computed``). The flags only know the draft's confidence along the target's text: after a wrong draft token the
    replay assumes the draft goes on to ``k`` (the dearest case; a real draft often stops sooner)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    flags = [bool(a) for a in (agree.tolist() if isinstance(agree, torch.Tensor) else agree)]
    conf = None
    if confidence is not None and threshold > 0:
        conf = [float(c) for c in (confidence.tolist() if isinstance(confidence, torch.Tensor) else confidence)]
        if len(conf) != len(flags):
            raise ValueError(f"{len(conf)} confidences for {len(flags)} agreement flags")
    n = len(flags)
    t = tokens = accepted = 0
    lengths: list[int] = []
    computed: list[int] = []
    while t < n:
        kk = min(k, n - t - 1)
        proposed, passes, stopped = kk, kk, False
        if conf is not None:
            proposed, on_text = 0, True  # on_text: every token proposed so far is the target's
            while proposed < kk:
                if on_text and conf[t + proposed] < threshold:
                    stopped = True
                    break
                on_text = on_text and flags[t + proposed]
                proposed += 1
            passes = proposed + (1 if stopped else 0)
        run = 0
        while run < proposed and flags[t + run]:
            run += 1
        lengths.append(proposed)
        computed.append(passes)
        accepted += run
        tokens += run + 1
        t += run + 1
    return StepReplay(tokens, len(lengths), sum(lengths), accepted, tuple(lengths), tuple(computed))


def predicted_speedup(replay: StepReplay, plain_ms: float, draft_ms: float, verify_ms: Sequence[float]) -> float:
    """Plain decoding's time per token over speculation's: each step costs its draft forward passes plus a
    verification of (proposed + leaves + 1) rows (``verify_ms[n]`` for n + 1 rows, ``verify_ms[0]`` = one plain
    step)."""
    rows = [n + (replay.leaves[i] if replay.leaves else 0) for i, n in enumerate(replay.lengths)]
    if rows and max(rows) >= len(verify_ms):
        raise ValueError(f"no verification cost for {max(rows) + 1} rows (have {len(verify_ms)})")
    spent = sum(c * draft_ms for c in replay.computed) + sum(verify_ms[n] for n in rows)
    return plain_ms * replay.tokens / spent if spent else 1.0


@torch.inference_mode()
def target_features(target: Any, ids: Sequence[int]) -> torch.Tensor:
    """The target's final normed hidden states (T, D) over ``ids`` in one causal pass (what a head drafter reads)."""
    captured: list[torch.Tensor] = []
    hook = target.model.layers[-1].register_forward_hook(lambda m, a, out: captured.append(target.model.norm(out[0])))
    try:
        if getattr(target, "has_caches", False):
            target.clear_caches()
        target(torch.tensor([list(ids)]), last_only=True)
    finally:
        hook.remove()
    return captured[0]


def replay_drafter(drafter: Any, target: Any, prompt_ids: Sequence[int], reply: Sequence[int], k: int,
                   features: torch.Tensor | None = None) -> StepReplay:
    """The greedy speculative loop's steps for ``drafter`` at draft length ``k`` (its own ``propose``: a confidence
    rule or a lookup works as in the loop) when the target's greedy answer to ``prompt_ids`` is ``reply``: greedy
    verification keeps the leading drafted tokens equal to the reply, so the target itself need not run. ``target``
    is only handed to ``drafter.start`` (vocabulary checks). ``computed`` counts the drafter's forward passes where it
    reports them (``passes``), else its proposals. ``features`` (``target_features`` over prompt + reply[:-1]) feed a
    drafter that reads the target's hidden states (the head, through ``observe``): accepted tokens are the reply's,
    so their features are the target's along the reply."""
    prompt, reply = list(prompt_ids), list(reply)
    with torch.inference_mode():
        return _replay(drafter, target, prompt, reply, k, features)


def _replay(drafter: Any, target: Any, prompt: list[int], reply: list[int], k: int,
            features: torch.Tensor | None) -> StepReplay:
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.decode import TREE_MAX_ROWS

    greedy = SamplingConfig(max_new_tokens=len(reply))
    n = len(reply)
    drafter.start(target, prompt, len(prompt) + n + k + 1)
    observe = getattr(drafter, "observe", None)  # a chain has it as a property, None without a head
    if features is not None and callable(observe):
        if callable(getattr(drafter, "release", None)):
            drafter.release()  # the target does not run here: nothing for a hook to watch
        observe(0, features)
    t, tokens, accepted = 1, 0, 0  # reply[0] is the prefill's: steps make reply[1:]
    lengths: list[int] = []
    computed: list[int] = []
    leaves: list[int] = []
    try:
        while t < n:
            kk = min(k, n - t - 1)
            before = getattr(drafter, "passes", None)
            draft = drafter.propose(prompt + reply[:t], kk, greedy, None) if kk > 0 else None
            proposal = draft.tokens if draft is not None else []
            alternatives = [(i, a) for i, a in (draft.alternatives if draft is not None else ())
                            if 1 <= i <= len(proposal)][:max(0, TREE_MAX_ROWS - 1 - len(proposal))]
            run = 0
            while run < len(proposal) and proposal[run] == reply[t + run]:
                run += 1
            if run < len(proposal) and (run + 1, reply[t + run]) in alternatives:
                run += 1  # the leaf the target picks (decode.py keeps it and the target's token after it)
            lengths.append(len(proposal))
            leaves.append(len(alternatives))
            computed.append(drafter.passes - before if before is not None else len(proposal))
            accepted += run
            tokens += run + 1  # a leaf sits at a drafted position (<= kk < n - t): never past the reply
            t += run + 1
    finally:
        drafter.finish()
    return StepReplay(tokens, len(lengths), sum(lengths), accepted, tuple(lengths), tuple(computed),
                      tuple(leaves) if any(leaves) else ())
