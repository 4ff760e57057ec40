"""The report's compare section: the verdicts of ``fcbench compare`` between two runs of the store.

``fcbench compare`` is its own verb (``fcbench.compare``); this module only shows its result. Where that
verb is not installed the section says so instead of failing the report.
"""

from __future__ import annotations

import html
from typing import Any


def compare_html(base: str, new: str, store: str | None) -> tuple[str, str]:
    """(HTML, state): the verdict table for BASE -> NEW, or a note saying why there is none."""
    try:
        import fcbench.compare as compare
    except ImportError:
        return ('<p class="note">fcbench compare is not part of this installation, so no verdicts between '
                f"{html.escape(base)} and {html.escape(new)} can be shown.</p>", "compare unavailable")
    rows = _compare_rows(compare, base, new, store)
    if not rows:
        return (f'<p class="note">{html.escape(base)} and {html.escape(new)} have no rows in common to compare.</p>',
                "no comparable rows")
    headers = list(dict.fromkeys(k for r in rows for k in r))
    body = []
    for r in rows:
        verdict = str(r.get("verdict", ""))
        cells = "".join(f'<td class="verdict-{html.escape(verdict)}">{html.escape(_fmt(r.get(h)))}</td>'
                        if h == "verdict" else f"<td>{html.escape(_fmt(r.get(h)))}</td>" for h in headers)
        body.append(f"<tr>{cells}</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return (f"<p>{html.escape(base)} → {html.escape(new)}</p>"
            f'<table id="compare-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
            "verdicts")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _compare_rows(compare: Any, base: str, new: str, store: str | None) -> list[dict[str, Any]]:
    """The compare verb's result as flat rows (one per matched row, with its verdict)."""
    from fcbench import verbs

    verb = verbs.get("compare")
    options: dict[str, Any] = {"base": base, "new": new}
    if store:
        options["store"] = store
    result = verb(verb.config(**options))
    rows = getattr(result, "rows", None)
    if rows is None and hasattr(result, "to_dicts"):
        rows = result.to_dicts()
    return [r if isinstance(r, dict) else dict(vars(r)) for r in rows or []]
