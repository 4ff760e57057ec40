"""Render result rows as a rich table, CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

FORMATS = ("table", "csv", "json", "markdown")

# Preferred column order; a column shows only when some row has a value in it.
_VIEW = ["run_id", "kind", "model", "lineage", "format", "backend", "variant", "placement", "precision", "device",
         "threads", "batch",
         "dataset", "protocol", "artifact", "status", "metric", "value", "pytorch", "delta", "p50_ms", "p90_ms",
         "mean_ms", "std_ms", "init_ms", "reason"]


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v + 0.0:.4g}"  # + 0.0: a zero difference prints as 0, not -0
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def short_names(paths: list[str]) -> dict[str, str]:
    """Each path's shortest trailing part that no other path in the list ends with: ``model.onnx``
    when the names differ, ``alexnet/model.tflite`` and ``mobilenet_v2/model.tflite`` when only the
    folders do. Tables name artifacts this way instead of by a bare file name that could be anyone's."""
    distinct = sorted({str(p) for p in paths})
    parts = {p: Path(p).parts for p in distinct}
    out: dict[str, str] = {}
    for p in distinct:
        out[p] = p
        for k in range(1, len(parts[p]) + 1):
            if sum(parts[q][-k:] == parts[p][-k:] for q in distinct) == 1:
                out[p] = str(Path(*parts[p][-k:]))
                break
    return out


def visible_columns(rows: list[dict[str, Any]], all_columns: bool = False) -> list[str]:
    if not rows:
        return []
    if all_columns:
        return [c for c in rows[0] if c != "id"]
    return [c for c in _VIEW if any(r.get(c) not in (None, "", {}) for r in rows)]


def constant_columns(rows: list[dict[str, Any]], cols: list[str]) -> dict[str, Any]:
    """Columns with one and the same value in every row (shown once, in the title)."""
    if len(rows) < 2:
        return {}
    return {c: rows[0].get(c) for c in cols if all(r.get(c) == rows[0].get(c) for r in rows)}


def pivot_quality(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Quality rows -> one row per (artifact, backend, dataset) with a column per metric; rows that an
    ``eval --label`` named give one row per (artifact, backend) with a column per label and metric (the
    theses' tables: method x LFW, AgeDB, ...). The thresholds that go with each figure stay in the store."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r.get("kind") != "quality" or str(r.get("metric", "")).startswith(("threshold", "best_threshold",
                                                                                "eer_threshold")):
            continue
        label = (r.get("extra") or {}).get("label") if isinstance(r.get("extra"), dict) else None
        key = (r.get("artifact"), r.get("backend"), r.get("variant"), None if label else r.get("dataset"))
        row = out.setdefault(key, {"model": r.get("model"), "lineage": r.get("lineage"), "artifact": r.get("artifact"),
                                   "backend": f"{r.get('backend')}:{r.get('variant')}",
                                   **({} if label else {"dataset": r.get("dataset")})})
        row[f"{label} {r['metric']}" if label else r["metric"]] = r.get("value")
    return list(out.values())


def render(rows: list[dict[str, Any]], fmt: str = "table", title: str | None = None) -> str | Any:
    """Return text for csv/json/markdown; a rich Table for 'table'."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        cols = visible_columns(rows, all_columns=True)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (json.dumps(r[c], sort_keys=True) if isinstance(r[c], dict) else r[c]) for c in cols})
        return buf.getvalue()
    cols = visible_columns(rows)
    if fmt == "markdown":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    if fmt == "table":
        from rich.table import Table

        from fcbench.ui import plain

        same = constant_columns(rows, cols)
        cols = [c for c in cols if c not in same] or cols
        if same:
            title = (title + "\n" if title else "") + ", ".join(f"{k}={_fmt(v)}" for k, v in same.items())
        table = Table(title=plain(title) if title else None)
        for c in cols:
            table.add_column(plain(c), justify="right" if c in ("value", "threads", "batch") or c.endswith("_ms")
                             else "left")
        for r in rows:
            table.add_row(*(plain(_fmt(r.get(c))) for c in cols))
        return table
    raise ValueError(fmt)


def pivot_table(rows: list[dict[str, Any]], title: str) -> Any:
    """A rich table of :func:`pivot_quality` rows: the columns that are one value everywhere go in the title."""
    from rich.table import Table

    from fcbench.ui import plain

    cols = list(dict.fromkeys(k for r in rows for k in r))
    same = constant_columns(rows, cols)
    keep = [c for c in cols if c not in same or c in ("lineage",)]
    sub = ", ".join(f"{k}={_fmt(v)}" for k, v in same.items() if k not in keep)
    table = Table(title=plain(title + (f"\n{sub}" if sub else "")))
    for c in keep:
        table.add_column(plain(c), justify="left" if c in ("model", "lineage", "artifact", "backend", "dataset")
                         else "right")
    for r in rows:
        table.add_row(*(plain(_fmt(r.get(c))) for c in keep))
    return table
