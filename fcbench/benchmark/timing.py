"""Single-stream timing (MLPerf LoadGen vocabulary): warm up, then time each query
separately until both the minimum query count and the minimum duration are met.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Stats:
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    runs: int

    @classmethod
    def of(cls, samples_ms: list[float]) -> Stats:
        if not samples_ms:
            raise ValueError("no samples")
        xs = sorted(samples_ms)
        n = len(xs)
        mean = sum(xs) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
        return cls(mean, std, xs[0], percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), n)


def percentile(sorted_xs: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class Timing:
    first_run_ms: float
    warmup: int
    samples_ms: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # interleaved timing: the round each sample was timed in

    @property
    def stats(self) -> Stats:
        return Stats.of(self.samples_ms)


def time_queries(
    query: Callable[[], Any], *, warmup: int = 10, min_runs: int = 50, min_seconds: float = 1.0,
    max_seconds: float | None = None,
) -> Timing:
    """Time ``query`` single-stream. The first call is timed apart (it often pays lazy init).

    Stops when ``min_runs`` queries AND ``min_seconds`` have been reached, or at ``max_seconds``
    (when set) once ``min_runs`` is met.
    """
    clock = time.perf_counter_ns
    t = clock()
    query()
    first = (clock() - t) / 1e6
    for _ in range(warmup):
        query()
    samples: list[float] = []
    start = clock()
    while True:
        t = clock()
        query()
        end = clock()
        samples.append((end - t) / 1e6)
        elapsed = (end - start) / 1e9
        if len(samples) >= min_runs and (elapsed >= min_seconds or (max_seconds and elapsed >= max_seconds)):
            break
    return Timing(first_run_ms=first, warmup=warmup, samples_ms=samples)


#: Interleaved timing: seconds each query is timed for before the next one takes over.
BLOCK_SECONDS = 0.1
#: Interleaved timing: fewest rounds (every query timed once per round), so that per-round ratios can be tested.
MIN_ROUNDS = 12


def time_interleaved(
    queries: list[Callable[[], Any]], *, warmup: int = 10, min_runs: int = 50, min_seconds: float = 1.0,
    block_seconds: float = BLOCK_SECONDS, min_rounds: int = MIN_ROUNDS, max_seconds: float | None = None,
) -> list[Timing]:
    """Time several queries *in turn* in one process: round after round, each query is timed for
    ``block_seconds`` (at least one sample), the order reversed every round (A B, B A, A B ...) so neither
    always follows the other; each block starts with two untimed calls (the other query's block evicted
    its caches). What slows the machine for a while (a neighbour, the clock, another tenant) then slows
    every query alike, and the per-round ratios of two queries cancel it: this is A/B testing.

    Stops when every query has ``min_runs`` samples and ``min_seconds`` of timed calls, after at least
    ``min_rounds`` rounds (or at ``max_seconds`` of wall time once those counts are met). Each Timing's
    ``rounds`` says which round each sample came from."""
    if not queries:
        raise ValueError("no queries")
    clock = time.perf_counter_ns
    out = []
    for q in queries:
        t = clock()
        q()
        out.append(Timing(first_run_ms=(clock() - t) / 1e6, warmup=warmup))
    for q in queries:
        for _ in range(warmup):
            q()
    timed_ns = [0] * len(queries)
    start = clock()
    order = list(range(len(queries)))
    r = 0
    while True:
        for k in order:
            q, tm = queries[k], out[k]
            q()
            q()
            block_start = clock()
            while True:
                t = clock()
                q()
                end = clock()
                tm.samples_ms.append((end - t) / 1e6)
                tm.rounds.append(r)
                timed_ns[k] += end - t
                if end - block_start >= block_seconds * 1e9:
                    break
        r += 1
        order.reverse()
        counted = r >= min_rounds and all(len(tm.samples_ms) >= min_runs for tm in out)
        if counted and (min(timed_ns) >= min_seconds * 1e9 or
                        (max_seconds and clock() - start >= max_seconds * 1e9)):
            break
    return out


def _status_kb(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak resident memory of this process over a block (Linux: VmHWM reset via clear_refs)."""

    def __enter__(self) -> PeakMemory:
        self.reset_ok = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset_ok = True
        except OSError:
            pass
        self.rss_before_mb = (_status_kb("VmRSS") or 0.0) / 1024
        self.peak_mb: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kb("VmHWM")
        self.peak_mb = hwm / 1024 if hwm is not None else None

    @property
    def delta_mb(self) -> float | None:
        return None if self.peak_mb is None else max(0.0, self.peak_mb - self.rss_before_mb)
