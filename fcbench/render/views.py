"""Each built-in verb's result as the CLI shows it: ``view(result, fmt) -> [items]``, an item being a rich
renderable (printed on a terminal-width console) or text (printed as it is, for machines)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fcbench.render.rows import pivot_quality, pivot_table, render
from fcbench.ui import literal, plain


def _rows_view(rows: list[dict[str, Any]], fmt: str, title: str) -> list[Any]:
    return [render(rows, fmt, title=title)]


def plugins(result, fmt: str) -> list[Any]:
    if fmt == "json":
        return [json.dumps([i.to_dict() for i in result.plugins], indent=2, default=str) + "\n"]
    from rich.table import Table

    verbose = getattr(result, "verbose", False)
    table = Table(title="fcbench plugins")
    cols = ("kind", "name", "available", "provider", "takes (defaults)", "reason") if verbose else (
        "kind", "name", "available", "provider", "reason")
    for col in cols:
        table.add_column(col, overflow="fold")
    for i in result.plugins:
        cells = [plain(i.kind), plain(i.name), literal("yes") if i.available else literal("no", "red"),
                 plain(i.distribution)]
        if verbose:
            cells.append(literal(takes(i.details)))
        table.add_row(*cells, plain(i.reason))
    return [table]


def _value(v: Any) -> str:
    return "none" if v is None else v if isinstance(v, str) else json.dumps(v)


def takes(details: dict[str, Any]) -> str:
    """A plugin's details in one cell: ``embedding, input 112x112; options: width=1.0, ...``."""
    parts = []
    if "task" in details:
        h, w = details["input_size"]
        parts.append(f"{details['task']}, input {h}x{w}")
    for key in ("verb", "formats", "variants", "suffixes", "backend"):
        if details.get(key):
            v = details[key]
            parts.append(f"{key}: {', '.join(map(str, v)) if isinstance(v, list) else v}")
    if "options" in details:
        opts = details["options"]
        if "formats" in details:  # a backend's options are keys a profile sets, without defaults
            text = ", ".join(opts) or "none"
        else:
            text = ", ".join(f"{k}={_value(v)}" for k, v in opts.items()) or "none"
        parts.append(f"options: {text}" + (" (and any other)" if details.get("any_options") else ""))
    if "error" in details:
        parts.append(f"cannot say: {details['error']}")
    return "; ".join(parts)


def profile(result, fmt: str) -> list[Any]:
    info = {"model": result.model, "options": result.options, "input_size": result.input_size,
            "params": result.params, "macs": result.macs, "flops": result.flops}
    if fmt == "json":
        return [json.dumps(info, indent=2) + "\n"]
    h, w = result.input_size
    opts = ", ".join(f"{k}={_value(v)}" for k, v in result.options.items()) or "none"
    return [f"{result.model} at {h}x{w}: {result.params:,} params, {result.macs / 1e9:.3f} GMACs, "
            f"{result.flops / 1e9:.3f} GFLOPs (FLOPs = 2 x MACs)\n", f"options: {opts}\n"]


def train(result, fmt: str) -> list[Any]:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 speaks
        return []
    return [f"{result.checkpoint}\n"]


def report(rep, fmt: str) -> list[Any]:
    """One evaluation: every metric, beside the float parent's where there is one."""
    ref = rep.reference
    if fmt == "json":
        return [json.dumps({"checkpoint": rep.checkpoint, "model": rep.model, "dataset": rep.dataset,
                            "protocol": rep.protocol, "flip": rep.flip, "backend": rep.backend, **rep.trust,
                            "metrics": dict(rep.metrics), "pytorch": ref,
                            "delta": {k: v - ref[k] for k, v in rep.metrics if k in ref}}, indent=2) + "\n"]
    rows = [{"model": rep.model, "lineage": rep.lineage, "backend": rep.backend, **rep.trust, "dataset": rep.dataset,
             "protocol": rep.protocol + ("+flip" if rep.flip else ""), "metric": k, "value": v,
             **({"pytorch": ref[k], "delta": v - ref[k]} if k in ref else {})} for k, v in rep.metrics]
    return _rows_view(rows, fmt, f"eval {rep.checkpoint}" + (" (flip test)" if rep.flip else ""))


