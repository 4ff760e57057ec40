"""What a report shows, from store rows (plain dicts as ``Store.query()`` gives them): no plotting here.

Speed rows become ``Point``s: one per measured cell (the newest row of each cell identity), each with the
accuracy of the same artifact joined from the quality rows, most specific first: the same artifact (sha256)
measured through the same runtime; the same artifact through any runtime; the same artifact path; the same
model and lineage. ``join`` says which matched, so nothing is passed off as what it is not.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# the figure that stands for an evaluation, by protocol (as fcbench.evaluation.HEADLINE; not imported from
# there: it loads torch, which a report does not need)
HEADLINE = {"verification": "accuracy", "classification": "top1", "identification": "rank1"}

JOINS = ("this runtime", "same artifact", "same file", "same model and lineage")


def headline_metric(row: dict[str, Any]) -> str:
    return HEADLINE.get((row.get("protocol") or "").split("+")[0], "")


def quality_key(row: dict[str, Any]) -> tuple[str, str]:
    """(metric, data) a quality row measures: the data is its label (``--label``) or dataset and protocol."""
    extra = row.get("extra") or {}
    data = extra.get("label") or row.get("dataset") or ""
    protocol = row.get("protocol") or ""
    return row.get("metric") or "", f"{data} ({protocol})" if protocol else data


def lineage_path(row: dict[str, Any], precision: str = "") -> str:
    """``train(arcface) → convert(onnx) → onnxruntime:cpu f32``: the artifact's lineage, then where it ran."""
    steps = [s.strip() for s in (row.get("lineage") or "").split(">") if s.strip()]
    where = row.get("profile") or ":".join(x for x in (row.get("backend"), row.get("variant")) if x)
    if where:
        steps.append(f"{where} {precision}".strip())
    return " → ".join(steps) or (row.get("artifact") or "?")


def backend_label(row: dict[str, Any]) -> str:
    """The profile asked for (``ort-cpu``), else ``plugin:variant``."""
    return row.get("profile") or ":".join(x for x in (row.get("backend"), row.get("variant")) if x)


def artifact_name(row: dict[str, Any]) -> str:
    """``r18 model.onnx``: the model and the file name (two models' ``model.onnx`` kept apart)."""
    file = (row.get("artifact") or "").replace("\\", "/").rsplit("/", 1)[-1]
    return f"{row['model']} {file}" if row.get("model") else file


def device_key(row: dict[str, Any]) -> str:
    return row.get("device_fingerprint") or row.get("device") or "unknown device"


def device_label(row: dict[str, Any]) -> str:
    info = row.get("device_info") or {}
    name = row.get("device") or "local"
    cpu = info.get("cpu") or info.get("model") or ""
    parts = [name] + ([cpu] if cpu else []) + ([info["arch"]] if info.get("arch") and info.get("arch") not in cpu
                                                else [])
    fp = row.get("device_fingerprint")
    return " · ".join(parts) + (f" ({fp})" if fp else "")


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without numpy."""
    xs = sorted(samples)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Point:
    """One benchmarked cell, with its accuracy where one was measured."""

    row: dict[str, Any]
    device: str
    p10_ms: float | None
    p50_ms: float
    p90_ms: float | None
    precision: str = ""
    placement: str = ""
    accuracy: float | None = None
    accuracy_join: str = ""  # which of JOINS matched; '' when no quality row did
    accuracy_row: dict[str, Any] | None = None
    pareto: bool = False

    @property
    def name(self) -> str:
        return f"{artifact_name(self.row)} · {self.backend}"

    @property
    def artifact(self) -> str:
        return artifact_name(self.row)

    @property
    def backend(self) -> str:
        return backend_label(self.row)

    @property
    def lineage(self) -> str:
        return lineage_path(self.row, self.precision)

    @property
    def size_mb(self) -> float | None:
        return self.row.get("model_size_mb")


@dataclass
class RocCurve:
    name: str
    far: list[float]
    tar: list[float]
    auc: float | None
    row: dict[str, Any]


@dataclass
class ReportData:
    points: list[Point] = field(default_factory=list)
    devices: dict[str, str] = field(default_factory=dict)  # device key -> label
    quality: tuple[str, str] = ("", "")  # the (metric, data) joined as "accuracy"
    rocs: list[RocCurve] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)  # placement and precision of every cell
    failed: list[dict[str, Any]] = field(default_factory=list)  # speed rows that measured nothing
    runs: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def device_points(self, device: str) -> list[Point]:
        return [p for p in self.points if p.device == device]


def _cell_identity(r: dict[str, Any]) -> tuple:
    return (r.get("artifact_sha256") or r.get("artifact"), r.get("backend"), r.get("variant"), r.get("profile"),
            r.get("options_hash"), device_key(r), r.get("threads"), r.get("batch"), r.get("input_shape"))


def _newest(rows: list[dict[str, Any]], key) -> list[dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:  # oldest first: a later row of the same identity replaces an earlier one
        out[key(r)] = r
    return list(out.values())


def _primary_quality(quality: list[dict[str, Any]]) -> tuple[str, str]:
    """The headline (metric, data) most quality rows were measured on: the one y axis of every plot."""
    seen = Counter(quality_key(r) for r in quality if r.get("metric") and r.get("metric") == headline_metric(r)
                   and r.get("value") is not None)
    return seen.most_common(1)[0][0] if seen else ("", "")


def join_accuracy(point: Point, by_sha: dict, by_file: dict, by_lineage: dict) -> None:
    r = point.row
    sha = r.get("artifact_sha256")
    candidates = by_sha.get(sha, []) if sha else []
    same_runtime = [q for q in candidates if (q.get("backend"), q.get("variant")) == (r.get("backend"),
                                                                                      r.get("variant"))]
    for join, found in (("this runtime", same_runtime), ("same artifact", candidates),
                        ("same file", by_file.get(r.get("artifact"), []) if r.get("artifact") else []),
                        ("same model and lineage", by_lineage.get((r.get("model"), r.get("lineage")), []))):
        if found:
            q = found[-1]  # the newest
            point.accuracy, point.accuracy_join, point.accuracy_row = float(q["value"]), join, q
            return


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both latency (lower) and accuracy (higher), fastest first."""
    from fcbench.pareto import pareto_front as front

    return front(points, lambda p: p.p50_ms, lambda p: p.accuracy)


