"""The report page: plotly figures and HTML tables in one file, plotly.js inlined (it opens with no network).

Every figure is a ``<div class="fcbench-figure" data-figure="NAME">`` that plotly fills in the browser; the
tables are plain HTML, so the numbers read without JavaScript too.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from fcbench.report.data import Point, ReportData, backend_label, quality_key

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;
padding:0 16px 48px;color:#1d2430;background:#fff}
h1{font-size:1.6em;margin:24px 0 4px}h2{font-size:1.25em;margin:32px 0 8px;border-bottom:1px solid #d8dde6;
padding-bottom:4px}h3{font-size:1.05em;margin:20px 0 6px}
.meta{color:#5b6577;font-size:.9em}.note{color:#5b6577;font-style:italic}
table{border-collapse:collapse;font-size:.82em;margin:8px 0;width:100%}
th,td{border:1px solid #d8dde6;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.pareto td{background:#fff7e0}.verdict-slower{color:#b3261e;font-weight:600}.verdict-faster{color:#1e7b34}
.verdict-unknown{color:#8a6d00}.fcbench-figure{min-height:420px}
nav a{margin-right:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}"
    return _e(value)


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset(), classes: list[str] | None = None,
           table_id: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Figures:
    """Collects plotly figures as divs with their scripts (plotly.js itself goes in once, in the head)."""

    def __init__(self) -> None:
        self.count = 0
        self.names: list[str] = []

    def div(self, fig: Any, name: str, height: int = 440, legend_below: bool = False) -> str:
        self.count += 1
        self.names.append(name)
        legend: dict[str, Any] = {"font": {"size": 11}}
        if legend_below:  # long names: under the plot, clear of the axis title
            legend.update(orientation="h", yanchor="top", y=-0.15 * 440 / height, xanchor="left", x=0)
        fig.update_layout(template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 50}, height=height,
                          legend=legend, font={"family": "DejaVu Sans, Arial, sans-serif"})
        inner = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{self.count}",
                            config={"displaylogo": False, "responsive": True})
        return f'<div class="fcbench-figure" data-figure="{_e(name)}">{inner}</div>'


def quality_from(row: dict[str, Any]) -> str:
    return quality_key(row)[1]


def _hover(p: Point, metric: str) -> str:
    acc = "no accuracy row" if p.accuracy is None else f"{metric} {p.accuracy:.4g} ({p.accuracy_join})"
    whisk = f"p10 {_num(p.p10_ms)} / p90 {_num(p.p90_ms)} ms"
    lines = (f"{p.row.get('model') or '?'}: {p.lineage}", f"p50 {p.p50_ms:.4g} ms ({whisk})", acc,
             f"placement {p.placement or '?'}", f"run {p.row.get('run_id')}")
    return "<br>".join(html.escape(s) for s in lines)


def _log_axis(values: list[float]) -> bool:
    pos = [v for v in values if v and v > 0]
    return bool(pos) and max(pos) / min(pos) > 20


def latency_accuracy(fig_maker: Figures, points: list[Point], metric: str, device: str) -> str:
    import plotly.graph_objects as go

    rated = [p for p in points if p.accuracy is not None]
    fig = go.Figure()
    for backend in dict.fromkeys(p.backend for p in rated):
        ps = [p for p in rated if p.backend == backend]
        fig.add_trace(go.Scatter(
            x=[p.p50_ms for p in ps], y=[p.accuracy for p in ps], mode="markers", name=backend,
            marker={"size": [14 if p.pareto else 10 for p in ps], "line": {"width": 1, "color": "#333"}},
            error_x={"type": "data", "symmetric": False, "thickness": 1,
                     "array": [max(0.0, (p.p90_ms or p.p50_ms) - p.p50_ms) for p in ps],
                     "arrayminus": [max(0.0, p.p50_ms - (p.p10_ms or p.p50_ms)) for p in ps]},
            text=[_hover(p, metric) for p in ps], hoverinfo="text"))
    front = sorted((p for p in rated if p.pareto), key=lambda p: p.p50_ms)
    if front:
        fig.add_trace(go.Scatter(x=[p.p50_ms for p in front], y=[p.accuracy for p in front], mode="lines",
                                 name="Pareto front", line={"dash": "dash", "color": "#e0a000", "shape": "hv"},
                                 hoverinfo="skip"))
    fig.update_layout(title=f"Latency vs {metric}", xaxis_title="latency p50 (ms, whiskers p10–p90)",
                      yaxis_title=metric)
    if _log_axis([p.p50_ms for p in rated]):
        fig.update_xaxes(type="log")
    return fig_maker.div(fig, "latency-accuracy")


def backend_latency(fig_maker: Figures, points: list[Point], device: str) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for art in dict.fromkeys(p.artifact for p in points):
        ps = [p for p in points if p.artifact == art]
        fig.add_trace(go.Scatter(
            x=[p.backend for p in ps], y=[p.p50_ms for p in ps], mode="markers", name=art,
            marker={"size": 10, "symbol": "diamond"},
            error_y={"type": "data", "symmetric": False, "thickness": 1.5, "width": 6,
                     "array": [max(0.0, (p.p90_ms or p.p50_ms) - p.p50_ms) for p in ps],
                     "arrayminus": [max(0.0, p.p50_ms - (p.p10_ms or p.p50_ms)) for p in ps]},
            text=[_hover(p, "accuracy") for p in ps], hoverinfo="text"))
    fig.update_layout(title="Latency per backend (marker p50, whiskers p10–p90)",
                      xaxis_title="backend", yaxis_title="latency (ms)", scattermode="group")
    if _log_axis([p.p50_ms for p in points]):
        fig.update_yaxes(type="log")
    return fig_maker.div(fig, "backend-latency")


def size_accuracy(fig_maker: Figures, points: list[Point], metric: str) -> str:
    import plotly.graph_objects as go

    by_artifact: dict[Any, Point] = {}
    for p in points:
        if p.accuracy is not None and p.size_mb:
            by_artifact.setdefault(p.row.get("artifact_sha256") or p.row.get("artifact"), p)
    fig = go.Figure()
    fmts = dict.fromkeys(p.row.get("format") or "?" for p in by_artifact.values())
    for fmt in fmts:
        ps = [p for p in by_artifact.values() if (p.row.get("format") or "?") == fmt]
        fig.add_trace(go.Scatter(
            x=[p.size_mb for p in ps], y=[p.accuracy for p in ps], mode="markers", name=fmt,
            marker={"size": 11}, hoverinfo="text",
            text=["<br>".join(html.escape(s) for s in (" → ".join(x.strip() for x in (p.row.get("lineage") or "")
                                                                   .split(">")), f"{p.size_mb:.3g} MB",
                                                        f"{metric} {p.accuracy:.4g}")) for p in ps]))
    fig.update_layout(title=f"Size vs {metric}", xaxis_title="model size (MB)", yaxis_title=metric)
    return fig_maker.div(fig, "size-accuracy")


def roc(fig_maker: Figures, data: ReportData) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for c in data.rocs:
        pts = [(f, t) for f, t in zip(c.far, c.tar, strict=True) if f > 0]
        fig.add_trace(go.Scatter(x=[f for f, _ in pts], y=[t for _, t in pts], mode="lines+markers",
                                 marker={"size": 4}, line={"shape": "hv"},
                                 name=f"{c.name} (AUC {_num(c.auc, 3)})"))
    ons = {quality_from(c.row) for c in data.rocs}
    fig.update_layout(title="ROC of verification runs" + (f" on {ons.pop()}" if len(ons) == 1 else ""),
                      xaxis_title="FAR (false accept rate)", yaxis_title="TAR (true accept rate)")
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.02])
    return fig_maker.div(fig, "roc", height=460 + 18 * len(data.rocs), legend_below=True)


def _point_rows(points: list[Point]) -> tuple[list[list[Any]], list[str]]:
    rows, classes = [], []
    for p in points:
        rows.append([("★ " if p.pareto else "") + _e(p.row.get("model")), _e(p.lineage), _num(p.p50_ms), _num(p.p90_ms),
                     _num(p.accuracy), _e(p.accuracy_join or "—"), _num(p.size_mb), _e(p.placement),
                     _e(p.row.get("threads")), _e(p.row.get("run_id"))])
        classes.append("pareto" if p.pareto else "")
    return rows, classes


def render(data: ReportData, *, title: str, store: str, generated: str, compare_html: str = "") -> tuple[str, int]:
    """The whole page and the number of figures in it."""
    from plotly.offline import get_plotlyjs

    figs = Figures()
    metric, on = data.quality
    metric_label = f"{metric} on {on}" if metric else "accuracy"
    body: list[str] = [f"<h1>{_e(title)}</h1>",
                       f'<p class="meta">store {_e(store)} · runs {_e(", ".join(data.runs) or "none")} · '
                       f"{data.counts['speed_rows']} speed rows, {data.counts['quality_rows']} quality rows · "
                       f"generated {_e(generated)}</p>",
                       '<nav><a href="#devices">latency vs accuracy</a><a href="#backends">per backend</a>'
                       '<a href="#size">size</a><a href="#roc">ROC</a><a href="#cells">placement and precision</a>'
                       '<a href="#compare">compare</a></nav>']
    body.append('<h2 id="devices">Latency vs accuracy, per device</h2>')
    if not metric:
        body.append('<p class="note">No quality rows with a headline metric (accuracy, top1, rank1) in these runs: '
                    "run fcbench eval on the artifacts (with --backend for each runtime) to place them.</p>")
    else:
        body.append(f'<p class="note">Accuracy is {_e(metric_label)}, joined to each bench cell from the quality '
                    "rows: through the same runtime where measured, else the same artifact, file, or model and "
                    "lineage (column \"from\"). ★ marks the Pareto front (no other cell both faster and more "
                    "accurate).</p>")
    for dev, label in data.devices.items():
        pts = data.device_points(dev)
        body.append(f"<h3>{_e(label)}</h3>")
        if metric and any(p.accuracy is not None for p in pts):
            body.append(latency_accuracy(figs, pts, metric, label))
        rows, classes = _point_rows(pts)
        body.append(_table(["model", "lineage → runtime precision", "p50 ms", "p90 ms", metric or "accuracy",
                            "from", "size MB", "placement", "threads", "run"], rows, {2, 3, 4, 6, 8}, classes))
    if not data.devices:
        body.append('<p class="note">No speed rows in these runs: run fcbench bench first.</p>')
    body.append('<h2 id="backends">Latency per backend</h2>')
    for dev, label in data.devices.items():
        body.append(f"<h3>{_e(label)}</h3>")
        body.append(backend_latency(figs, data.device_points(dev), label))
    body.append('<h2 id="size">Size vs accuracy</h2>')
    if any(p.accuracy is not None and p.size_mb for p in data.points):
        body.append(size_accuracy(figs, data.points, metric))
    else:
        body.append('<p class="note">No artifact has both a size (bench rows) and an accuracy (eval rows).</p>')
    body.append('<h2 id="roc">ROC curves of verification runs</h2>')
    if data.rocs:
        body.append(roc(figs, data))
    else:
        body.append('<p class="note">No verification run in these rows stored its ROC (fcbench eval on pairs '
                    "keeps a compact one in the auc row).</p>")
    body.append('<h2 id="cells">Placement and precision of every cell</h2>')
    body.append(_table(["verb", "artifact", "backend", "device", "status", "placement", "precision", "reason"],
                       [[_e(c["verb"]), _e(c["row"].get("artifact")), _e(backend_label(c["row"])),
                         _e(c["row"].get("device")), _e(c["status"]), _e(c["placement"]), _e(c["precision"]),
                         _e(c["reason"])] for c in data.cells], table_id="cells-table"))
    body.append('<h2 id="compare">Compare</h2>')
    body.append(compare_html or '<p class="note">No comparison asked for: fcbench report --compare BASE,NEW '
                                "shows the verdicts between two runs.</p>")
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style>"
            f'<script type="text/javascript">{get_plotlyjs()}</script>'
            f'<script type="application/json" id="fcbench-report-data">{_json_summary(data)}</script>'
            "</head><body>" + "\n".join(body) + "</body></html>\n")
    return page, figs.count


def _json_summary(data: ReportData) -> str:
    """What the page shows, as data (counts), for scripts reading the file; '<' escaped for the script tag."""
    text = json.dumps({"counts": dict(data.counts), "devices": data.devices, "runs": data.runs})
    return text.replace("<", "\\u003c")