def video_eval(result, fmt: str) -> list[Any]:
    """``eval --video``: one line per mode (gate off, gate on) and what gating saved."""
    if fmt == "json":
        return [json.dumps(result.summary(), indent=2) + "\n"]
    c = result.comparison
    title = (f"eval --video {result.checkpoint} on {result.dataset} ({result.backend}): "
             f"{c.gated.skipped} of {c.gated.frames} frames skipped, "
             f"{c.ms_saved_per_frame:.2f} ms/frame saved ({100 * c.time_saved_fraction:.0f} %)")
    return _own_columns(result.table(), fmt, title, left=("gate",))


def _own_columns(rows: list[dict[str, Any]], fmt: str, title: str, left: tuple[str, ...]) -> list[Any]:
    """A table of the rows' own columns (not the results store's), ``left`` ones left-aligned."""
    if fmt == "csv":
        return _rows_view(rows, fmt, title)
    from fcbench.render.rows import _fmt
    from fcbench.ui import plain

    cols = list(rows[0])
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
        return ["\n".join(lines) + "\n"]
    from rich.table import Table

    table = Table(title=plain(title))
    for c in cols:
        table.add_column(plain(c), justify="left" if c in left else "right")
    for r in rows:
        table.add_row(*(plain(_fmt(r[c])) for c in cols))
    return [table]


def pipeline_eval(result, fmt: str) -> list[Any]:
    """``eval --pipeline``: the open-set metrics (or why they are n/a) and ms per frame by stage."""
    if fmt == "json":
        return [json.dumps(result.summary(), indent=2) + "\n"]
    if hasattr(result, "results"):  # one run per backend combination
        title = f"eval --pipeline: {len(result.results)} backend combinations, ms per frame by stage"
        items = _own_columns(result.table(), fmt, title, left=("detector", "embedder"))
        if fmt != "csv":
            items += [f"{n}\n" for n in result.notes]
        return items
    s = result.summary()
    head = ", ".join(f"{k} {v:.4f}" for k, v in s["metrics"].items() if k.split("@")[0] in ("dir", "fnmr"))
    title = (f"eval --pipeline ({result.backends}) on {result.probe}: {s['frames']} frames, {s['faces']} faces; "
             f"gallery {s['identities']} identities, {s['probes']} probes ({s['distractors']} distractors)"
             + (f"; {head}" if head else ""))
    items = _own_columns(result.table(), fmt, title, left=("stage", "runs in"))
    if fmt != "csv":
        items += [f"{k}: n/a: {why}\n" for k, why in s["unavailable"].items()]
    return items


def eval_result(result, fmt: str) -> list[Any]:
    if hasattr(result, "figures") or hasattr(result, "results"):  # eval --pipeline
        return pipeline_eval(result, fmt)
    if hasattr(result, "comparison"):  # eval --video
        return video_eval(result, fmt)
    if not result.matrix:
        return report(result.report, fmt)
    if fmt == "json":
        return [json.dumps(result.cells, indent=2) + "\n"]
    flip = "; flip test" if any(r.flip for r in result.reports) else ""
    return _rows_view(result.cells, fmt, f"eval matrix (headline metric{flip}; delta = value - float parent's)")


def convert(result, fmt: str) -> list[Any]:
    if result.checks:
        return _convert_checks(result.checks, fmt, result.checkpoint)
    if fmt == "json":
        return [json.dumps([{"format": o.format, "status": o.status, "file": str(o.file) if o.file else None,
                             "reason": o.reason, "parity": o.parity} for o in result.outcomes], indent=2) + "\n"]
    return [convert_table(result.outcomes, f"convert {result.checkpoint}")]


def convert_table(outcomes, title: str) -> Any:
    from rich.table import Table

    table = Table(title=plain(title))
    for col in ("format", "status", "file", "size MB", "max abs diff", "cosine", "reason"):
        table.add_column(col)
    for o in outcomes:
        p = o.parity
        size = f"{o.manifest.size / 1e6:.2f}" if o.manifest else ""
        table.add_row(plain(o.format), literal(o.status, "" if o.status == "ok" else "red"),
                      plain(o.file or ""), size,
                      f"{p['max_abs_diff']:.2e}" if "max_abs_diff" in p else "",
                      f"{p['cosine']:.6f}" if "cosine" in p else "", plain(o.reason))
    return table


