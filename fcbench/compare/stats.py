"""The statistics of ``fcbench compare``: pure numpy/scipy, no store, no printing.

Latency. A run's timed samples are not independent: a noisy neighbour, the CPU's clock or the
cache state shift a whole run, so one run's median moves as a block. A test that treats a run's
hundreds of samples as independent draws (a t-test, or a rank test on them alone) calls a 3 %
run-to-run wobble "highly significant". So the uncertainty of the ratio of medians here has two parts:

* within a run: a seeded *moving-block* bootstrap of the median (blocks of consecutive samples, at least
  sqrt(n) and a twentieth of the run, keep the autocorrelation inside each block);
* between runs: the spread of one run's median around the next run's, ``run_noise`` (a log-scale
  standard deviation). It is estimated from the reruns where a side has several (then the interval
  uses Student's t with the runs' degrees of freedom), and never taken below :data:`RUN_NOISE` (a
  quiet machine's; docs/ci.md); it shrinks as 1/sqrt(runs).

With ``se`` the two parts' variances added, a change is *significant* when the 99 % interval
``log r +- z99 * se`` excludes 0 and a Mann-Whitney rank test agrees (p < 0.01: on the runs' medians
when there are enough runs for such a p, else on the samples). The verdict against a threshold ``T``
(a fraction, 0.05 = 5 %):

* **slower** / **faster**: significant and the ratio beyond ``1 + T`` (or below ``1 / (1 + T)``);
* **same**: the 90 % interval inside ``(1 / (1 + T), 1 + T)`` (an equivalence test: two one-sided
  tests at 5 %): whatever changed is below the threshold;
* **unknown**: neither; ``runs_needed`` estimates how many more runs per side would narrow the
  interval (its width goes as 1/sqrt(runs)) enough to decide.

Why these defaults: a false alarm needs a change past ``T`` *and* 2.6 standard errors, and the standard
error never counts less run-to-run noise than :data:`RUN_NOISE`; so while a runner's real run-to-run
noise stays at or under it, false alarms stay under 1 %, and a 10 % slowdown (2 x T) is past both bars
about 97 % of the time with one run a side. On a noisier runner, rerun each side: the measured spread
replaces the floor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

#: Default latency threshold: a change smaller than this is "same" (fraction of the base median).
LATENCY_THRESHOLD = 0.05
#: Run-to-run noise floor: log-scale standard deviation of one run's median around another's.
RUN_NOISE = 0.015
#: Confidence of the interval a change must leave 1 out of (and 1 - the rank test's level).
CONFIDENCE = 0.99
#: Confidence of the interval that must sit inside the threshold for "same".
EQUIVALENCE = 0.90
BOOTSTRAP = 2000
MANY = 1000  # runs_needed at or beyond this: "many" (the change sits on the boundary)


@dataclass
class LatencyStats:
    verdict: str  # same | slower | faster | unknown
    base_ms: float  # median of the base side's samples (pooled over its runs)
    new_ms: float
    ratio: float  # new / base
    ci_low: float
    ci_high: float
    p_value: float | None  # Mann-Whitney, two-sided; None without samples on a side
    base_runs: int
    new_runs: int
    base_samples: int
    new_samples: int
    run_noise: float  # the between-run standard deviation used (log scale)
    runs_needed: int | None = None  # unknown: more runs per side that would decide (MANY: many)
    notes: list[str] = field(default_factory=list)
    rounds: int | None = None  # A/B (timed in turn): the rounds compared; runs_needed then counts rounds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_runs(runs: list[Any]) -> list[np.ndarray]:
    out = []
    for r in runs:
        a = np.asarray(r, dtype=float).ravel()
        a = a[np.isfinite(a) & (a > 0)]
        if a.size:
            out.append(a)
    return out


def block_size(n: int) -> int:
    """Samples per bootstrap block: sqrt(n), and at least a twentieth of the run (a slow wobble inside a
    long run stays inside a block)."""
    return max(1, int(round(max(math.sqrt(n), n / 20))))


def block_medians(x: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """``reps`` bootstrap medians of ``x`` by the moving-block bootstrap (see :func:`block_size`)."""
    n = x.size
    if n == 1:
        return np.full(reps, x[0])
    b = block_size(n)
    k = -(-n // b)
    starts = rng.integers(0, n - b + 1, size=(reps, k))
    idx = (starts[:, :, None] + np.arange(b)).reshape(reps, -1)[:, :n]
    return np.median(x[idx], axis=1)


def _pooled_boot(runs: list[np.ndarray], rng: np.random.Generator, reps: int) -> np.ndarray:
    """Bootstrap medians of the pooled samples, each run resampled in blocks (the runs themselves are kept:
    the between-run part is ``run_noise``'s)."""
    if len(runs) == 1:
        return block_medians(runs[0], rng, reps)
    parts = []
    for r in runs:
        b = block_size(r.size)
        starts = rng.integers(0, r.size - b + 1, size=(reps, -(-r.size // b)))
        parts.append(r[(starts[:, :, None] + np.arange(b)).reshape(reps, -1)[:, :r.size]])
    return np.median(np.concatenate(parts, axis=1), axis=1)


def run_spread(*sides: list[np.ndarray]) -> float | None:
    """Pooled within-side standard deviation of the runs' log medians, or None with no side of 2+ runs."""
    ss, df = 0.0, 0
    for runs in sides:
        if len(runs) >= 2:
            logs = np.log([np.median(r) for r in runs])
            ss += float(((logs - logs.mean()) ** 2).sum())
            df += len(runs) - 1
    return math.sqrt(ss / df) if df else None


def mann_whitney(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size == 0 or b.size == 0:
        return None
    from scipy.stats import mannwhitneyu

    if np.array_equal(np.sort(a), np.sort(b)):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def runs_needed(log_ratio: float, se: float, z: float, boundary: float, runs: int) -> int:
    """More runs per side after which the interval ``log_ratio +- z * se`` (its width ~ 1/sqrt(runs)) no
    longer reaches ``boundary``: MANY when the estimate sits on it."""
    d = abs(log_ratio - boundary)
    if d <= 1e-12:
        return MANY
    need = runs * (z * se / d) ** 2
    return int(min(MANY, max(1, math.ceil(need - runs))))


def _verdict(significant: bool, log_r: float, up: float, inside: bool) -> str:
    """slower / faster when ``significant`` and the log ratio is past ``up`` (log of 1 + threshold) either way,
    same when the equivalence interval is ``inside`` the threshold, else unknown."""
    if significant and log_r > up:
        return "slower"
    if significant and log_r < -up:
        return "faster"
    return "same" if inside else "unknown"


def compare_latency(base: list[Any], new: list[Any], threshold: float = LATENCY_THRESHOLD, *,
                    run_noise: float = RUN_NOISE, confidence: float = CONFIDENCE, equivalence: float = EQUIVALENCE,
                    seed: int = 0, reps: int = BOOTSTRAP) -> LatencyStats:
    """``base`` and ``new``: one sequence of samples (ms) per run (a run without samples: its median alone,
    as a one-element list). Pools each side's runs; see the module docstring for the verdict."""
    b_runs, n_runs = _as_runs(base), _as_runs(new)
    if not b_runs or not n_runs:
        raise ValueError("each side needs at least one run with a positive time")
    b_all, n_all = np.concatenate(b_runs), np.concatenate(n_runs)
    b_med, n_med = float(np.median(b_all)), float(np.median(n_all))
    log_r = math.log(n_med / b_med)
    rng = np.random.default_rng(seed)
    boot = np.log(_pooled_boot(n_runs, rng, reps)) - np.log(_pooled_boot(b_runs, rng, reps))
    se_within = float(np.std(boot))
    spread = run_spread(b_runs, n_runs)
    noise = max(run_noise, spread or 0.0)
    se = math.sqrt(se_within ** 2 + noise ** 2 * (1 / len(b_runs) + 1 / len(n_runs)))
    df = len(b_runs) + len(n_runs) - 2
    if spread is not None and spread > run_noise:  # the reruns' spread, estimated: Student's t, not z
        from scipy.stats import t as student

        z, z_eq = float(student.ppf(0.5 + confidence / 2, df)), float(student.ppf(0.5 + equivalence / 2, df))
    else:
        z, z_eq = NormalDist().inv_cdf(0.5 + confidence / 2), NormalDist().inv_cdf(0.5 + equivalence / 2)
    lo, hi = log_r - z * se, log_r + z * se
    alpha = 1 - confidence
    notes = []
    if 2 / math.comb(len(b_runs) + len(n_runs), len(b_runs)) < alpha:  # enough runs for a p that small
        p = mann_whitney(np.array([np.median(r) for r in n_runs]), np.array([np.median(r) for r in b_runs]))
    else:
        p = mann_whitney(n_all, b_all)
    if b_all.size == len(b_runs) or n_all.size == len(n_runs):
        notes.append("no raw samples on a side: its median alone, with the run-to-run noise")
    significant = (lo > 0 or hi < 0) and (p is None or p < alpha)
    up = math.log1p(threshold)
    needed = None
    verdict = _verdict(significant, log_r, up, abs(log_r) + z_eq * se < up)
    if verdict == "unknown":
        runs = min(len(b_runs), len(n_runs))
        if abs(log_r) > up:  # past the threshold, not yet significant
            needed = runs_needed(log_r, se, z, 0.0, runs)
        else:  # inside the threshold, not yet shown to be
            needed = runs_needed(abs(log_r), se, z_eq, up, runs)
    return LatencyStats(verdict, b_med, n_med, n_med / b_med, math.exp(lo), math.exp(hi), p, len(b_runs),
                        len(n_runs), int(b_all.size), int(n_all.size), noise, needed, notes)


# --- interleaved (A/B) timing: per-round ratios ----------------------------------------------------

#: A/B noise floor: log-scale standard deviation of one A/B run's ratio around the next run's (same files), *beyond*
#: what the rounds' spread shows -- what one process's sessions happen to get (memory placement, which core).
#: benchmarks/compare_false_alarms.py --ab prints it (the between-run part of the runs' variance). With ONNX
#: Runtime's sessions spinning it was large; without, on a quiet 2-core AMD EPYC VM, the rounds' spread explained
#: all of the runs' spread (6 cells x 21 runs; docs/performance.md). Several runs show their own spread, and a
#: noisier machine's widens the interval; this floor is a quiet machine's run-to-run noise (:data:`RUN_NOISE`).
AB_NOISE = 0.015
#: One run alone cannot show what differs between runs: its floor is the whole spread of one run's estimate seen
#: while ONNX Runtime's sessions still spun (sd 0.033, 60 runs), so a single run still needs a clear change.
AB_NOISE_ONE_RUN = 0.033


def round_ratios(base: Any, base_rounds: Any, new: Any, new_rounds: Any) -> np.ndarray:
    """Per round timed on both sides: log(median of NEW's samples / median of BASE's)."""
    b, br = np.asarray(base, float), np.asarray(base_rounds, int)
    n, nr = np.asarray(new, float), np.asarray(new_rounds, int)
    if b.size != br.size or n.size != nr.size:
        raise ValueError("every sample needs its round")
    out = []
    for r in sorted(set(br.tolist()) & set(nr.tolist())):
        mb, mn = np.median(b[br == r]), np.median(n[nr == r])
        if mb > 0 and mn > 0:
            out.append(math.log(mn / mb))
    return np.asarray(out)


def ab_run_estimate(base: Any, base_rounds: Any, new: Any, new_rounds: Any,
                    confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """One A/B run's change (log), the standard errors below and above it, and its rounds: the Hodges-Lehmann
    estimate of the rounds' ratios (:func:`round_ratios`) with its interval's half-widths over Student's t
    quantile for n - 1 rounds (the interval of a dozen rounds is as wide as t makes it; over z the error was
    1.2 x too large at 12 rounds)."""
    from scipy.stats import t as student

    d = round_ratios(base, base_rounds, new, new_rounds)
    if d.size < 6:
        raise ValueError(f"an A/B comparison needs at least 6 rounds timed on both sides, got {d.size}")
    est, lo, hi = hodges_lehmann(d, confidence)
    q = float(student.ppf(0.5 + confidence / 2, d.size - 1))
    return est, (est - lo) / q, (hi - est) / q, int(d.size)


def hodges_lehmann(d: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of the centre of paired differences ``d`` (the median of the Walsh
    averages (d_i + d_j) / 2, i <= j) and its distribution-free interval from the Wilcoxon signed-rank
    statistic's normal approximation: robust to the odd round a burst of contention slowed ten-fold."""
    n = d.size
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    m = walsh.size  # n (n + 1) / 2
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    c = int(math.floor(m / 2 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    c = min(max(c, 0), m - 1)
    return float(np.median(walsh)), float(walsh[c]), float(walsh[m - 1 - c])


def compare_interleaved(base: Any, base_rounds: Any, new: Any, new_rounds: Any,
                        threshold: float = LATENCY_THRESHOLD, *, ab_noise: float | None = None,
                        confidence: float = CONFIDENCE, equivalence: float = EQUIVALENCE) -> LatencyStats:
    """One A/B run: :func:`compare_ab` of that run alone."""
    return compare_ab([(base, base_rounds, new, new_rounds)], threshold, ab_noise=ab_noise,
                      confidence=confidence, equivalence=equivalence)


def compare_ab(runs: list[tuple[Any, Any, Any, Any]], threshold: float = LATENCY_THRESHOLD, *,
               ab_noise: float | None = None, confidence: float = CONFIDENCE,
               equivalence: float = EQUIVALENCE) -> LatencyStats:
    """BASE and NEW timed in turn (``fcbench compare A B`` of two artifacts), in ``runs`` A/B runs, each
    ``(base_samples, base_rounds, new_samples, new_rounds)`` from its own bench worker.

    Within a run, round ``k`` timed both sides within a fraction of a second, so what slowed the machine then
    slowed both, and ``d_k = log(NEW_k / BASE_k)`` (the rounds' medians) cancels it: the run's change is the
    Hodges-Lehmann estimate of the ``d_k``, with its Wilcoxon signed-rank interval (:func:`hodges_lehmann`).
    Between runs, what one process's sessions happen to get (memory placement, which core) still moves that
    estimate: ``tau^2``, the larger of a floor (:data:`AB_NOISE` squared) and what the K runs show (their
    estimates' variance less their mean ``se_run^2``), added to each run's variance; one run alone shows no such
    spread and takes the larger floor :data:`AB_NOISE_ONE_RUN`. Each run's estimate and ``se_run`` are
    :func:`ab_run_estimate`'s. The change over all runs is the mean of the
    runs' estimates, its standard error ``sqrt(sum(se_run^2) / K^2 + tau^2 / K)`` -- so more runs (``--repeats``)
    narrow what one run cannot. The p value is that normal test's. Verdicts as :func:`compare_latency`'s;
    ``runs_needed`` counts more *runs* (each a fresh worker) here."""
    if not runs:
        raise ValueError("an A/B comparison needs at least one run")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    ests, se_lo, se_hi, rounds = [], [], [], 0
    b_all, n_all = [], []
    for base, base_rounds, new, new_rounds in runs:
        est, below, above, n_rounds = ab_run_estimate(base, base_rounds, new, new_rounds, confidence)
        ests.append(est)
        se_lo.append(below)
        se_hi.append(above)
        rounds += n_rounds
        b_all.append(np.asarray(base, float))
        n_all.append(np.asarray(new, float))
    k = len(runs)
    log_r = float(np.mean(ests))
    # between runs: the floor, or what the runs themselves show beyond their rounds' spread when that is more
    # (a moment estimate: the runs' variance less their mean within-run variance) -- a noisier runner than the
    # floor's widens the interval instead of crying wolf
    within = float(np.mean([((a + b) / 2) ** 2 for a, b in zip(se_lo, se_hi, strict=True)]))
    if ab_noise is None:
        ab_noise = AB_NOISE if k > 1 else AB_NOISE_ONE_RUN
    between = max(ab_noise ** 2, float(np.var(ests, ddof=1)) - within if k > 1 else 0.0)

    def se(side: list[float]) -> float:
        return math.sqrt(sum(s * s for s in side) / k ** 2 + between / k)

    lo_se, hi_se = max(se(se_lo), 1e-12), max(se(se_hi), 1e-12)
    lo, hi = log_r - z * lo_se, log_r + z * hi_se
    z_eq = NormalDist().inv_cdf(equivalence)  # the 90 % two one-sided tests: a (2 x 0.9 - 1) interval
    eq_lo, eq_hi = log_r - z_eq * lo_se, log_r + z_eq * hi_se
    sd = lo_se if log_r > 0 else hi_se  # the side towards 0
    p = 2 * (1 - NormalDist().cdf(abs(log_r) / sd))
    significant = lo > 0 or hi < 0
    up = math.log1p(threshold)
    needed = None
    verdict = _verdict(significant, log_r, up, -up < eq_lo and eq_hi < up)
    if verdict == "unknown":
        if abs(log_r) > up:
            needed = runs_needed(log_r, sd, z, 0.0, k)
        else:
            needed = runs_needed(abs(log_r), max(lo_se, hi_se), z_eq, up, k)
    notes = [f"A/B: {rounds} rounds timed in turn in {k} run{'s' if k > 1 else ''}"]
    b, n = np.concatenate(b_all), np.concatenate(n_all)
    return LatencyStats(verdict, float(np.median(b)), float(np.median(n)), math.exp(log_r), math.exp(lo),
                        math.exp(hi), p, k, k, int(b.size), int(n.size), ab_noise, needed, notes, rounds=rounds)


# --- quality: absolute differences in points ------------------------------------------------------

@dataclass
class QualityStats:
    verdict: str  # same | worse | better
    base: float
    new: float
    diff_points: float  # 100 * (new - base)
    limit_points: float
    base_runs: int
    new_runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_quality(base: list[float], new: list[float], limit_points: float, higher_is_better: bool = True
                    ) -> QualityStats:
    """Mean of each side's runs; ``worse`` when it moved the wrong way by more than ``limit_points``
    (percentage points: 100 x the metric's difference)."""
    b, n = float(np.mean(base)), float(np.mean(new))
    diff = 100.0 * (n - b)
    gain = diff if higher_is_better else -diff
    verdict = "worse" if gain < -limit_points else "better" if gain > limit_points else "same"
    return QualityStats(verdict, b, n, diff, limit_points, len(base), len(new))


# --- history: a change point in a series of runs ----------------------------------------------------

@dataclass
class ChangePoint:
    at: int  # index of the first run of the second segment
    before: float  # median of the first segment's values
    after: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def change_point(values: list[float], min_change: float, relative: bool = True,
                 alpha: float = 0.05, min_segment: int = 3) -> ChangePoint | None:
    """The split of ``values`` (one per run, oldest first) into two segments whose medians differ most,
    when that difference exceeds ``min_change`` (a fraction of the first segment's median when
    ``relative``, else absolute) and a Mann-Whitney test of the two segments' runs gives p < ``alpha``.
    One run's figure per point, so run-to-run noise is the noise the test sees; a slow drift of small
    steps shows as two segments that differ. None when no split qualifies (or fewer than 2 x
    ``min_segment`` runs)."""
    from scipy.stats import mannwhitneyu

    v = np.asarray(values, dtype=float)
    best = None
    for k in range(min_segment, v.size - min_segment + 1):
        a, b = v[:k], v[k:]
        ma, mb = float(np.median(a)), float(np.median(b))
        change = (math.log(mb / ma) if ma > 0 and mb > 0 else 0.0) if relative else mb - ma
        limit = math.log1p(min_change) if relative else min_change
        if abs(change) <= limit:
            continue
        p = float(mannwhitneyu(b, a, alternative="two-sided").pvalue)
        if p < alpha and (best is None or abs(change) > best[0]):
            best = (abs(change), ChangePoint(k, ma, mb, p))
    return best[1] if best else None
