"""Row identity and matching: which row of BASE is "the same measurement" as which row of NEW.

A row's identity is what it measured (model and lineage, format, backend with its variant, profile and
options hash, threads, batch, input shape, the metric, and for quality rows the data and protocol),
and its machine (``device_fingerprint``) kept apart: a row of the same identity measured on another
machine is *not comparable*, listed as such, never matched. Several rows of one identity and machine
in one side are reruns: they are pooled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

# the columns that name a measurement (besides the machine)
IDENTITY = ("kind", "model", "lineage", "format", "backend", "variant", "profile", "options_hash", "threads", "batch",
            "input_shape", "metric", "dataset", "protocol")
KEY_NAMES = (*IDENTITY, "label")
LATENCY = "latency"  # a speed row's metric
COMPARED_KINDS = ("speed", "quality")
# quality rows that are operating points or spreads, not figures of merit: not compared
_NOT_FIGURES = ("threshold", "best_threshold", "eer_threshold", "accuracy_std")

Key = tuple


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def metric_of(row: dict[str, Any]) -> str:
    return LATENCY if row.get("kind") == "speed" else _text(row.get("metric"))


def comparable_figure(row: dict[str, Any]) -> bool:
    """A speed row, or a quality row of a figure of merit (not a threshold or a spread)."""
    if row.get("kind") not in COMPARED_KINDS:
        return False
    m = metric_of(row)
    return bool(m) and not (m in _NOT_FIGURES or m.startswith("threshold@") or m.endswith("_threshold"))


def key_of(row: dict[str, Any]) -> Key:
    extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
    values = []
    for name in IDENTITY:
        if name == "metric":
            values.append(metric_of(row))
        elif name in ("dataset", "protocol") and row.get("kind") == "speed":
            values.append("")
        else:
            values.append(_text(row.get(name)))
    values.append(_text(extra.get("label")))
    return tuple(values)


def describe_key(key: Key) -> dict[str, str]:
    return dict(zip(KEY_NAMES, key, strict=True))


def key_label(key: Key) -> str:
    """A short human name of a measurement: ``r18 onnx onnxruntime:cpu t1 latency``."""
    d = describe_key(key)
    parts = [d["model"] or "?"]
    if d["lineage"]:
        parts.append(f"[{d['lineage']}]")
    backend = d["backend"] + (f":{d['variant']}" if d["variant"] else "")
    parts += [d["format"], d["profile"] or backend]
    if d["threads"]:
        parts.append(f"t{d['threads']}")
    if d["batch"] and d["batch"] != "1":
        parts.append(f"b{d['batch']}")
    if d["dataset"]:
        parts.append(d["label"] or d["dataset"])
    parts.append(d["metric"])
    return " ".join(p for p in parts if p)


@dataclass
class Group:
    """The rows of one identity on one machine in one side (several: reruns)."""

    key: Key
    fingerprint: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cpu(self) -> str:
        for r in self.rows:
            info = r.get("device_info") if isinstance(r.get("device_info"), dict) else {}
            if info.get("cpu"):
                return str(info["cpu"])
        return ""

    def machine(self) -> str:
        fp = self.fingerprint[:8] or "unknown"
        return f"{self.cpu} ({fp})" if self.cpu else fp


@dataclass
class Matching:
    matched: list[tuple[Group, Group]] = field(default_factory=list)  # (base, new)
    new: list[Group] = field(default_factory=list)  # only in NEW
    vanished: list[Group] = field(default_factory=list)  # only in BASE
    not_comparable: list[tuple[Group | None, Group | None]] = field(default_factory=list)  # another machine
    skipped: int = 0  # rows of kinds or metrics that are not compared (train, compress, thresholds)


def group(rows: list[dict[str, Any]]) -> tuple[dict[tuple[Key, str], Group], int]:
    out: dict[tuple[Key, str], Group] = {}
    skipped = 0
    for r in rows:
        if not comparable_figure(r):
            skipped += 1
            continue
        k, fp = key_of(r), _text(r.get("device_fingerprint"))
        out.setdefault((k, fp), Group(k, fp)).rows.append(r)
    return out, skipped


def match(base_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]]) -> Matching:
    base, skipped_b = group(base_rows)
    new, skipped_n = group(new_rows)
    m = Matching(skipped=skipped_b + skipped_n)
    base_by_key: dict[Key, list[Group]] = defaultdict(list)
    new_by_key: dict[Key, list[Group]] = defaultdict(list)
    for (k, _), g in base.items():
        base_by_key[k].append(g)
    for (k, _), g in new.items():
        new_by_key[k].append(g)
    for k, groups in new_by_key.items():
        if k not in base_by_key:
            m.new.extend(groups)
            continue
        others = [b for b in base_by_key[k] if (k, b.fingerprint) not in new]
        for g in groups:
            if (k, g.fingerprint) in base:
                m.matched.append((base[(k, g.fingerprint)], g))
            else:
                m.not_comparable.append((others[0] if others else None, g))
        for b in others:
            if not any(pair[0] is b for pair in m.not_comparable):
                m.not_comparable.append((b, None))
    for k, groups in base_by_key.items():
        if k not in new_by_key:
            m.vanished.extend(groups)
    return m


def why_none_comparable(base_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]], m: Matching) -> str:
    """Why no row of NEW has a partner in BASE: another machine, another backend profile or options, or
    other models/formats altogether."""
    for side, rows in (("BASE", base_rows), ("NEW", new_rows)):
        if not any(comparable_figure(r) for r in rows):
            kinds = sorted({str(r.get("kind")) for r in rows})
            return (f"{side} holds no speed or quality rows ({len(rows)} row(s) of kind {', '.join(kinds)}); bench or "
                    "eval into it first")
    if m.not_comparable:
        b, n = next(((b, n) for b, n in m.not_comparable if b is not None and n is not None),
                    m.not_comparable[0])
        bm = b.machine() if b else "?"
        nm = n.machine() if n else "?"
        return (f"BASE was measured on another device: {bm} against {nm} for NEW ({len(m.not_comparable)} "
                f"row(s) differ only by machine); compare against a baseline measured on this machine")
    loose = ("profile", "options_hash", "variant")
    drop = [KEY_NAMES.index(c) for c in loose]

    def loosen(k: Key) -> Key:
        return tuple(v for i, v in enumerate(k) if i not in drop)

    base_loose = {loosen(g.key): g for g in m.vanished}
    for g in m.new:
        b = base_loose.get(loosen(g.key))
        if b is not None:
            bd, nd = describe_key(b.key), describe_key(g.key)
            diff = ", ".join(f"{c} '{bd[c]}' against '{nd[c]}'" for c in loose if bd[c] != nd[c])
            return (f"BASE was measured with another backend profile or options ({diff}); compare runs of the "
                    "same --backend profile")
    models_b = sorted({describe_key(g.key)["model"] for g in m.vanished})
    models_n = sorted({describe_key(g.key)["model"] for g in m.new})
    return (f"BASE and NEW measured different things (BASE: {', '.join(models_b) or 'nothing comparable'}; NEW: "
            f"{', '.join(models_n) or 'nothing comparable'}): same model, lineage, format, backend, threads, batch "
            "and input shape are needed")
