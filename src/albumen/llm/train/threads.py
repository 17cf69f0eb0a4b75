"""Pick the torch thread count that is fastest right now, by timing a small matmul with each candidate.

On a shared machine with more runnable processes than cores, torch's default (one thread per core) can be several
times slower than one thread, because its threads wait on each other at every barrier while the OS schedules other
work. Long CPU jobs (teacher generation, training) call ``pick_threads()`` once at start. This module knows nothing
about models.
"""

from __future__ import annotations

import os
import time

import torch

__all__ = ["pick_threads"]


def _time_matmul(threads: int, reps: int) -> float:
    torch.set_num_threads(threads)
    x, w = torch.randn(256, 576), torch.randn(1536, 576)
    x @ w.T  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        x @ w.T
        best = min(best, time.perf_counter() - t0)
    return best


def pick_threads(candidates: tuple[int, ...] | None = None, reps: int = 5) -> int:
    """Set and return the fastest thread count among ``candidates`` (default: 1 and the number of cores).

    ``ALBUMEN_THREADS`` in the environment overrides the probe.
    """
    forced = os.environ.get("ALBUMEN_THREADS")
    if forced:
        torch.set_num_threads(int(forced))
        return int(forced)
    cores = os.cpu_count() or 1
    cands = candidates or tuple(sorted({1, cores}))
    times = {n: min(_time_matmul(n, reps) for _ in range(2)) for n in cands}
    best = min(times, key=lambda n: times[n])
    torch.set_num_threads(best)
    return best