def build(rows: list[dict[str, Any]]) -> ReportData:
    data = ReportData()
    data.runs = list(dict.fromkeys(r.get("run_id") or "" for r in rows))
    speed = [r for r in rows if r.get("kind") == "speed"]
    quality = [r for r in rows if r.get("kind") == "quality"]
    data.counts.update(rows=len(rows), speed_rows=len(speed), quality_rows=len(quality))
    data.quality = _primary_quality(quality)
    picked = [q for q in quality if quality_key(q) == data.quality and q.get("value") is not None]
    by_sha: dict[str, list] = {}
    by_file: dict[str, list] = {}
    by_lineage: dict[tuple, list] = {}
    for q in picked:
        if q.get("artifact_sha256"):
            by_sha.setdefault(q["artifact_sha256"], []).append(q)
        if q.get("artifact"):
            by_file.setdefault(q["artifact"], []).append(q)
        by_lineage.setdefault((q.get("model"), q.get("lineage")), []).append(q)
    for r in _newest(speed, _cell_identity):
        extra = r.get("extra") or {}
        samples = [float(x) for x in r.get("samples_ms") or [] if isinstance(x, (int, float))]
        p50 = percentile(samples, 50) if samples else r.get("p50_ms")
        if p50 is None:  # failed or skipped: nothing to plot; listed with why
            data.failed.append(r)
            continue
        point = Point(row=r, device=device_key(r), p10_ms=percentile(samples, 10) if samples else r.get("min_ms"),
                      p50_ms=float(p50), p90_ms=percentile(samples, 90) if samples else r.get("p90_ms"),
                      precision=str(extra.get("precision") or ""), placement=str(extra.get("placement") or ""))
        join_accuracy(point, by_sha, by_file, by_lineage)
        data.points.append(point)
        data.devices.setdefault(point.device, device_label(r))
    for dev in data.devices:
        for p in pareto_front(data.device_points(dev)):
            p.pareto = True
    data.points.sort(key=lambda p: (p.device, p.p50_ms))
    for q in _newest([q for q in quality if q.get("metric") == "auc"], lambda q: (
            q.get("artifact_sha256") or q.get("artifact"), q.get("backend"), q.get("variant"), quality_key(q)[1])):
        roc = (q.get("extra") or {}).get("roc") or {}
        if roc.get("far") and roc.get("tar"):
            data.rocs.append(RocCurve(f"{artifact_name(q)} · {backend_label(q)}", list(roc["far"]),
                                      list(roc["tar"]), q.get("value"), q))
    if len({quality_key(c.row)[1] for c in data.rocs}) > 1:  # several data sets: say which each curve is on
        for c in data.rocs:
            c.name += f" · {quality_key(c.row)[1]}"
    data.cells = _cells(speed, quality)
    data.counts.update(points=len(data.points), with_accuracy=sum(p.accuracy is not None for p in data.points),
                       pareto=sum(p.pareto for p in data.points), devices=len(data.devices), rocs=len(data.rocs),
                       cells=len(data.cells), failed=len(data.failed))
    return data


def _cells(speed: list[dict[str, Any]], quality: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where each cell ran and in which precision: every bench cell (newest per identity) and every
    evaluation through a runtime (one per artifact, runtime and data)."""
    out = []
    for r in _newest(speed, _cell_identity):
        extra = r.get("extra") or {}
        out.append({"verb": "bench", "row": r, "status": extra.get("status") or ("ok" if r.get("p50_ms") else ""),
                    "placement": extra.get("placement") or "", "precision": extra.get("precision") or "",
                    "reason": extra.get("reason") or ""})
    evals = [q for q in quality if (q.get("extra") or {}).get("placement") or (q.get("extra") or {}).get("precision")]
    for q in _newest(evals, lambda q: (q.get("artifact_sha256"), q.get("backend"), q.get("variant"),
                                       device_key(q), quality_key(q)[1])):
        extra = q.get("extra") or {}
        out.append({"verb": "eval", "row": q, "status": "ok", "placement": extra.get("placement") or "",
                    "precision": extra.get("precision") or "", "reason": ""})
    return out
