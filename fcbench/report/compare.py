"""The report's compare section: the verdicts of ``fcbench compare`` between two runs of the store.

``fcbench compare`` is its own verb (``fcbench.compare.run_compare`` with ``fcbench.options.CompareConfig``);
this module only shows its result. Where that verb is not installed the section says so instead of
failing the report; a bad BASE or NEW is compare's own one-line error.
"""

from __future__ import annotations

import html
from typing import Any


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _change(stats: dict[str, Any]) -> str:
    """Latency: NEW/BASE as a per cent change with its confidence interval; quality: the difference in points."""
    if "ratio" in stats:
        ratio, lo, hi = stats.get("ratio"), stats.get("ci_low"), stats.get("ci_high")
        if ratio is None:
            return ""
        text = f"{100 * (ratio - 1):+.1f} %"
        if lo is not None and hi is not None:
            text += f" [{100 * (lo - 1):+.1f}, {100 * (hi - 1):+.1f}]"
        return text
    if "diff_points" in stats:
        return f"{stats['diff_points']:+.2f} points"
    return ""


def _figures(stats: dict[str, Any]) -> str:
    if "base_ms" in stats:
        return f"{stats['base_ms']:.4g} → {stats['new_ms']:.4g} ms"
    if "base" in stats and "new" in stats:
        return f"{stats['base']:.4g} → {stats['new']:.4g}"
    return ""


def _limit(row: dict[str, Any]) -> str:
    """The threshold with its unit: per cent for latency, points for quality figures."""
    t = row.get("threshold")
    if not isinstance(t, (int, float)):
        return "" if t is None else str(t)
    latency = row.get("metric") == "latency" or "base_ms" in (row.get("stats") or {})
    return f"{t:g} %" if latency else f"{t:g} points"


def compare_html(base: str, new: str, store: str | None) -> tuple[str, str]:
    """(HTML, state): the verdict table for BASE -> NEW, or a note saying why there is none."""
    try:
        from fcbench.compare import run_compare
        from fcbench.options import CompareConfig
    except ImportError:
        return ('<p class="note">fcbench compare is not part of this installation, so no verdicts between '
                f"{_e(base)} and {_e(new)} can be shown.</p>", "compare unavailable")
    result = run_compare(CompareConfig(base=base, new=new, store=store))
    data = result.to_dict()
    rows = data.get("rows") or []
    body = [f'<p>{_e(data.get("base", base))} → {_e(data.get("new", new))}: {_e(data.get("verdict", ""))}</p>']
    if rows:
        trs = []
        for r in rows:
            stats = r.get("stats") or {}
            verdict = str(r.get("verdict", ""))
            p = stats.get("p_value")
            trs.append(f"<tr><td>{_e(r.get('name'))}</td><td>{_e(r.get('metric'))}</td>"
                       f'<td class="verdict-{_e(verdict)}">{_e(verdict)}</td><td>{_e(_figures(stats))}</td>'
                       f"<td>{_e(_change(stats))}</td><td>{'' if p is None else f'{p:.3g}'}</td>"
                       f"<td>{_e(_limit(r))}</td><td>{_e(r.get('note'))}</td></tr>")
        body.append('<table id="compare-table"><thead><tr><th>row</th><th>metric</th><th>verdict</th>'
                    "<th>BASE → NEW</th><th>change [CI]</th><th>p</th><th>threshold</th><th>note</th></tr></thead>"
                    f"<tbody>{''.join(trs)}</tbody></table>")
    unmatched = data.get("unmatched") or []
    if unmatched:
        trs = [f"<tr><td>{_e(u.get('name'))}</td><td>{_e(u.get('side'))}</td><td>{_e(u.get('why'))}</td></tr>"
               for u in unmatched]
        body.append('<table id="compare-unmatched"><thead><tr><th>row</th><th>only</th><th>why</th></tr></thead>'
                    f"<tbody>{''.join(trs)}</tbody></table>")
    return "".join(body), ("verdicts" if rows else "no comparable rows")
