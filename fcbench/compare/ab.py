"""``fcbench compare BASE NEW`` of two *artifacts*: both measured now, in turn, in one bench worker (A/B).

A shared runner's speed wanders from minute to minute (other tenants, the clock, a neighbour process),
so two runs minutes apart differ by more than the changes CI looks for (docs/performance.md measures
~20 % between runs on a 2-core cloud machine). Timing BASE and NEW *in turn* -- a tenth of a second
each, round after round, in one process on one backend -- exposes both to the same wander, and the
per-round ratio cancels it (:func:`fcbench.compare.stats.compare_interleaved`). Both measurements are
stored as bench rows of one run (``extra.interleaved`` names the pair), so ``fcbench results`` and
``--history`` see them like any other.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError


def model_file(spec: str) -> bool:
    """``spec`` names a model file fcbench benches (an artifact or a checkpoint), not an export, store or run."""
    from fcbench.formats import by_suffix

    p = Path(spec)
    return p.is_file() and p.suffix.lower() not in (".csv", ".json", ".sqlite", ".db") and by_suffix(p) is not None


def is_artifact_pair(base: str, new: str) -> bool:
    """Both sides name model files (then they are timed now, in turn); one alone is a usage error."""
    b, n = model_file(base), model_file(new)
    if b != n:
        model, other = ("BASE", "NEW") if b else ("NEW", "BASE")
        raise FcbenchError(f"compare: {model} ({base if b else new}) is a model file and {other} "
                           f"({new if b else base}) is not; give two model files (timed now, in turn) or two sets "
                           "of results")
    return b


def run_ab(cfg: Any, ctx: Any, hooks: Any) -> Any:
    """Measure BASE and NEW in turn on each of ``cfg.backend`` (default: the formats' default backend) and
    compare the pair per backend; see the module docstring."""
    from fcbench.backends import expand
    from fcbench.benchmark.run import ab_run, cell_row, load_artifact, run_interleaved
    from fcbench.compare import Compared, CompareResult, Unmatched, limit_for
    from fcbench.compare.match import LATENCY, describe_key, key_label, key_of
    from fcbench.compare.stats import MANY, compare_ab
    from fcbench.options import BenchConfig
    from fcbench.results.context import RunContext
    from fcbench.results.store import DEFAULT_STORE

    ctx = ctx or RunContext()
    bench_cfg = BenchConfig(artifacts=[cfg.base, cfg.new], backends=list(cfg.backend) or ["all"],
                            threads=cfg.threads, runs=cfg.runs, min_seconds=cfg.min_seconds,
                            worker_timeout=cfg.worker_timeout)
    bench_cfg.validate()
    items = [load_artifact(a, bench_cfg) for a in (cfg.base, cfg.new)]
    (bp, bm), (np_, nm) = items
    if bm.format != nm.format:
        raise FcbenchError(f"compare: BASE {bp} is {bm.format} and NEW {np_} is {nm.format}; an A/B comparison "
                           "times two files of one format on one backend")
    threads = cfg.threads or os.cpu_count() or 1
    if cfg.backend:
        specs = expand(list(cfg.backend))
    else:
        from fcbench.evaluation import DEFAULT_BACKEND

        default = DEFAULT_BACKEND.get(bm.format)
        if not default:
            raise FcbenchError(f"compare: no runtime runs {bm.format} files; pass --backend")
        specs = expand([default])
    limits = cfg.limits()
    result = CompareResult(str(bp), str(np_), limits=limits)
    store = cfg.store or str(DEFAULT_STORE)
    for spec in specs:
        pairs = []  # per repeat: (base cell, new cell)
        rows = []
        for rep in range(cfg.repeats):
            hooks.progress("compare", rep, cfg.repeats, f"{bp.name} / {np_.name} in turn on {spec.label}")
            # a fresh worker each repeat, the files loaded in the other order every other one (what loads first
            # may land differently in memory)
            order = items if rep % 2 == 0 else items[::-1]
            cells = run_interleaved(order, spec, bench_cfg, threads)
            if rep % 2:
                cells = cells[::-1]
            for c in cells:
                c.extra["repeat"] = rep
            rows += [cell_row(ctx, c, m, spec, bench_cfg, threads) for c, (_, m) in zip(cells, items, strict=True)
                     if c.status != "skipped"]
            pairs.append(cells)
            if any(c.status != "ok" for c in cells):
                break  # skipped or failed: the first such repeat says why
        if rows:
            hooks.rows_to(store, rows)
            result.measured.extend(rows)
        key = key_of(asdict(rows[-1]) if rows else {"kind": "speed", "model": nm.model.get("name", ""),
                                                       "format": nm.format, "backend": spec.plugin,
                                                       "variant": spec.variant, "threads": threads})
        name, identity = key_label(key), describe_key(key)
        base_cell, new_cell = pairs[-1]
        if base_cell.status == "skipped":
            result.unmatched.append(Unmatched(name, identity, "not-comparable", base_cell.reason or "skipped"))
            continue
        limit = limit_for(LATENCY, limits)
        c = Compared(name, identity, LATENCY, "unknown", limit)
        if base_cell.status != "ok" or new_cell.status != "ok":
            bad = new_cell if new_cell.status != "ok" else base_cell
            c.verdict, c.note = "failed", f"{'NEW' if bad is new_cell else 'BASE'} failed: {bad.reason}"
        else:
            s = compare_ab([ab_run(b, n) for b, n in pairs], limit / 100.0)
            c.verdict, c.stats = s.verdict, s.to_dict()
            if s.verdict == "unknown" and s.runs_needed is not None:
                c.note = ("the change sits at the threshold: many more runs" if s.runs_needed >= MANY else
                          f"about {s.runs_needed} more A/B run(s) would decide: raise --repeats")
        result.rows.append(c)
        hooks.progress("compare", cfg.repeats, cfg.repeats, spec.label)
    if not result.rows:
        why = "; ".join(u.why for u in result.unmatched)
        raise FcbenchError(f"compare: no backend timed {bp.name} and {np_.name}: {why}; pass --backend with one "
                           f"that runs {bm.format} files")
    return result
