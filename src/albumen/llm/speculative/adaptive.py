"""Choosing the draft length from the running acceptance rate and the measured costs, so that poor drafts cost little.

With a per-token acceptance rate a, drafting k tokens yields on average E(a, k) = (1 - a^(k+1)) / (1 - a) tokens per
target step (the accepted prefix plus the target's own token). The controller picks the k in 0..k_max that maximises
tokens per second, E(a, k) / (V(k) + D(k)), where V(k) is the time of one verification of a block of k + 1 positions
(the target forward plus the acceptance rule) and D(k) the time the drafter takes to propose k tokens (its own
bookkeeping included: index updates, cache catch-up). k = 0 is plain decoding. The rate is kept per draft position
too (position i: accepted given the i - 1 before it were; deeper drafts are accepted less often), each shrunk to the
pooled rate while it has little evidence, and the controller's own choice uses E(k) = 1 + a1 + a1 a2 + ... with them.

Costs are measured online: the decoding loop reports each step's draft and verify durations (``update``), timed with
``clock`` (default ``time.perf_counter``; tests pass a fake clock). V is an exponentially weighted mean per block size;
sizes not seen yet are interpolated linearly between measured sizes, or extrapolated from the nearest one with the
prior shape 1 + v k; D is k times an exponentially weighted mean draft time per drafted token (the loop leaves out
a draft right after plain steps: it includes the drafter's one-off catch-up on the tokens it missed, e.g. a draft
model re-feeding them, which is not what drafting on costs). The first step of a
controller with no measurements is a plain one (k = 0), so that speculation is always judged against a measured plain
step (on a small model a block of 2 rows can cost 1.6x one row, far from the prior). The measured costs (``StepCosts``)
outlive one sequence: the loop keeps them per drafter and target, together with the running acceptance rate, and a
new sequence starts from that rate (as a prior worth ``prior_weight`` tokens) at the best k for it. Before any
measurement the prior relative costs are used (c: ``draft_cost`` or the drafter's own estimate, v: ``verify_cost``,
both relative to one target step).

While at k = 0 the controller probes with k = 1 after ``probe_every`` steps; each rejected probe that does not bring
drafting back doubles the wait (an accepted one keeps it where a 1-token draft could pay at all: a borderline drafter
whose running rate dipped gets its chances back; where a 2-row block costs two plain steps even accepted probes back
off) (8, 16, 32, ... up to ``probe_max``), and the wait is carried to the next sequence with the costs, so a
useless drafter costs almost nothing. A probe's cost is measured too (its draft time, a draft model's catch-up on the
plain steps included, plus the extra verification time); the wait is at least long enough for probes to cost no more
than ``probe_budget`` of the plain steps' time (a 0.5B draft model catching up on 16 tokens costs several plain steps).
The draft length never changes the output (the acceptance rule is exact), only the speed. With ``measure=False`` the
costs stay at the priors and the loop is deterministic (no clocks), so seeded sampled runs repeat exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AdaptiveDraftLength", "SpeculativeConfig", "StepCosts", "expected_tokens"]


@dataclass(frozen=True)
class SpeculativeConfig:
    """Draft length policy. ``adaptive=False`` always drafts ``k`` tokens."""

    k: int = 4  # the starting (or fixed) draft length
    k_max: int = 7  # a block of k_max + 1 = 8 rows stays on the quantized kernels' decode path
    adaptive: bool = True
    prior_rate: float = 0.6  # acceptance rate assumed before any evidence
    prior_weight: float = 2.0  # how many drafted tokens that prior is worth
    decay: float = 0.9  # per target step: older evidence fades (0.8 measured 1.14x vs 1.32x for lookup+head, grounded)
    verify_cost: float = 0.03  # prior: extra target cost per verified position, relative to one step
    draft_cost: float | None = None  # prior: None takes the drafter's own estimate
    probe_every: int = 8  # first wait at k = 0 before a k = 1 probe
    probe_max: int = 64  # the wait doubles after each probe that does not bring drafting back, up to this
    probe_budget: float = 0.02  # probes may cost at most this share of the plain steps' time (once measured)
    measure: bool = True  # time draft and verify steps and choose k from the measured costs
    time_weight: float = 0.3  # weight of the newest timing in the exponentially weighted means

    def __post_init__(self) -> None:
        if not 0 <= self.k <= self.k_max:
            raise ValueError(f"need 0 <= k <= k_max, got k={self.k}, k_max={self.k_max}")
        if not 0 < self.decay <= 1 or not 0 <= self.prior_rate <= 1:
            raise ValueError("decay must be in (0, 1] and prior_rate in [0, 1]")
        if not 0 < self.time_weight <= 1 or not 1 <= self.probe_every <= self.probe_max:
            raise ValueError("need 0 < time_weight <= 1 and 1 <= probe_every <= probe_max")
        if not 0 < self.probe_budget <= 1:
            raise ValueError(f"probe_budget must be in (0, 1], got {self.probe_budget}")


def expected_tokens(rate: float, k: int) -> float:
    """Mean tokens per target step when each of k drafts survives with probability ``rate``."""
    if rate >= 1.0:
        return float(k + 1)
    return (1.0 - rate ** (k + 1)) / (1.0 - rate)


def _ewma(old: float | None, new: float, weight: float) -> float:
    return new if old is None else (1.0 - weight) * old + weight * new


class StepCosts:
    """Measured step times: an exponentially weighted verify time per draft length and draft time per drafted token.

    They describe the target, the drafter and the machine, not the prompt, so the decoding loop shares one instance
    across the sequences decoded with the same target and drafter."""

    def __init__(self, k_max: int) -> None:
        self.verify_s: list[float | None] = [None] * (k_max + 1)  # per draft length k (a block of k + 1 rows)
        self.draft_tok_s: float | None = None  # seconds per drafted token, the drafter's bookkeeping included
        self.rate: float | None = None  # the running acceptance rate where the last sequence left it
        self.probe_wait: int | None = None  # the wait between k = 1 probes where the last sequence left it
        self.resume_s: float | None = None  # draft time of a draft right after plain steps (catch-up included)
        self.pos_rates: list[float] | None = None  # the per-position acceptance rates where the last sequence left
        self.pos_continue: list[float] | None = None  # the per-position rates at which drafts went on, likewise

    def record(self, drafted: int, draft_s: float | None, verify_s: float | None, weight: float) -> None:
        if verify_s is not None and verify_s > 0 and drafted < len(self.verify_s):  # a coarse clock may read 0
            self.verify_s[drafted] = _ewma(self.verify_s[drafted], verify_s, weight)
        if draft_s is not None and draft_s >= 0 and drafted > 0:
            self.draft_tok_s = _ewma(self.draft_tok_s, draft_s / drafted, weight)


class AdaptiveDraftLength:
    """Running acceptance statistics, measured costs, and the draft length they call for."""

    def __init__(self, cfg: SpeculativeConfig, draft_cost: float,
                 clock: Callable[[], float] = time.perf_counter, costs: StepCosts | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.cost = cfg.draft_cost if cfg.draft_cost is not None else draft_cost
        self.costs = costs if costs is not None and len(costs.verify_s) == cfg.k_max + 1 else StepCosts(cfg.k_max)
        # The prior: the rate the last sequence with this drafter ended at, if any (a drafter that was useless on
        # the last prompts starts cautious), else ``prior_rate``; worth ``prior_weight`` drafted tokens either way.
        prior = self.costs.rate if self.costs.rate is not None else cfg.prior_rate
        self.accepted = prior * cfg.prior_weight
        self.tried = cfg.prior_weight
        # Per draft position i (1..k_max): accepted given the i - 1 before it were. Deeper drafts are accepted less
        # often (the head: 55 % at the first position, 49 % at the second); each position's rate shrinks to the
        # pooled rate while it has little evidence.
        self.pos_accepted = [0.0] * cfg.k_max
        self.pos_tried = [0.0] * cfg.k_max
        if self.costs.pos_rates is not None and len(self.costs.pos_rates) == cfg.k_max:  # where the last one left
            self.pos_accepted = [r * cfg.prior_weight for r in self.costs.pos_rates]
            self.pos_tried = [cfg.prior_weight] * cfg.k_max
        # Per draft position i: whether a draft that reached position i - 1 went on to i when the length allowed it.
        # A drafter with a stopping rule (a confidence threshold, a lookup without a match) proposes fewer than k
        # tokens; a longer allowance then costs only the drafts that go on, and the best allowance is longer.
        # Prior: every draft goes on (what a drafter without a rule does), worth ``prior_weight`` steps.
        self.pos_reached = [0.0] * cfg.k_max
        self.pos_offered = [0.0] * cfg.k_max
        if self.costs.pos_continue is not None and len(self.costs.pos_continue) == cfg.k_max:
            self.pos_reached = [r * cfg.prior_weight for r in self.costs.pos_continue]
            self.pos_offered = [cfg.prior_weight] * cfg.k_max
        self.k = cfg.k
        self.probes = 0  # k = 1 probes made while at 0
        self._idle = 0
        self._wait = min(max(self.costs.probe_wait or cfg.probe_every, cfg.probe_every), cfg.probe_max)
        self._probing = False
        self._plain_first = cfg.adaptive and cfg.measure and self.costs.verify_s[0] is None
        if cfg.adaptive and cfg.measure and not self._plain_first:  # costs known: the best k at the prior rate
            self.k = self.best_k()

    @property
    def rate(self) -> float:
        return self.accepted / self.tried if self.tried > 0 else self.cfg.prior_rate

    def update(self, drafted: int, accepted: int, draft_s: float | None = None, verify_s: float | None = None,
               resume_s: float | None = None, allowed: int | None = None) -> None:
        """Record one verification: ``drafted`` tokens proposed, the first ``accepted`` kept, and (optionally) how
        long drafting and verifying took, in the units of ``clock``. A draft right after plain steps reports its
        time as ``resume_s`` instead of ``draft_s``: it includes the drafter's catch-up, a cost of resuming (and of
        probing), not of drafting on. ``allowed``: the draft length asked for (a drafter that proposed fewer stopped
        on its own: evidence of how often its drafts go on)."""
        self.costs.record(drafted, draft_s, verify_s, self.cfg.time_weight)
        if resume_s is not None and drafted > 0:
            self.costs.resume_s = _ewma(self.costs.resume_s, resume_s, self.cfg.time_weight)
        if allowed is not None and allowed > 0:
            for i in range(min(max(allowed, drafted), self.cfg.k_max)):
                self.pos_reached[i] *= self.cfg.decay
                self.pos_offered[i] *= self.cfg.decay
                if i <= drafted:  # position i + 1 was open to a draft that had reached position i
                    self.pos_offered[i] += 1.0
                    self.pos_reached[i] += 1.0 if i < drafted else 0.0
            if self.cfg.measure:
                self.costs.pos_continue = self.continue_rates()
        probing, self._probing = self._probing, False
        if drafted == 0:  # nothing was proposed: no evidence about the drafts
            return
        examined = min(accepted + 1, drafted)  # tokens after the first rejection were never judged
        self.accepted = self.cfg.decay * self.accepted + accepted
        self.tried = self.cfg.decay * self.tried + examined
        for i in range(len(self.pos_tried)):
            self.pos_accepted[i] *= self.cfg.decay
            self.pos_tried[i] *= self.cfg.decay
            if i < examined:  # position i + 1 was judged; accepted if it is within the accepted prefix
                self.pos_tried[i] += 1.0
                self.pos_accepted[i] += 1.0 if i < accepted else 0.0
        if self.cfg.measure:  # carried to the next sequence with the measured costs
            self.costs.rate = self.rate
            self.costs.pos_rates = self.position_rates()
        if self.cfg.adaptive:
            self.k = self.best_k()
            if self.k > 0:
                self._wait = self.cfg.probe_every
            elif probing and (accepted == 0 or not self._one_token_can_pay()):  # the next probe waits twice as
                self._wait = min(2 * self._wait, self.cfg.probe_max)  # long; an accepted one that could pay keeps it
            if self.cfg.measure:
                self.costs.probe_wait = self._wait

    def _one_token_can_pay(self) -> bool:
        """Would a 1-token draft pay if it were always accepted (2 tokens in one step's time)? Not when a 2-row block
        costs two plain steps: then even accepted probes only cost."""
        times = self.step_times()
        return 2.0 / times[1] > 1.0 / times[0]

    def next_k(self) -> int:
        """The draft length for the next step (a k = 1 probe now and then while at 0)."""
        if self._plain_first:  # measure a plain step first: every other cost is judged against it
            self._plain_first = False
            return 0
        if self.k > 0 or not self.cfg.adaptive:  # a fixed draft length is never probed away from
            self._idle = 0
            return self.k
        self._idle += 1
        if self._idle >= max(self._wait, self._budget_wait()):
            self._idle = 0
            self._probing = True
            self.probes += 1
            return 1
        return 0

    def steps_until_probe(self) -> int | None:
        """Plain steps before the controller drafts again while at k = 0 (a very large number for a fixed k = 0);
        None while it drafts."""
        if self.k > 0 or self._plain_first:
            return None
        if not self.cfg.adaptive:
            return 1 << 30
        return max(self._wait, self._budget_wait()) - self._idle

    def _budget_wait(self) -> int:
        """Plain steps between probes so that probing costs at most ``probe_budget`` of their time (0: unknown)."""
        plain, resume = self.costs.verify_s[0], self.costs.resume_s
        if plain is None or resume is None or not self.cfg.measure:
            return 0
        extra = resume + max(0.0, self._verify_times()[1] - plain)  # a probe: resume, then a 2-row verification
        return math.ceil(extra / (self.cfg.probe_budget * plain))

    def _verify_times(self) -> list[float]:
        v = self.cfg.verify_cost
        measured = [j for j, t in enumerate(self.costs.verify_s) if t is not None]
        verify = []
        for k in range(self.cfg.k_max + 1):
            t = self.costs.verify_s[k]
            if t is not None:
                verify.append(t)
            elif not measured:
                verify.append(1.0 + v * k)
            else:
                lo = [m for m in measured if m < k]
                hi = [m for m in measured if m > k]
                if lo and hi:  # between two measured sizes: linear
                    a, b = lo[-1], hi[0]
                    ta, tb = self.costs.verify_s[a], self.costs.verify_s[b]
                    verify.append(ta + (tb - ta) * (k - a) / (b - a))
                elif lo and len(lo) >= 2:  # above them: the measured per-row slope, never below the prior's
                    a, b = lo[-2], lo[-1]
                    ta, tb = self.costs.verify_s[a], self.costs.verify_s[b]
                    slope = max((tb - ta) / (b - a), tb * v / (1.0 + v * b))
                    verify.append(tb + slope * (k - b))
                else:  # the prior shape 1 + v k from the nearest one
                    j = lo[-1] if lo else hi[0]
                    verify.append(self.costs.verify_s[j] * (1.0 + v * k) / (1.0 + v * j))
        # Nor does a shorter block verify slower: a stale outlier (a stall, a first-use kernel pack) in the plain
        # step's time would otherwise lift every block to it, make drafting look free, and, with drafts running,
        # never be measured again.
        for k in range(len(verify) - 2, -1, -1):
            verify[k] = min(verify[k], verify[k + 1])
        for k in range(1, len(verify)):  # a longer block never verifies faster (timing noise aside)
            verify[k] = max(verify[k], verify[k - 1])
        return verify

    def step_times(self) -> list[float]:
        """Predicted time of one step (draft + verify) for k = 0..k_max: seconds once measured, else target steps."""
        verify = self._verify_times()
        per_token = self.costs.draft_tok_s
        if per_token is None or all(t is None for t in self.costs.verify_s):
            per_token = self.cost * verify[0]
        return [verify[k] + per_token * k for k in range(len(verify))]

    @property
    def draft_cost_estimate(self) -> float:
        """c: one drafted token's cost relative to a plain (k = 0) target step, as currently estimated."""
        verify, step = self._verify_times(), self.step_times()
        return (step[1] - verify[1]) / verify[0]

    @property
    def verify_cost_estimate(self) -> float:
        """v: the cost of one more verified position relative to a plain target step, as currently estimated."""
        known = [k for k, t in enumerate(self.costs.verify_s) if t is not None]
        if len(known) < 2:
            return self.cfg.verify_cost
        verify = self._verify_times()
        lo, hi = known[0], known[-1]
        return (verify[hi] - verify[lo]) / (hi - lo) / verify[0]

    def position_rates(self) -> list[float]:
        """The acceptance rate at each draft position 1..k_max (given the earlier ones were accepted), each shrunk
        to the pooled rate by ``prior_weight`` tokens of it."""
        pooled, w = self.rate, self.cfg.prior_weight
        return [(a + pooled * w) / (t + w) for a, t in zip(self.pos_accepted, self.pos_tried)]

    def continue_rates(self) -> list[float]:
        """The rate s_i at which a draft that reached position i - 1 goes on to position i (1..k_max) when allowed;
        1 until a drafter stops on its own (prior weight ``prior_weight``)."""
        w = self.cfg.prior_weight
        return [(r + w) / (o + w) for r, o in zip(self.pos_reached, self.pos_offered)]

    def outlook(self) -> tuple[list[float], list[float]]:
        """For each allowance k = 0..k_max: the expected tokens per step E(k) and drafted tokens D(k) (best_k)."""
        expected, drafted, reach, go = [1.0], [0.0], 1.0, 1.0
        for a, c in zip(self.position_rates(), self.continue_rates()):
            go *= c
            reach *= c * a
            drafted.append(drafted[-1] + go)
            expected.append(expected[-1] + reach)
        return expected, drafted

    def best_k(self) -> int:
        """The allowance k maximising tokens per second, E(k) / T(k). With per-position acceptance a_i and continue
        rates s_i: E(k) = 1 + s1 a1 + s1 a1 s2 a2 + ..., the drafted tokens D(k) = s1 + s1 s2 + ... (a draft goes on
        whether or not its tokens will be accepted), T(k) = V(1 + D(k)) + D(k) per drafted token, V interpolated
        between block sizes. Without a stopping rule (s = 1) this is E = 1 + a1 + a1 a2 + ... over k drafted tokens."""
        verify = self._verify_times()
        per_token = self.costs.draft_tok_s
        if per_token is None or all(t is None for t in self.costs.verify_s):
            per_token = self.cost * verify[0]
        expected, drafted = self.outlook()

        def block(d: float) -> float:  # verification of 1 + d rows, d fractional
            lo = min(int(d), len(verify) - 1)
            hi = min(lo + 1, len(verify) - 1)
            return verify[lo] + (verify[hi] - verify[lo]) * (d - lo)

        scores = [expected[k] / (block(drafted[k]) + per_token * drafted[k]) for k in range(len(verify))]
        return max(range(len(scores)), key=scores.__getitem__)

    def best_k_at(self, rate: float, draft_tok_s: float | None = None) -> int:
        """The k maximising tokens per second at acceptance ``rate``, with the measured verification times and, if
        given, ``draft_tok_s`` seconds per drafted token instead of the drafter's measured mean (a chain asks this
        for each of its members: a free lookup draft accepted 95 % of the time deserves a longer block than a head
        draft accepted 50 %)."""
        times = self.step_times()
        if draft_tok_s is not None and self.costs.draft_tok_s is not None:
            verify = self._verify_times()
            times = [verify[k] + draft_tok_s * k for k in range(len(verify))]
        scores = [expected_tokens(rate, k) / times[k] for k in range(len(times))]
        return max(range(len(scores)), key=scores.__getitem__)
