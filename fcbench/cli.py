"""The fcbench command line: each verb parses, calls the library, prints.

Heavy imports (torch, runtimes) happen inside the verbs, so ``fcbench --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from fcbench.errors import FcbenchError

app = typer.Typer(
    name="fcbench",
    help="Compress vision models, convert them to edge runtimes, and measure latency and accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

StoreOpt = typer.Option(None, "--store", help="Results store (SQLite file). Default: results/fcbench.sqlite")


def _out():
    from fcbench.ui import stdout_console

    return stdout_console()


def _err():
    from fcbench.ui import stderr_console

    return stderr_console()


def parse_kv(items: list[str] | None, what: str) -> dict[str, Any]:
    """['width=0.25', 'layers=[1,1,1,1]'] -> {'width': 0.25, 'layers': [1, 1, 1, 1]} (values read as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FcbenchError(f"{what} '{item}' is not KEY=VALUE (e.g. {what} width=0.25)")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise FcbenchError(f"{what} '{item}': value is not valid YAML ({exc})") from exc
    return out


def _parse_ints(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise FcbenchError(f"{what} '{text}' must be comma-separated integers, e.g. 8,14,20") from exc


def _parse_shape(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        shape = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError as exc:
        raise FcbenchError(f"--input-shape '{text}' must be like 1x3x112x112") from exc
    if len(shape) != 4 or min(shape) < 1:
        raise FcbenchError(f"--input-shape '{text}' must be 4 positive sizes, like 1x3x112x112")
    return shape


def _artifacts_only(paths: list[str]) -> list[str]:
    """The artifacts of a file list such as ``run/model.*``, leaving out (and saying so) the manifests and
    companion files (OpenVINO's .bin) of listed artifacts."""
    from fcbench.artifact import owned_files

    keep, dropped = owned_files(paths)
    if dropped:
        names = ", ".join(Path(p).name for p, _ in dropped)
        _err().log(f"left out {len(dropped)} file(s) that belong to listed artifacts (manifests, companion "
                   f"files): {names}")
    return keep


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        raise FcbenchError(f"--format must be one of {', '.join(allowed)}, got '{fmt}'")


@app.command()
def plugins(
    kind: str | None = typer.Option(None, "--kind", help="model, dataset, technique, backend or device"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """List installed plugins (built-in and third-party alike) and whether each can be used."""
    import json

    from fcbench.plugins import describe

    _check_format(fmt, ("table", "json"))
    infos = describe(kind)
    if fmt == "json":
        typer.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    from rich.table import Table

    table = Table(title="fcbench plugins")
    for col in ("kind", "name", "available", "provider", "reason"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.kind, i.name, "yes" if i.available else "[red]no[/red]", i.distribution, i.reason)
    _out().print(table)


@app.command()
def profile(
    model: str = typer.Argument(..., help="Model name, e.g. r18, mbf, resnet18"),
    option: list[str] = typer.Option(None, "-o", "--model-opt", help="Model option KEY=VALUE (repeatable)"),
    input_size: str | None = typer.Option(None, "--input-size", help="H or HxW; default: the model's own"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """Params, MACs and FLOPs (= 2 x MACs) of a model at an input size."""
    import json

    from fcbench.models import create
    from fcbench.models import profile as profile_model

    _check_format(fmt, ("table", "json"))
    opts = parse_kv(option, "-o")
    size = None
    if input_size:
        try:
            parts = [int(p) for p in input_size.lower().split("x")]
        except ValueError as exc:
            raise FcbenchError(f"--input-size '{input_size}' must be H or HxW, e.g. 112 or 112x96") from exc
        size = (parts[0], parts[-1])
        opts.setdefault("input_size", list(size))
    m = create(model, **opts)
    size = size or tuple(m.input_size)
    prof = profile_model(m, input_size=size)
    info = {"model": model, "options": m.fcbench_options, "input_size": list(size), **prof}
    if fmt == "json":
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{model} at {size[0]}x{size[1]}: {prof['params']:,} params, "
               f"{prof['macs'] / 1e9:.3f} GMACs, {prof['flops'] / 1e9:.3f} GFLOPs (FLOPs = 2 x MACs)")


@app.command()
def train(
    model: str = typer.Option("r18", "--model", help="Model name (fcbench plugins --kind model)"),
    model_opt: list[str] = typer.Option(None, "-o", "--model-opt", help="Model option KEY=VALUE, e.g. width=0.25"),
    weights: str | None = typer.Option(None, "--weights", help="Start from these weights"),
    head: str = typer.Option("arcface", "--head", help="arcface, cosface or softmax (face models)"),
    head_opt: list[str] = typer.Option(None, "--head-opt", help="Head option KEY=VALUE, e.g. s=64 m=0.5"),
    data: str = typer.Option("synthetic:faces", "--data", help="Dataset: synthetic[:kind], NAME:PATH or a path"),
    data_opt: list[str] = typer.Option(None, "--data-opt", help="Dataset option KEY=VALUE"),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(0.1, "--lr"),
    head_lr: float | None = typer.Option(None, "--head-lr", help="Head optimizer lr (default: --lr)"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd or adamw"),
    momentum: float = typer.Option(0.9, "--momentum"),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    schedule: str = typer.Option("step", "--schedule", help="step, cosine or constant"),
    milestones: str | None = typer.Option(None, "--milestones", help="Epochs of x gamma steps, e.g. 8,14,20,25"),
    gamma: float = typer.Option(0.1, "--gamma"),
    warmup_epochs: float = typer.Option(0.0, "--warmup-epochs"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many steps"),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes"),
    seed: int = typer.Option(0, "--seed"),
    out: str = typer.Option("runs/train", "--out", help="Output folder for checkpoints"),
    resume: str | None = typer.Option(None, "--resume", help="'auto' (latest epoch in --out) or a checkpoint"),
    amp: str = typer.Option("auto", "--amp", help="auto (on with CUDA), on, off"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
    threads: int | None = typer.Option(None, "--threads"),
    store: str | None = StoreOpt,
) -> None:
    """Train a model (single process, or DDP under torchrun). Writes OUT/model.pt + manifest."""
    from fcbench.train.config import TrainConfig
    from fcbench.train.loop import train as run_train

    cfg = TrainConfig(
        model=model, model_options=parse_kv(model_opt, "-o"), weights=weights, head=head,
        head_options=parse_kv(head_opt, "--head-opt"), data=data, data_options=parse_kv(data_opt, "--data-opt"),
        epochs=epochs, batch_size=batch_size, lr=lr, head_lr=head_lr, optimizer=optimizer, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, milestones=_parse_ints(milestones, "--milestones"),
        gamma=gamma, warmup_epochs=warmup_epochs, max_steps=max_steps, workers=workers, seed=seed, out=out,
        resume=resume, amp=amp, device=device, threads=threads, store=store,
    )
    final = run_train(cfg)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(str(final))


def _print_report(report, fmt: str) -> None:
    import json

    ref = report.reference
    if fmt == "json":
        typer.echo(json.dumps({"checkpoint": report.checkpoint, "model": report.model, "dataset": report.dataset,
                               "protocol": report.protocol, "backend": report.backend, **report.trust,
                               "metrics": dict(report.metrics), "pytorch": ref,
                               "delta": {k: v - ref[k] for k, v in report.metrics if k in ref}}, indent=2))
        return
    rows = [{"model": report.model, "lineage": report.lineage, "backend": report.backend, **report.trust,
             "dataset": report.dataset,
             "protocol": report.protocol, "metric": k, "value": v,
             **({"pytorch": ref[k], "delta": v - ref[k]} if k in ref else {})} for k, v in report.metrics]
    from fcbench.results.render import render

    out = render(rows, fmt, title=f"eval {report.checkpoint}")
    _out().print(out) if fmt == "table" else typer.echo(out, nl=False)


@app.command("eval")
def eval_(
    checkpoints: list[str] = typer.Argument(..., help="fcbench checkpoint (.pt), a plain state_dict with --model, or "
                                                      "converted artifacts (.onnx .tflite .xml .ptl .pte)"),
    model: str | None = typer.Option(None, "--model", help="Architecture of a plain state_dict"),
    model_opt: list[str] = typer.Option(None, "-o", "--model-opt", help="Model option KEY=VALUE (with --model)"),
    data: str = typer.Option("synthetic:pairs", "--data", help="Dataset: synthetic[:kind], NAME:PATH or a path"),
    data_opt: list[str] = typer.Option(None, "--data-opt", help="Dataset option KEY=VALUE"),
    protocol: str = typer.Option("auto", "--protocol", help="auto, verification, classification, identification"),
    batch_size: int = typer.Option(64, "--batch-size"),
    nfolds: int = typer.Option(10, "--nfolds", help="Folds of the verification protocol"),
    workers: int = typer.Option(0, "--workers"),
    threads: int | None = typer.Option(None, "--threads"),
    store: str | None = StoreOpt,
    backend: str | None = typer.Option(None, "--backend",
                                       help="Runtime(s) for artifacts, comma-separated (profiles or plugin:variant); "
                                            "default: each format's own (onnxruntime:cpu, tflite:xnnpack, ...)"),
    infer_manifest: bool = typer.Option(False, "--infer-manifest", help="Artifact without a manifest: infer one"),
    max_drop: float | None = typer.Option(None, "--max-drop",
                                          help="Fail (exit 1) when the headline metric (accuracy, top-1, rank-1) "
                                               "is more than this many percentage points below the float parent's"),
    roc: str | None = typer.Option(None, "--roc", help="Verification: write the whole ROC (far,tar,threshold) "
                                                       "to this CSV file"),
    fmt: str = typer.Option("table", "--format", help="table, json, csv or markdown"),
) -> None:
    """Measure quality on a dataset, in PyTorch or through runtimes; rows go to the results store.

    One artifact and one backend: every metric. Several (artifacts x backends): a matrix of the
    headline metric beside the float parent's, one cell each; a cell that fails says why and the
    matrix goes on.
    """
    from fcbench.evaluate import EvalConfig, is_artifact

    _check_format(fmt, ("table", "json", "csv", "markdown"))
    if max_drop is not None and max_drop < 0:
        raise FcbenchError(f"--max-drop must be >= 0 percentage points, got {max_drop}")
    checkpoints = _artifacts_only(list(checkpoints))
    for c in checkpoints:
        if max_drop is not None and not is_artifact(c):
            raise FcbenchError(f"--max-drop compares a converted artifact with its float parent; {c} is a "
                               "PyTorch checkpoint")
    backends = [b.strip() for b in backend.split(",") if b.strip()] if backend else [None]
    base = EvalConfig(model=model, model_options=parse_kv(model_opt, "-o"), data=data,
                      data_options=parse_kv(data_opt, "--data-opt"), protocol=protocol, batch_size=batch_size,
                      nfolds=nfolds, workers=workers, threads=threads, store=store, infer_manifest=infer_manifest)
    if roc is not None and (len(checkpoints) != 1 or len(backends) != 1):
        raise FcbenchError("--roc writes one curve: give one artifact and one backend")
    if roc is not None and protocol not in ("auto", "verification"):
        raise FcbenchError(f"--roc needs the verification protocol (pairs); --protocol is {protocol}")
    if roc is not None and not Path(roc).parent.exists():
        raise FcbenchError(f"--roc: folder {Path(roc).parent} does not exist")
    if len(checkpoints) == 1 and len(backends) == 1:
        _eval_one(base, checkpoints[0], backends[0], max_drop, fmt, roc)
    else:
        _eval_matrix(base, checkpoints, backends, max_drop, fmt)


def _eval_one(base, checkpoint: str, backend: str | None, max_drop: float | None, fmt: str,
              roc: str | None = None) -> None:
    from dataclasses import replace

    from fcbench.evaluate import evaluate
    from fcbench.metrics.verification import write_roc_csv

    report = evaluate(replace(base, checkpoint=checkpoint, backend=backend))
    for note in report.notes:
        _err().log(f"{Path(report.checkpoint).name}: {note}")
    if roc is not None:
        if report.protocol != "verification":
            raise FcbenchError(f"--roc needs a verification set (pairs); {base.data} was evaluated as "
                               f"{report.protocol} (its rows are stored)")
        _err().log(f"ROC ({len(report.details.fpr)} points) written to {write_roc_csv(report.details, roc)}")
    _print_report(report, fmt)
    if max_drop is not None:
        failed, verdict = _drop_verdict(report, max_drop)
        _err().log(("[red]FAIL[/red]: " if failed else "ok: ") + verdict)
        if failed:
            raise typer.Exit(1)


def _drop_verdict(report, max_drop: float) -> tuple[bool, str]:
    from fcbench.evaluate import headline_drop

    metric, drop = headline_drop(report)
    if drop is None:
        raise FcbenchError(f"--max-drop needs the artifact's float parent to compare with: "
                           f"{'; '.join(report.notes) or 'none found'}")
    return drop > max_drop, f"{metric} {drop:+.2f} points below the float parent (budget {max_drop:g})"


def _eval_matrix(base, checkpoints: list[str], backends: list[str | None], max_drop: float | None,
                 fmt: str) -> None:
    import json
    from dataclasses import replace

    from fcbench.errors import NotApplicable
    from fcbench.evaluate import HEADLINE, evaluate, headline_drop, is_artifact
    from fcbench.results.context import RunContext
    from fcbench.results.render import short_names

    ctx, err, cells, failed = RunContext(), _err(), [], False
    names = short_names(checkpoints)
    for c in checkpoints:
        for b in backends if is_artifact(c) else [None]:
            cell = {"artifact": names[c], "backend": b or "default"}
            try:
                report = evaluate(replace(base, checkpoint=c, backend=b), ctx)
            except FcbenchError as exc:
                if isinstance(exc, NotApplicable):
                    cell.update(status="skipped", reason=str(exc))
                else:
                    cell.update(status="failed", reason=str(exc))
                    failed = True
                err.log(f"{cell['artifact']} on {cell['backend']}: {cell['status']}: {exc}")
                cells.append(cell)
                continue
            metric = HEADLINE[report.protocol]
            value = dict(report.metrics)[metric]
            cell.update(backend=report.backend, status="ok", metric=metric, value=value,
                        pytorch=report.reference.get(metric), **report.trust)
            _, drop = headline_drop(report)
            cell["delta"] = None if drop is None else -drop / 100.0
            if max_drop is not None:
                if drop is None:
                    cell.update(status="failed", reason="no float parent to compare with: " + "; ".join(report.notes))
                    failed = True
                elif drop > max_drop:
                    cell.update(status="failed", reason=f"{drop:.2f} points below the float parent "
                                                          f"(budget {max_drop:g})")
                    failed = True
            cells.append(cell)
    if fmt == "json":
        typer.echo(json.dumps(cells, indent=2))
    else:
        _show_rows(cells, fmt, title="eval matrix (headline metric; delta = value - float parent's)")
    if failed:
        raise typer.Exit(1)


def _show_rows(rows: list[dict], fmt: str, title: str) -> None:
    from fcbench.results.render import render

    out = render(rows, fmt, title=title)
    if fmt == "table":
        _out().print(out)
    else:
        typer.echo(out, nl=False)


def _pivot_table(rows: list[dict[str, Any]], title: str):
    from rich.table import Table

    from fcbench.results.render import _fmt, constant_columns

    cols = list(dict.fromkeys(k for r in rows for k in r))
    same = constant_columns(rows, cols)
    keep = [c for c in cols if c not in same or c in ("lineage",)]
    sub = ", ".join(f"{k}={_fmt(v)}" for k, v in same.items() if k not in keep)
    table = Table(title=title + (f"\n{sub}" if sub else ""))
    for c in keep:
        table.add_column(c, justify="left" if c in ("model", "lineage", "artifact", "backend", "dataset") else "right")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in keep))
    return table


@app.command()
def results(
    store: str | None = StoreOpt,
    run: str | None = typer.Option(None, "--run", help="A run id, or 'last'"),
    kind: str | None = typer.Option(None, "--kind", help="speed, quality or train"),
    model: str | None = typer.Option(None, "--model"),
    metric: str | None = typer.Option(None, "--metric"),
    limit: int | None = typer.Option(None, "--limit", help="Only the newest N rows"),
    fmt: str = typer.Option("table", "--format", help="table, csv, json or markdown"),
) -> None:
    """Show rows of the results store."""
    from fcbench.results.render import FORMATS
    from fcbench.results.store import DEFAULT_STORE, Store

    _check_format(fmt, FORMATS)
    path = Path(store) if store else DEFAULT_STORE
    if not path.exists():
        raise FcbenchError(f"results store {path} does not exist yet; run a verb first or pass --store")
    with Store(path) as s:
        rows = s.query(run_id=None if run == "last" else run, last_run=run == "last", kind=kind, model=model,
                       metric=metric, limit=limit)
    _show_rows(rows, fmt, title=f"results in {path}")


@app.command()
def run(
    recipe: str = typer.Argument(..., help="Recipe YAML, e.g. recipes/quickstart.yaml"),
    set_: list[str] = typer.Option(None, "--set", help="Override a recipe variable KEY=VALUE"),
    check: bool = typer.Option(False, "--check", help="Validate the recipe and stop"),
) -> None:
    """Run a recipe: a sequence of verbs with shared options."""
    import time

    from fcbench.recipes import load_recipe, run_recipe

    rec = load_recipe(recipe, parse_kv(set_, "--set"))
    err = _err()
    if check:
        err.print(f"{recipe}: {len(rec.steps)} steps, valid")
        return
    t0 = time.perf_counter()
    failed: list[str] = []

    def on_step(i: int, verb: str, cfg: Any, result: Any) -> None:
        err.log(f"step {i}/{len(rec.steps)} {verb} done ({time.perf_counter() - t0:.0f} s)")
        if verb == "eval":
            _print_report(result, "table")
        elif verb == "convert":
            _out().print(_convert_table(result, f"step {i}: convert {cfg.checkpoint}"))
            failed.extend(f"step {i} convert {o.format}: {o.status}" for o in result
                          if o.status in ("failed", "parity-failed"))
        elif verb == "bench":
            from fcbench.bench.table import cells_table

            _out().print(cells_table(result, "table"))
            failed.extend(f"step {i} bench {Path(c.artifact).name} on {c.backend}: failed" for c in result
                          if c.status == "failed")
        elif verb == "results":
            from fcbench.results.store import DEFAULT_STORE, Store

            with Store(cfg.store or DEFAULT_STORE) as s:
                rows = s.query() if cfg.all_runs else s.query(run_id=result.run_id)
            quality = [r for r in rows if r["kind"] == "quality"]
            if quality and cfg.format == "table":  # one line per evaluated artifact, a column per figure
                from fcbench.results.render import pivot_quality

                _out().print(_pivot_table(pivot_quality(quality), f"{rec.name}: run {result.run_id}"))
            else:
                rows = [r for r in rows if r["kind"] != "train"] or rows
                _show_rows(rows, cfg.format, title=f"{rec.name}: run {result.run_id}")

    run_id = run_recipe(rec, on_step)
    err.log(f"recipe {rec.name} finished in {time.perf_counter() - t0:.0f} s; run id {run_id}")
    if failed:
        err.log(f"[red]{len(failed)} failed[/red]: " + "; ".join(failed))
        raise typer.Exit(1)


@app.command()
def convert(
    checkpoint: str = typer.Argument(..., help="fcbench checkpoint (.pt with its manifest), or a Keras model "
                                              "(.keras, .h5, SavedModel folder) for --to tflite"),
    to: str = typer.Option(..., "--to", help="Formats, comma-separated: onnx,tflite,openvino,ptl,pte or all"),
    out: str | None = typer.Option(None, "--out", help="Output folder (default: beside the checkpoint)"),
    opt: list[str] = typer.Option(None, "--opt", help="Exporter option FORMAT.KEY=VALUE, e.g. onnx.opset=17, "
                                                      "tflite.optimize=latency (Keras)"),
    preprocessing: str | None = typer.Option(None, "--preprocessing",
                                             help="Keras models: face, imagenet or cifar (default: by input size)"),
    check: bool = typer.Option(False, "--check", help="Write nothing: list, per format, every op it will not "
                                                      "take, with where it comes from in the model"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """Export a checkpoint to edge formats, each with a manifest and a parity check against PyTorch."""
    import json

    from fcbench.convert import convert as run_convert
    from fcbench.convert import convert_keras_source, is_keras_source, parse_formats

    _check_format(fmt, ("table", "json"))
    formats = parse_formats(to)
    per_format: dict[str, dict[str, Any]] = {}
    for key, value in parse_kv(opt, "--opt").items():
        f, dot, k = key.partition(".")
        if not dot or f not in formats:
            raise FcbenchError(f"--opt {key}: write FORMAT.KEY=VALUE with FORMAT one of {', '.join(formats)}")
        per_format.setdefault(f, {})[k] = value
    err = _err()
    if check:
        _convert_check(checkpoint, formats, fmt)
        return
    if is_keras_source(checkpoint):
        outcome, assumed = convert_keras_source(checkpoint, formats, out, per_format, preprocessing)
        if assumed:
            err.log(f"{Path(checkpoint).name}: assumed " + "; ".join(assumed))
        err.log(f"{outcome.format}: {outcome.status} {outcome.reason}".rstrip())
        outcomes = [outcome]
    else:
        if preprocessing:
            raise FcbenchError("--preprocessing is for Keras models; an fcbench checkpoint records its own")
        outcomes = run_convert(checkpoint, formats, out, per_format,
                               on_outcome=lambda o: err.log(f"{o.format}: {o.status} {o.reason}".rstrip()))
    if fmt == "json":
        typer.echo(json.dumps([{"format": o.format, "status": o.status, "file": str(o.file) if o.file else None,
                                "reason": o.reason, "parity": o.parity} for o in outcomes], indent=2))
    else:
        _out().print(_convert_table(outcomes, f"convert {checkpoint}"))
    if any(o.status in ("failed", "parity-failed") for o in outcomes):
        raise typer.Exit(1)


def _convert_table(outcomes, title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("format", "status", "file", "size MB", "max abs diff", "cosine", "reason"):
        table.add_column(col)
    for o in outcomes:
        p = o.parity
        size = f"{o.manifest.size / 1e6:.2f}" if o.manifest else ""
        table.add_row(o.format, o.status if o.status == "ok" else f"[red]{o.status}[/red]",
                      str(o.file or ""), size,
                      f"{p['max_abs_diff']:.2e}" if "max_abs_diff" in p else "",
                      f"{p['cosine']:.6f}" if "cosine" in p else "", o.reason)
    return table


def _convert_check(checkpoint: str, formats: list[str], fmt: str) -> None:
    import json

    from fcbench.convert import check_checkpoint
    from fcbench.convert.preflight import takers

    checks = check_checkpoint(checkpoint, formats)
    if fmt == "json":
        typer.echo(json.dumps([{**c.to_dict(), "blockers": [{**b.to_dict(), "taken_by": takers(checks, b.op)}
                                                            for b in c.blockers]} for c in checks], indent=2))
    else:
        from rich.table import Table

        table = Table(title=f"convert --check {checkpoint} (nothing written)")
        for col in ("format", "status", "op it will not take", "from module", "nodes", "formats that take it"):
            table.add_column(col, overflow="fold")
        for c in checks:
            status = {"ok": "ok", "blocked": "[red]blocked[/red]"}.get(c.status, c.status)
            if not c.blockers:
                table.add_row(c.format, status, c.note, "", "", "")
            for i, b in enumerate(c.blockers):
                op = b.op + (f" (as {b.lowered})" if b.lowered else "")
                table.add_row(c.format if i == 0 else "", status if i == 0 else "", op, b.module, str(b.count),
                              ", ".join(takers(checks, b.op)) or "no checked format")
        _out().print(table)
    if any(c.status == "blocked" for c in checks):
        raise typer.Exit(1)


@app.command()
def bench(
    artifacts: list[str] = typer.Argument(..., help="Artifacts (files with a manifest), e.g. out/model.onnx"),
    backend: str = typer.Option("all", "--backend", help="Comma-separated profiles, plugin:variant, or all"),
    threads: int | None = typer.Option(None, "--threads", help="Threads per runtime (default: all cores)"),
    warmup: int = typer.Option(10, "--warmup", help="Untimed queries before timing"),
    runs: int = typer.Option(50, "--runs", help="Minimum timed queries"),
    min_seconds: float = typer.Option(1.0, "--min-seconds", help="Minimum timed duration"),
    max_seconds: float | None = typer.Option(None, "--max-seconds", help="Stop once runs are met and this passed"),
    batch: int = typer.Option(1, "--batch"),
    infer_manifest: bool = typer.Option(False, "--infer-manifest",
                                        help="Artifacts without a manifest: infer one from the file, print what "
                                             "was assumed"),
    preprocessing: str | None = typer.Option(None, "--preprocessing",
                                             help="With --infer-manifest: face, imagenet or cifar"),
    input_shape: str | None = typer.Option(None, "--input-shape",
                                           help="With --infer-manifest: e.g. 1x3x112x112 (for .ptl/.pte)"),
    precision: str | None = typer.Option(None, "--precision",
                                         help="Ask each runtime for f32, bf16, f16 or int8; one that cannot "
                                              "honour it is skipped, saying what it can"),
    pipeline: bool = typer.Option(False, "--pipeline",
                                  help="Also time what an app sees per image: read, decode, preprocess, infer, "
                                       "postprocess (needs --images)"),
    images: str | None = typer.Option(None, "--images", help="Folder of JPEG/PNG images for --pipeline"),
    require_placement: float | None = typer.Option(
        None, "--require-placement", help="Fail a cell whose requested device/delegate ran less than this "
                                          "fraction of the nodes (0..1), naming the first that fell back"),
    in_process: bool = typer.Option(False, "--in-process", help="Time in this process, not in a worker subprocess"),
    store: str | None = StoreOpt,
    fmt: str = typer.Option("table", "--format", help="table, json, csv or markdown"),
) -> None:
    """Time artifacts through backends (single-stream); one row per cell, streamed into the store."""
    from fcbench.bench.run import BenchConfig, normalize_precision
    from fcbench.bench.run import bench as run_bench
    from fcbench.bench.table import cells_table

    _check_format(fmt, ("table", "json", "csv", "markdown"))
    cfg = BenchConfig(artifacts=_artifacts_only(list(artifacts)),
                      backends=[b.strip() for b in backend.split(",") if b.strip()],
                      threads=threads, warmup=warmup, runs=runs, min_seconds=min_seconds, max_seconds=max_seconds,
                      batch=batch, store=store, infer_manifest=infer_manifest, preprocessing=preprocessing,
                      input_shape=_parse_shape(input_shape), require_placement=require_placement,
                      precision=normalize_precision(precision), pipeline=pipeline, images=images)
    cfg.isolation = "inprocess" if in_process else cfg.isolation
    err = _err()

    def on_cell(c) -> None:
        if c.status == "ok":
            err.log(f"{c.backend} {Path(c.artifact).name}: p50 {c.stats.p50_ms:.3f} ms")
        else:
            err.log(f"{c.backend} {Path(c.artifact).name}: {c.status}: {c.reason}")

    def on_assumed(path: Path, assumed: list[str]) -> None:
        err.log(f"{path.name}: no manifest; assumed " + "; ".join(assumed))

    unreadable: list[Path] = []

    def on_unreadable(path: Path, why: str) -> None:
        unreadable.append(path)
        err.log(f"--images: {path} cannot be decoded ({why}); going on without it")

    cells = run_bench(cfg, on_cell=on_cell, on_assumed=on_assumed, on_unreadable=on_unreadable)
    if unreadable:
        err.log(f"--images: {len(unreadable)} unreadable image(s) left out")
    out = cells_table(cells, fmt)
    _out().print(out) if fmt == "table" else typer.echo(out, nl=False)
    if any(c.status == "failed" for c in cells):
        raise typer.Exit(1)


@app.command()
def inspect(
    artifact: str = typer.Argument(..., help="An artifact (with its manifest, or --infer-manifest)"),
    backend: str = typer.Option(..., "--backend", help="A profile or plugin:variant, e.g. tflite:xnnpack"),
    threads: int | None = typer.Option(None, "--threads"),
    infer_manifest: bool = typer.Option(False, "--infer-manifest", help="Infer a missing manifest from the file"),
    fmt: str = typer.Option("table", "--format", help="table or json"),
) -> None:
    """Where each node of a model runs on a backend, and in which precision, as the runtime reports it."""
    import json

    from fcbench.backends import expand, get_backend
    from fcbench.bench.placement import placement_summary, precision_summary
    from fcbench.bench.run import BenchConfig, load_artifact

    _check_format(fmt, ("table", "json"))
    err = _err()
    path, manifest = load_artifact(artifact, BenchConfig(artifacts=[artifact], infer_manifest=infer_manifest),
                                   lambda p, a: err.log(f"{p.name}: no manifest; assumed " + "; ".join(a)))
    (spec,) = expand([backend])
    plugin = get_backend(spec.plugin)
    ok, reason = plugin.can_run(path, manifest, spec.variant)
    if not ok:
        raise FcbenchError(f"inspect: {spec.label} cannot run {path.name}: {reason}")
    if manifest.format not in plugin.formats:
        raise FcbenchError(f"inspect: {spec.plugin} does not load {manifest.format} (it loads "
                           f"{', '.join(plugin.formats)})")
    session = plugin.load(path, manifest, spec.variant, threads, dict(spec.options))
    try:
        rows = session.placement()
    finally:
        session.close()
    summary = {"artifact": str(path), "backend": spec.label, "nodes": len(rows),
               "placement": placement_summary(rows), "precision": precision_summary(rows)}
    if fmt == "json":
        typer.echo(json.dumps({**summary, "per_node": [r.to_dict() for r in rows]}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{path.name} on {spec.label}: {len(rows)} nodes, {summary['placement']}, "
                        f"precision {summary['precision']}")
    for col in ("node", "op type", "placement", "precision"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.node, r.op_type, r.placement, r.precision)
    _out().print(table)


def main() -> None:
    """Console entry point: FcbenchError -> one line on stderr and its exit code."""
    try:
        app()
    except FcbenchError as exc:
        print(f"fcbench: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("fcbench: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
