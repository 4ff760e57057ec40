"""The bench matrix as a table: one row per artifact x backend, failures with reasons."""

from __future__ import annotations

from typing import Any

from fcbench.benchmark.run import Cell
from fcbench.render.rows import render, short_names


def cell_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    rows = []
    names = short_names([c.artifact for c in cells])
    for c in cells:
        s = c.stats
        rows.append({
            "artifact": names[str(c.artifact)], "format": c.format, "backend": c.backend, "status": c.status,
            "p50_ms": s.p50_ms if s else None, "p90_ms": s.p90_ms if s else None, "mean_ms": s.mean_ms if s else None,
            "std_ms": s.std_ms if s else None, "runs": s.runs if s else None, "init_ms": c.init_ms,
            "first_run_ms": c.first_run_ms, "peak_mem_mb": c.peak_mem_mb, "size_mb": c.size_mb,
            "gflops_per_s": c.gflops_per_s, "peak_share": c.peak_share,
            "placement": c.extra.get("placement"), "precision": _precision(c), "reason": c.reason,
            "warning": c.extra.get("warning"),
        })
        pipe = c.extra.get("pipeline")
        if pipe:  # app-like p50 per stage, beside the model-only figures of the same cell
            rows[-1].update({f"app_{stage}_ms": v["p50_ms"] for stage, v in pipe["stages"].items()})
            rows[-1]["app_total_ms"] = pipe["end_to_end"]["p50_ms"]
    return rows


def _precision(c: Cell) -> str | None:
    """What the runtime says it ran; flagged when that is not what was asked for."""
    ran, asked = c.extra.get("precision"), c.extra.get("precision_requested")
    if ran and asked and not ran.startswith(asked):
        return f"{ran} (asked {asked})"
    return ran


def cells_table(cells: list[Cell], fmt: str = "table") -> Any:
    rows = cell_rows(cells)
    if fmt != "table":
        return render(rows, fmt) if fmt in ("json", "csv") else _markdown(rows)
    from rich.console import Group
    from rich.table import Table

    from fcbench.ui import plain

    ran = [r for r in rows if r["status"] != "skipped"]
    skipped: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["status"] == "skipped":
            skipped.setdefault((r["backend"], r["reason"]), []).append(r["artifact"])
    table = Table(title="fcbench bench (single-stream, ms)")
    cols = ["artifact", "backend", "status", "p50_ms", "p90_ms", "std_ms", "runs", "init_ms", "peak_mem_mb",
            "size_mb", "gflops_per_s", "peak_share", "placement", "precision", "reason"]
    app = [k for k in ("app_read_ms", "app_decode_ms", "app_preprocess_ms", "app_infer_ms", "app_postprocess_ms",
                       "app_total_ms") if any(k in r for r in ran)]
    if app:  # pipeline mode: the app's view next to the model's, fewer model columns to make room
        cols = ["artifact", "backend", "status", "p50_ms", "p90_ms", "init_ms", *app, "placement", "precision",
                "reason"]
    for col in cols:
        table.add_column(col.replace("_ms", " ms").replace("app_", "app ").replace("_", " "), overflow="fold")
    for r in ran:
        table.add_row(*(_cell(col, r) for col in cols))
    if not skipped:
        return table
    notes = Table(title="not run here", show_lines=False)
    for col in ("backend", "artifacts", "why"):
        notes.add_column(col, overflow="fold")
    for (backend, reason), artifacts in skipped.items():
        notes.add_row(plain(backend), plain(", ".join(artifacts)), plain(reason))
    return Group(table, notes) if ran else notes


def _text(col: str, r: dict[str, Any]) -> tuple[str, str]:
    """A cell's text and style: a status other than ok in red; a cell benched with a warning (its
    manifest's parity check failed) is marked in the status column and the warning shown as its reason."""
    v, warning = r.get(col), r.get("warning")
    if warning and col == "status":
        return f"{_fmt(col, v)} (!)", "yellow" if v == "ok" else "red"
    if warning and col == "reason":
        return "; ".join(x for x in (_fmt(col, v) if v else "", f"warning: {warning}") if x), "yellow"
    return _fmt(col, v), "red" if col == "status" and v not in (None, "ok") else ""


def _cell(col: str, r: dict[str, Any]) -> Any:
    """A table cell: the value as it is (never markup), styled as :func:`_text` says."""
    from fcbench.ui import literal

    return literal(*_text(col, r))


def _fmt(col: str, v: Any) -> str:
    if v is None:
        return ""
    if col == "peak_share":
        return f"{100 * v:.0f} %"
    if isinstance(v, float):
        return f"{v:.3f}" if col.endswith("_ms") else f"{v:.3g}"
    return str(v)


def _markdown(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_text(c, r)[0] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
