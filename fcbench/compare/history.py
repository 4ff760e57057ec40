"""``compare --history N``: each matched NEW row over the last N runs of the same row (same identity, same
machine) in the store, with a change-point check, so a slow drift of steps each below the threshold
(which no pairwise comparison flags) is reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fcbench.compare.match import LATENCY, Group, key_of
from fcbench.compare.stats import change_point

MIN_RUNS = 6  # two segments of three runs: the fewest a rank test can tell apart at p < 0.05


def _run_value(rows: list[dict[str, Any]], metric: str) -> float | None:
    if metric == LATENCY:
        samples = [float(x) for r in rows for x in (r.get("samples_ms") or [])]
        if samples:
            return float(np.median(samples))
        p50 = [float(r["p50_ms"]) for r in rows if r.get("p50_ms")]
        return float(np.median(p50)) if p50 else None
    vals = [float(r["value"]) for r in rows if r.get("value") is not None]
    return float(np.mean(vals)) if vals else None


def series(store_rows: list[dict[str, Any]], group: Group, metric: str) -> list[tuple[str, float]]:
    """(run id, the run's figure) for each run of the store holding ``group``'s row, oldest first."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in store_rows:
        if (r.get("extra") or {}).get("status") == "failed":
            continue
        if str(r.get("device_fingerprint") or "") == group.fingerprint and key_of(r) == group.key:
            runs.setdefault(str(r.get("run_id")), []).append(r)
    out = []
    for run, rows in runs.items():
        v = _run_value(rows, metric)
        if v is not None:
            out.append((run, v))
    return out


def add_history(result: Any, matched: list[tuple[Group, Group]], new: Any, cfg: Any, limits: dict[str, float],
                hooks: Any) -> None:
    from fcbench.compare import LOWER_IS_BETTER
    from fcbench.compare.sources import default_store, open_store

    ref = new.store or default_store(cfg.store)
    if "://" not in ref and not Path(ref).is_file():
        hooks.log(f"--history: no store {ref} to read past runs from; pass --store")
        return
    with open_store(ref, "--history") as s:
        rows = s.query()
    for (_, n), c in zip(matched, result.rows, strict=True):
        points = series(rows, n, c.metric)
        new_runs = {str(r.get("run_id")) for r in n.rows}
        if not new_runs & {run for run, _ in points}:  # NEW is a file: its figure is the newest point
            v = _run_value(n.rows, c.metric)
            if v is not None:
                points.append((sorted(new_runs)[-1] if new_runs else "NEW", v))
        points = points[-cfg.history:]
        values = [v for _, v in points]
        h: dict[str, Any] = {"runs": [run for run, _ in points], "values": values, "regressed": False, "note": ""}
        c.history = h
        if len(values) < MIN_RUNS:
            h["note"] = f"{len(values)} run(s) in {ref}: too few for a change point ({MIN_RUNS} needed)"
            continue
        if c.metric == LATENCY:
            cp = change_point(values, c.threshold / 100.0, relative=True)
        else:
            cp = change_point([100.0 * v for v in values], c.threshold, relative=False)
        if cp is None:
            h["note"] = f"no change point over {len(values)} runs"
            continue
        worse = cp.after > cp.before if (c.metric == LATENCY or c.metric in LOWER_IS_BETTER) else \
            cp.after < cp.before
        if c.metric == LATENCY:
            change = f"{100 * (cp.after / cp.before - 1):+.1f} %"
        else:
            change = f"{cp.after - cp.before:+.2f} points"
        h.update(change_point=cp.to_dict(), since=h["runs"][cp.at], regressed=worse,
                 note=f"{change} since run {h['runs'][cp.at]} (p={cp.p_value:.3g})")
