"""``fcbench report``: one self-contained HTML page of a results store (plotly.js inlined; no network needed).

Per device, latency against accuracy with the Pareto front and each point's lineage; latency per backend with
p10/p50/p90; size against accuracy; ROC curves of verification runs; the placement and precision of every
cell; and, asked for, the verdicts of ``fcbench compare`` between two runs. Rows are read through
``fcbench.results.store.Store.query()`` only, so any store backend serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError
from fcbench.options import ReportConfig


@dataclass
class ReportResult:
    """The page written and how much it shows (``counts``: rows, points, pareto, devices, rocs, cells, figures)."""

    path: str
    counts: dict[str, int] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    compare: str = ""  # what the compare section holds: 'verdicts', or why it is empty

    def to_rows(self) -> list:
        return []  # the rows are the store's already




def resolve_runs(store: Any, wanted: list[str]) -> list[str]:
    """Run ids for ``wanted`` (ids, ``last``, ``last~N``: N runs before the last; ``Store.resolve_run``), in
    store order; a run the store lacks is one line, exit 2."""
    have = store.run_ids()
    out: list[str] = []
    for w in wanted:
        run = store.resolve_run(w, "--run")
        if run not in out:
            out.append(run)
    return sorted(out, key=have.index)


def _open_store(cfg: ReportConfig):
    from fcbench.results.store import DEFAULT_STORE, Store

    where = cfg.store or str(DEFAULT_STORE)
    if "://" not in where:  # a file: reading must not create it
        path = Path(where)
        if not path.exists():
            raise FcbenchError(f"results store {path} does not exist; run bench or eval with --store {path} "
                               "first, or pass --store")
    return Store(where)


def _compare_section(cfg: ReportConfig, runs: list[str]) -> tuple[str, str]:
    """(HTML, state) of the compare section for ``--compare BASE,NEW``."""
    if not cfg.compare:
        return "", "not asked"
    if len(cfg.compare) != 2:
        raise FcbenchError(f"--compare takes two runs BASE,NEW, got {len(cfg.compare)}: {','.join(cfg.compare)}")
    from fcbench.report.compare import compare_html

    return compare_html(cfg.compare[0], cfg.compare[1], cfg.store)


def _write(path: Path, text: str) -> None:
    """Write the page whole or not at all (a reader never sees half a file), as UTF-8 whatever the locale."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp's are private)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_report(cfg: ReportConfig, ctx: Any = None, hooks: Any = None) -> ReportResult:
    from fcbench.hooks import or_default
    from fcbench.paths import output_file
    from fcbench.report.data import build
    from fcbench.report.page import render

    try:
        import plotly  # noqa: F401
    except ImportError as exc:
        raise FcbenchError("fcbench report draws with plotly, which is not installed: pip install 'fcbench[report]'"
                           ) from exc
    hooks = or_default(hooks)
    out = output_file(cfg.out, "--out", example="report.html")
    with _open_store(cfg) as store:
        runs = resolve_runs(store, cfg.runs)
        if runs:
            rows = [r for run in runs for r in store.query(run_id=run)]
        else:
            rows = store.query()
            if not rows:
                raise FcbenchError(store.why_empty({}))
        store_name = str(store.path)
    data = build(rows)
    if not data.counts["speed_rows"] and not data.counts["quality_rows"]:
        raise FcbenchError(f"nothing to report: the {'runs ' + ', '.join(runs) if runs else 'store'} in {store_name} "
                           "hold no speed or quality rows (only train/compress); run bench or eval first")
    compare_html, compare_state = _compare_section(cfg, runs)
    title = cfg.title or f"fcbench report of {store_name}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page, figures = render(data, title=title, store=store_name, generated=generated, compare_html=compare_html)
    _write(out, page)
    counts = {**dict(data.counts), "figures": figures}
    hooks.log(f"report: {figures} figures, {counts['points']} bench cells ({counts['with_accuracy']} with accuracy, "
              f"{counts['pareto']} on a Pareto front), {counts['rocs']} ROC curves, {counts['devices']} device(s) "
              f"-> {out}")
    return ReportResult(str(out), counts, data.runs, compare_state)
