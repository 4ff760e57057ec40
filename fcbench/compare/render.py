"""Views of a :class:`~fcbench.compare.CompareResult`: a rich table, Markdown (a CI job summary or a pull
request comment) and JSON."""

from __future__ import annotations

import json
from typing import Any

_MARK = {"same": "same", "slower": "**slower**", "faster": "faster", "unknown": "unknown", "worse": "**worse**",
         "better": "better", "failed": "**failed**", "fixed": "fixed"}
_COLOUR = {"slower": "red", "worse": "red", "failed": "red", "faster": "green", "better": "green",
           "unknown": "yellow", "fixed": "green"}


def _figures(c: Any) -> tuple[str, str, str, str]:
    """(base, new, change, interval/test) cells of one compared row."""
    s = c.stats
    if not s:
        return "", "", "", ""
    if "ratio" in s:
        p = "" if s["p_value"] is None else f"; p={s['p_value']:.2g}"
        return (f"{s['base_ms']:.4g} ms", f"{s['new_ms']:.4g} ms", f"{100 * (s['ratio'] - 1):+.1f} %",
                f"[{100 * (s['ci_low'] - 1):+.1f}, {100 * (s['ci_high'] - 1):+.1f}] %{p}; "
                + (f"A/B, {s['base_runs']} run(s), {s['rounds']} rounds" if s.get("rounds")
                   else f"runs {s['base_runs']}/{s['new_runs']}"))
    return (f"{s['base']:.4g}", f"{s['new']:.4g}", f"{s['diff_points']:+.2f} pts", f"runs {s['base_runs']}/"
            f"{s['new_runs']}")


def _limit(c: Any) -> str:
    return f"{c.threshold:g} %" if c.metric == "latency" else f"{c.threshold:g} pts"


def _note(c: Any) -> str:
    parts = [c.note] if c.note else []
    if c.history:
        parts.append(("DRIFT: " if c.history.get("regressed") else "history: ") + c.history.get("note", ""))
    return "; ".join(p for p in parts if p)


def markdown(result: Any) -> str:
    bad = result.failures()
    head = "### fcbench compare: " + (f"{len(bad)} regression(s)" if bad else "no regression")
    lines = [head, "", f"BASE `{result.base}` against NEW `{result.new}`: {result.verdict}.", ""]
    if result.rows:
        lines += ["| row | verdict | base | new | change | 99 % interval / test | limit | note |",
                  "|---|---|---|---|---|---|---|---|"]
        order = sorted(result.rows, key=lambda c: (not c.regressed, c.verdict != "unknown"))
        for c in order:
            cells = [c.name, _MARK.get(c.verdict, c.verdict), *_figures(c), _limit(c), _note(c)]
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    if result.unmatched:
        lines += ["", "| not compared | why |", "|---|---|"]
        lines += [f"| {u.name} | {u.side}: {u.why} |" for u in result.unmatched]
    if result.skipped:
        lines += ["", f"{result.skipped} row(s) of other kinds or metrics (train, compress, thresholds) not compared."]
    return "\n".join(lines) + "\n"


def table(result: Any) -> list[Any]:
    from rich.table import Table

    from fcbench.ui import literal, plain

    out: list[Any] = []
    t = Table(title=plain(f"compare: BASE {result.base} -> NEW {result.new}"))
    for col in ("row", "verdict", "base", "new", "change", "99 % interval / test", "limit", "note"):
        t.add_column(col, overflow="fold", justify="right" if col in ("base", "new", "change") else "left")
    for c in result.rows:
        t.add_row(plain(c.name), literal(c.verdict, _COLOUR.get(c.verdict, "")),
                  *(plain(x) for x in _figures(c)), plain(_limit(c)), plain(_note(c)))
    out.append(t)
    if result.unmatched:
        u = Table(title="not compared")
        u.add_column("row", overflow="fold")
        u.add_column("side")
        u.add_column("why", overflow="fold")
        for x in result.unmatched:
            u.add_row(plain(x.name), plain(x.side), plain(x.why))
        out.append(u)
    return out


def view(result: Any, fmt: str) -> list[Any]:
    if fmt == "json":
        return [json.dumps(result.to_dict(), indent=2, default=str) + "\n"]
    if fmt == "markdown":
        return [markdown(result)]
    return table(result)