def _convert_checks(checks, fmt: str, checkpoint: str) -> list[Any]:
    from fcbench.conversion.preflight import takers

    if fmt == "json":
        return [json.dumps([{**c.to_dict(), "blockers": [{**b.to_dict(), "taken_by": takers(checks, b.op)}
                                                         for b in c.blockers]} for c in checks], indent=2) + "\n"]
    from rich.table import Table

    table = Table(title=plain(f"convert --check {checkpoint} (nothing written)"))
    for col in ("format", "status", "op it will not take", "from module", "nodes", "formats that take it"):
        table.add_column(col, overflow="fold")
    for c in checks:
        status = literal(c.status, "red" if c.status == "blocked" else "")
        if not c.blockers:
            table.add_row(plain(c.format), status, plain(c.note), "", "", "")
        for i, b in enumerate(c.blockers):
            op = b.op + (f" (as {b.lowered})" if b.lowered else "")
            table.add_row(plain(c.format) if i == 0 else "", status if i == 0 else "", plain(op), plain(b.module),
                          str(b.count), plain(", ".join(takers(checks, b.op)) or "no checked format"))
    return [table]


def compress(result, fmt: str) -> list[Any]:
    if fmt == "json":
        return [json.dumps(result.to_dict(), indent=2, default=str) + "\n"]
    row = {"input": str(result.input), "output": str(result.output), "technique": result.technique,
           "lineage": result.lineage, "params_before": result.params_before, "params_after": result.params_after,
           "seconds": result.seconds}
    return _rows_view([row], "markdown" if fmt == "markdown" else fmt, f"compress {result.input}")


