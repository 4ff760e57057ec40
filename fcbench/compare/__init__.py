"""``fcbench compare BASE NEW``: which measurements changed, with statistics CI can trust.

``run_compare(cfg, ctx, hooks) -> CompareResult``: loads both sides (:mod:`.sources`), matches rows by
identity (:mod:`.match`), and gives each matched row a verdict (:mod:`.stats`): latency rows same /
slower / faster / unknown from the raw samples, quality rows same / worse / better in points; rows
only in NEW, only in BASE, or measured on another machine are listed apart. ``failures()`` lists the
regressions (slower, worse, a cell that now fails, a drift found by ``--history``): the CLI exits 1 on
any, after showing the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fcbench.compare.match import LATENCY, Group, describe_key, key_label, match, why_none_comparable
from fcbench.errors import FcbenchError

REGRESSIONS = ("slower", "worse", "failed", "drift")
LOWER_IS_BETTER = ("eer",)


@dataclass
class Compared:
    """One matched measurement: its identity, the verdict and the figures behind it."""

    name: str  # key_label: what the table shows
    identity: dict[str, str]
    metric: str
    verdict: str  # same slower faster unknown (latency); same worse better (quality); failed, fixed
    threshold: float  # latency: per cent; quality: points
    stats: dict[str, Any] = field(default_factory=dict)  # LatencyStats / QualityStats as a dict
    history: dict[str, Any] | None = None  # --history: values per run and the change point found
    note: str = ""

    @property
    def regressed(self) -> bool:
        return self.verdict in REGRESSIONS or bool(self.history and self.history.get("regressed"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.identity, "verdict": self.verdict, "threshold": self.threshold,
                "stats": self.stats, "history": self.history, "note": self.note}


@dataclass
class Unmatched:
    name: str
    identity: dict[str, str]
    side: str  # new | vanished | not-comparable
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.identity, "side": self.side, "why": self.why}


@dataclass
class CompareResult:
    base: str
    new: str
    rows: list[Compared] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    skipped: int = 0
    limits: dict[str, float] = field(default_factory=dict)
    measured: list[Any] = field(default_factory=list)  # two artifacts compared A/B: the bench rows of both

    def to_rows(self) -> list:
        return list(self.measured)  # results and runs are only read; two artifacts are measured, and stored

    def failures(self) -> list[str]:
        out = []
        for r in self.rows:
            if r.verdict in REGRESSIONS:
                out.append(f"{r.name}: {r.verdict}" + (f" ({r.note})" if r.note else ""))
            if r.history and r.history.get("regressed"):
                out.append(f"{r.name}: drift over the last {len(r.history['values'])} runs ({r.history['note']})")
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.verdict] = out.get(r.verdict, 0) + 1
        for u in self.unmatched:
            out[u.side] = out.get(u.side, 0) + 1
        return out

    @property
    def verdict(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items())
        bad = self.failures()
        return f"{len(bad)} regression(s) of {len(self.rows)} compared: {counts}" if bad else \
            f"no regression in {len(self.rows)} compared: {counts}"

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "new": self.new, "limits": self.limits, "verdict": self.verdict,
                "regressions": self.failures(), "rows": [r.to_dict() for r in self.rows],
                "unmatched": [u.to_dict() for u in self.unmatched], "skipped": self.skipped}


def limit_for(metric: str, limits: dict[str, float]) -> float:
    from fcbench.options import metric_family

    if metric in limits:
        return limits[metric]
    return limits.get(metric_family(metric), limits.get("accuracy", 0.5))


def _failed(rows: list[dict[str, Any]]) -> bool:
    return all((r.get("extra") or {}).get("status") == "failed" for r in rows)


def _runs(rows: list[dict[str, Any]]) -> list[list[float]]:
    """One list of samples per row (run); a row without samples (a device tool's statistics): its p50."""
    out = []
    for r in rows:
        if (r.get("extra") or {}).get("status") == "failed":
            continue
        s = r.get("samples_ms") or []
        if s:
            out.append([float(x) for x in s])
        elif r.get("p50_ms"):
            out.append([float(r["p50_ms"])])
    return out


def compare_pair(base: Group, new: Group, limits: dict[str, float], seed: int = 0) -> Compared:
    from fcbench.compare.stats import compare_latency, compare_quality

    identity = describe_key(new.key)
    metric = identity["metric"]
    name = key_label(new.key)
    limit = limit_for(metric, limits)
    c = Compared(name, identity, metric, "unknown", limit)
    b_failed, n_failed = _failed(base.rows), _failed(new.rows)
    if n_failed and not b_failed:
        reason = (new.rows[-1].get("extra") or {}).get("reason", "")
        c.verdict, c.note = "failed", f"NEW failed: {reason}".rstrip(": ")
        return c
    if b_failed:
        c.verdict, c.note = ("fixed", "BASE failed, NEW runs") if not n_failed else ("failed", "both failed")
        return c
    if metric == LATENCY:
        b_runs, n_runs = _runs(base.rows), _runs(new.rows)
        if not b_runs or not n_runs:
            c.note = "no timing on a side"
            return c
        s = compare_latency(b_runs, n_runs, limit / 100.0, seed=seed)
        c.verdict, c.stats = s.verdict, s.to_dict()
        if s.verdict == "unknown" and s.runs_needed is not None:
            from fcbench.compare.stats import MANY

            c.note = ("the change sits at the threshold: many more runs" if s.runs_needed >= MANY else
                      f"about {s.runs_needed} more run(s) per side would decide")
        return c
    b_vals = [float(r["value"]) for r in base.rows if r.get("value") is not None]
    n_vals = [float(r["value"]) for r in new.rows if r.get("value") is not None]
    if not b_vals or not n_vals:
        c.note = "no value on a side"
        return c
    s = compare_quality(b_vals, n_vals, limit, higher_is_better=metric not in LOWER_IS_BETTER)
    c.verdict, c.stats = s.verdict, s.to_dict()
    return c


def run_compare(cfg: Any, ctx: Any = None, hooks: Any = None) -> CompareResult:
    """Compare NEW against BASE (``CompareConfig``); see the module docstring."""
    from fcbench.compare.sources import load
    from fcbench.hooks import or_default

    hooks = or_default(hooks)
    cfg.validate()
    from fcbench.compare.ab import is_artifact_pair, run_ab

    if is_artifact_pair(cfg.base, cfg.new):
        return run_ab(cfg, ctx, hooks)
    if cfg.backend or cfg.threads:
        raise FcbenchError("compare: --backend and --threads apply when BASE and NEW are two model files (measured "
                           "now, in turn); these are results, already measured")
    limits = cfg.limits()
    base = load(cfg.base, cfg.store, "BASE")
    new = load(cfg.new, cfg.store, "NEW")
    for side in (base, new):
        if not side.rows:
            raise FcbenchError(f"compare: {side.label} holds no rows; bench or eval into it first")
    m = match(base.rows, new.rows)
    if not m.matched:
        raise FcbenchError(f"compare: no row of NEW ({new.label}) is comparable with BASE ({base.label}): "
                           + why_none_comparable(base.rows, new.rows, m))
    result = CompareResult(base.label, new.label, skipped=m.skipped, limits=limits)
    for b, n in m.matched:
        result.rows.append(compare_pair(b, n, limits, seed=cfg.seed))
    for g in m.new:
        result.unmatched.append(Unmatched(key_label(g.key), describe_key(g.key), "new", "only in NEW"))
    for g in m.vanished:
        result.unmatched.append(Unmatched(key_label(g.key), describe_key(g.key), "vanished", "only in BASE"))
    for b, n in m.not_comparable:
        g = n or b
        assert g is not None
        why = (f"BASE on {b.machine()}, NEW on {n.machine()}" if b and n else
               f"only in {'NEW' if n else 'BASE'} on {g.machine()}; the other side ran on another machine")
        result.unmatched.append(Unmatched(key_label(g.key), describe_key(g.key), "not-comparable",
                                          "another device: " + why))
    if cfg.history:
        from fcbench.compare.history import add_history

        add_history(result, m.matched, new, cfg, limits, hooks)
    return result