def prune(result, fmt: str) -> list[Any]:
    if fmt == "json":
        return [json.dumps(result.to_dict(), indent=2, default=str) + "\n"]
    from rich.table import Table

    t = result.technique
    size = "x".join(map(str, result.input_size))
    table = Table(title=plain(f"prune({t.technique}) {t.input} -> {t.output}"))
    for col in ("", "before", "after", "after/before"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("params", f"{t.params_before:,}", f"{t.params_after:,}", f"{result.params_ratio:.3f}")
    table.add_row(f"MACs at {size}", f"{result.macs_before:,}", f"{result.macs_after:,}", f"{result.macs_ratio:.3f}")
    if result.sparsity is not None:
        table.add_row("weight sparsity", "", f"{result.sparsity:.1%}", "")
    b = result.bench
    if b:
        ratio = "" if b.get("latency_ratio") is None else f"{b['latency_ratio']:.3f}"
        if ratio and b.get("latency_ratio_ci"):
            ratio += " [{:.3f}, {:.3f}]".format(*b["latency_ratio_ci"])
        table.add_row(plain(f"p50 ms, {b['backend']} ({b['format']})"), f"{b['p50_ms_before']:.3f}",
                      f"{b['p50_ms_after']:.3f}", ratio)
    for f in result.finetune:
        table.add_row(f"fine-tune round {f['round']}", "", f"{f['epochs']} epoch(s), loss {f['loss'][-1]:.3f}", "")
    why = (b or {}).get("why_not_faster") or []
    text = "".join(f"not faster on {b['backend']}: {plain(line)}\n" for line in why) + (
        result.note + "\n" if result.note else "")
    return [table, text] if text else [table]


def quantize(result, fmt: str) -> list[Any]:
    if fmt == "json":
        return [json.dumps(result.to_dict(), indent=2, default=str) + "\n"]
    from rich.table import Table

    table = Table(title=plain(f"quantize({result.method}) {result.input} -> {result.output}"))
    for col in ("", "value"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("size", f"{result.size_before / 1e6:.3f} MB -> {result.size_after / 1e6:.3f} MB "
                          f"({result.size_ratio:.2f}x)")
    fid = result.fidelity
    table.add_row(f"cosine to float parent ({fid['images']} images)",
                  f"mean {fid['cosine_mean']:.4f}, 1st pct {fid['cosine_p1']:.4f}, min {fid['cosine_min']:.4f}")
    if "top1_agreement" in fid:
        table.add_row("top-1 agreement", f"{fid['top1_agreement']:.1%}")
    table.add_row("ran in", plain(fid["backend"]))
    if result.calibration:
        cal = result.calibration
        table.add_row("calibration", plain(f"{cal['images']} of {cal['available']} images of {cal['source']}"))
    if result.kept_float:
        table.add_row("kept in float", plain(", ".join(result.kept_float)))
    if result.speed:
        sp = result.speed
        table.add_row(f"p50 on {sp['backend']} ({sp['threads']} thr)",
                      f"{sp['float_p50_ms']:.3f} ms -> {sp['p50_ms']:.3f} ms (speed-up {sp['speedup']:.2f}x)")
    q = result.manifest.extra.get("quantization", {}) if result.manifest is not None else {}
    ac = q.get("accuracy_control")
    if ac:  # the method's own accuracy control (openvino-ptq: NNCF's): what it measured and reverted
        before = "" if ac.get("quantized_before") is None else f", int8 {ac['quantized_before']:.4f}"
        table.add_row(plain(f"accuracy control ({ac['metric']}, {ac['images']} images)"),
                      plain(f"float {ac['float']:.4f}{before}, result {ac['final']:.4f}: {ac['drop']:+.2f} points "
                            f"below float (budget {ac['max_drop']:g}, {'met' if ac['met'] else 'NOT met'})"))
        table.add_row("reverted to float", plain(f"{ac['reverted']} of {q.get('quantizable', '?')} layers"
                                                 + (f": {', '.join(ac['reverted_layers'])}" if ac['reverted'] else "")))
    out: list[Any] = [table]
    out += [plain(n) + "\n" for n in result.notes]
    return out


def optimize(result, fmt: str) -> list[Any]:
    if fmt == "json":
        return [json.dumps(result.to_dict(), indent=2, default=str) + "\n"]
    from rich.table import Table

    table = Table(title=plain(f"optimize {result.checkpoint}: {result.metric} of the float parent "
                              f"{result.float_metric:.4f}, eager PyTorch {result.eager_p50_ms:.3f} ms "
                              f"({result.threads} threads, {result.cpu or 'CPU unknown'})"))
    for col in ("candidate", "backend", "p50 ms", "95% CI", "x eager", result.metric, "drop", "pareto", "note"):
        table.add_column(col, justify="left" if col in ("candidate", "backend", "note") else "right")
    order = sorted(result.candidates, key=lambda c: (c.status != "ok", c.p50_ms or 0))
    for c in order:
        mark = "chosen" if c is result.chosen else ("closest" if c is result.closest else "")
        if c.status != "ok":
            table.add_row(plain(c.name), plain(c.backend), "", "", "", "", "", "", plain(f"{c.status}: {c.reason}"))
            continue
        table.add_row(plain(c.name), plain(c.backend), f"{c.p50_ms:.3f}", f"±{c.ci_ms:.3f}",
                      f"{c.speedup_vs_eager:.1f}", f"{c.metric:.4f}", f"{c.drop:+.2f}", "*" if c.pareto else "",
                      mark)
    out: list[Any] = [table]
    if result.chosen:
        c = result.chosen
        line = (f"chosen: {c.name} on {c.backend}: {c.p50_ms:.3f} ms, {c.speedup_vs_eager:.1f}x eager PyTorch")
        if result.fastest_uncompressed:
            f = result.fastest_uncompressed
            line += f", {f.p50_ms / c.p50_ms:.2f}x the fastest uncompressed ({f.name} on {f.backend})"
        out.append(plain(f"{line}; {c.drop:+.2f} points (budget {result.max_drop:g}): {c.artifact}\n"))
    elif result.closest:
        c = result.closest
        out.append(plain(f"no candidate within {result.max_drop:g} points; closest: {c.name} on {c.backend} at "
                         f"{c.drop:.2f} points ({c.drop - result.max_drop:.2f} over), {c.p50_ms:.3f} ms\n"))
    out.append(plain(f"searched {len(result.candidates)} candidates in {result.seconds:.0f} s\n"))
    return out


def bench(result, fmt: str) -> list[Any]:
    from fcbench.render.bench import cells_table

    return [cells_table(list(result), fmt)]


def inspect(result, fmt: str) -> list[Any]:
    summary = {"artifact": result.artifact, "backend": result.backend, "nodes": len(result.nodes),
               "placement": result.placement, "precision": result.precision}
    if fmt == "json":
        return [json.dumps({**summary, "per_node": [r.to_dict() for r in result.nodes]}, indent=2) + "\n"]
    from rich.table import Table

    table = Table(title=plain(f"{Path(result.artifact).name} on {result.backend}: {len(result.nodes)} nodes, "
                              f"{result.placement}, precision {result.precision}"))
    for col in ("node", "op type", "placement", "precision"):
        table.add_column(col, overflow="fold")
    for r in result.nodes:
        table.add_row(plain(r.node), plain(r.op_type), plain(r.placement), plain(r.precision))
    return [table]


def results(result, fmt: str) -> list[Any]:
    rows = result.rows
    quality = [r for r in rows if r["kind"] == "quality"]
    if result.pivot and quality and fmt == "table":  # one line per evaluated artifact, a column per figure
        return [pivot_table(pivot_quality(quality), result.title)]
    if result.pivot:
        rows = [r for r in rows if r["kind"] != "train"] or rows
    return _rows_view(rows, fmt, result.title)


def recipe(result, fmt: str) -> list[Any]:
    return []  # each step is shown as it finishes; the closing line goes to the log


def devices(result, fmt: str) -> list[Any]:
    """``fcbench devices list`` (the inventory) and ``check`` (one table per device, then its backends)."""
    if fmt == "json":
        body = result.devices if result.action == "list" else result.checks
        return [json.dumps(body, indent=2, default=str) + "\n"]
    from rich.table import Table

    if result.action == "list":
        table = Table(title="devices (./devices/NAME.toml overrides the built-in examples)")
        for col in ("name", "driver", "where", "from", "description", "backends"):
            table.add_column(col, overflow="fold")
        for d in result.devices:
            table.add_row(plain(d["name"]), plain(d["driver"]), plain(d["where"]),
                          plain("example" if d["origin"] == "builtin" else d["profile"]), plain(d["description"]),
                          plain(", ".join(d["backends"])))
        return [table]
    out: list[Any] = []
    for c in result.checks:
        table = Table(title=f"device {c['name']} ({c['driver']}, {c['where']})", show_header=False)
        table.add_column("what")
        table.add_column("value", overflow="fold")
        if not c.get("reachable"):
            table.add_row("reachable", literal("no", "red"))
            table.add_row("why", plain(c["reason"]))
            out.append(table)
            continue
        info = c["info"]
        table.add_row("reachable", literal("yes"))
        for key, label in (("model", "model"), ("soc", "SoC"), ("hostname", "hostname"), ("arch", "arch"),
                           ("abi", "ABI"), ("os", "OS"), ("cpu", "CPU")):
            if info.get(key):
                table.add_row(label, plain(str(info[key])))
        table.add_row("cores", plain(c["cores"]))
        for key, label, unit in (("governor", "governor", ""), ("temperature_c", "temperature", " C")):
            if info.get(key) is not None:
                table.add_row(label, plain(f"{info[key]}{unit}"))
        battery = info.get("battery") or {}
        if battery:
            parts = [f"{battery['level']} %" if "level" in battery else "",
                     f"{battery['temperature_c']} C" if "temperature_c" in battery else "",
                     "charging" if battery.get("charging") else ""]
            table.add_row("battery", plain(", ".join(p for p in parts if p)))
        if info.get("emulated"):
            table.add_row("emulated", plain(f"{info['emulated']} (its times mean nothing)"))
        if info.get("fingerprint"):
            table.add_row("fingerprint", plain(info["fingerprint"]))
        for tool, where in (c.get("tools") or {}).items():
            table.add_row(f"tool {tool}", plain(str(where)))
        for p in c.get("problems", []):
            table.add_row(literal("problem", "red"), plain(p))
        out.append(table)
        if c.get("backends"):
            bt = Table(title=f"backends on {c['name']}")
            for col in ("backend", "runs", "version", "why not"):
                bt.add_column(col, overflow="fold")
            for b in c["backends"]:
                versions = ", ".join(f"{k} {v}" for k, v in b["versions"].items())
                bt.add_row(plain(b["backend"]), literal("yes") if b["runs"] else literal("no", "red"),
                           plain(versions), plain(b["reason"]))
            out.append(bt)
    return out


def compare(result, fmt: str) -> list[Any]:
    from fcbench.compare.render import view

    return view(result, fmt)


def report_page(result, fmt: str) -> list[Any]:
    """``fcbench report``: the page's path (stdout is data), or with --format json what it holds."""
    if fmt == "json":
        return [json.dumps({"path": result.path, "runs": result.runs, "counts": result.counts,
                            "compare": result.compare}, indent=2) + "\n"]
    return [f"{result.path}\n"]
