"""The bench matrix: every artifact x every backend, one row per cell, streamed to the store.

A cell that cannot run (runtime not installed, variant not on this host, format not taken)
is shown with its reason and the matrix goes on; a cell that fails while running is
recorded as failed with the runtime's message.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest, load_manifest, parity_warning
from fcbench.backends import Backend, BackendSpec, NodePlacement, expand, get_backend, why_not
from fcbench.benchmark.peak import machine_peak
from fcbench.benchmark.pipeline import read_images, time_pipeline
from fcbench.benchmark.placement import placement_summary, precision_summary
from fcbench.benchmark.timing import Stats
from fcbench.devices.fingerprint import fingerprint, this_machine
from fcbench.errors import FcbenchError
from fcbench.hooks import Hooks, or_default
from fcbench.options import ISOLATIONS, PRECISIONS, BenchConfig, normalize_precision
from fcbench.plugins import Device
from fcbench.results.context import RunContext
from fcbench.results.store import DEFAULT_STORE, Row, options_hash

__all__ = ["ISOLATIONS", "PRECISIONS", "BenchConfig", "BenchResult", "Cell", "bench", "normalize_precision",
           "run_cell"]

@dataclass
class Cell:
    artifact: str
    format: str
    backend: str
    status: str  # ok | failed | skipped
    reason: str = ""
    stats: Stats | None = None
    init_ms: float | None = None
    first_run_ms: float | None = None
    peak_mem_mb: float | None = None
    size_mb: float | None = None
    gflops_per_s: float | None = None
    peak_share: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    output: list[float] | None = field(default=None, repr=False)  # the first output item, flat (fidelity checks)
    options: dict[str, Any] = field(default_factory=dict, repr=False)  # the runtime options it ran with


def artifact_size_mb(path: Path, manifest: Manifest) -> float:
    files = [path] + [path.with_name(n) for n in manifest.extra.get("companion_files", [])]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def prepared_input(manifest: Manifest, batch: int = 1, seed: int = 0) -> np.ndarray:
    """The one input every backend gets: a fixed RGB image through the manifest's preprocessing."""
    pre = manifest.preprocessing
    h, w = pre.size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(1, w - 1), yy * 255 / max(1, h - 1), (xx + yy) * 127 / max(1, h + w - 2)], -1)
    img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    x = pre.apply(img)  # CHW or HWC per pre.layout
    layout = manifest.inputs[0].layout if manifest.inputs else pre.layout
    if layout != pre.layout:
        x = x.transpose(1, 2, 0) if layout == "NHWC" else x.transpose(2, 0, 1)
    return np.ascontiguousarray(np.repeat(x[None], batch, axis=0))


def _peak_gflops(threads: int, precision: str, at_least: float = 0.0) -> float | None:
    """The machine's measured GEMM peak; re-measured once when a model beats it (the cached
    figure was then taken on a busy machine), keeping the best ever seen."""
    peak = machine_peak(threads)["best"]
    entry = peak.get(precision) or peak.get("f32")
    if entry and entry["gflops"] < at_least:
        peak = machine_peak(threads, refresh=True)["best"]
        entry = peak.get(precision) or peak.get("f32")
    return entry["gflops"] if entry else None


def cell_options(spec: BackendSpec, backend: Backend, cfg: BenchConfig) -> tuple[dict[str, Any], str]:
    """The backend options a cell of ``spec`` runs with: the profile's, plus those of ``cfg.precision`` when
    asked for; or ``({}, why)`` when the backend cannot be asked for that precision (naming those it can)."""
    options = dict(spec.options)
    if cfg.precision:
        can = backend.precisions(spec.variant)
        if cfg.precision not in can:
            return {}, f"{spec.label} cannot be asked for {cfg.precision}; it can: {', '.join(can)}"
        options.update(backend.precision_options(cfg.precision))
    return options, ""


def run_cell(path: Path, manifest: Manifest, spec: BackendSpec, cfg: BenchConfig, threads: int,
             device: Device | None = None) -> Cell:
    """One cell: checked here, measured in this process (``cfg.isolation == "inprocess"``, or
    ``--pipeline``) or by the bench worker on ``device`` (default: a fresh local device, i.e. a
    subprocess); either way the cell is filled from the same raw result by ``_cell_from_raw``."""
    cell = Cell(artifact=str(path), format=manifest.format, backend=spec.label, status="skipped")
    backend, why = why_not(spec, path, manifest)
    if why:
        cell.reason = why
        return cell
    options, why = cell_options(spec, backend, cfg)
    if why:
        cell.reason = why
        return cell
    cell.options = options
    cell.size_mb = artifact_size_mb(path, manifest)
    if cfg.pipeline or cfg.isolation == "inprocess":
        raw = _measure_here(path, manifest, spec, backend, options, cfg, threads)
    else:
        raw = _measure_on_device(path, manifest, spec, options, cfg, threads, device)
    return _cell_from_raw(cell, raw, manifest, spec, backend, cfg, threads)


def _measure_here(path: Path, manifest: Manifest, spec: BackendSpec, backend: Backend, options: dict[str, Any],
                  cfg: BenchConfig, threads: int) -> dict[str, Any]:
    """The raw result of a cell measured in this process (as the worker measures it on a device)."""
    from fcbench.worker import measure

    x = prepared_input(manifest, cfg.batch)

    def pipeline(session):
        return time_pipeline(session.run, manifest, cfg._images, min_runs=cfg.runs, min_seconds=cfg.min_seconds,
                             warmup=min(cfg.warmup, 3))

    raw = measure(backend, path, manifest, spec.variant, threads, options, x, warmup=cfg.warmup, runs=cfg.runs,
                  min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds, also=pipeline if cfg.pipeline else None)
    raw.update(isolation="inprocess", device="local", machine=this_machine()[0])
    return raw


_RUN_STAMP: list[str] = []  # one worker-logs folder per process: <date>-<time>-<pid>


def _worker_logs(cfg: BenchConfig, path: Path, spec: BackendSpec) -> Path:
    """Where a failed worker's raw output is kept: ``<worker_logs or the store's folder/worker-logs>/
    <run>/<artifact>@<backend>/``."""
    if not _RUN_STAMP:
        _RUN_STAMP.append(time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}")
    root = Path(cfg.worker_logs) if cfg.worker_logs else DEFAULT_STORE.parent / "worker-logs"
    return root / _RUN_STAMP[0] / re.sub(r"[^A-Za-z0-9._@+-]+", "_", f"{path.name}@{spec.label}")


def _companions(path: Path, manifest: Manifest) -> list[str]:
    """The files the worker needs beside the artifact: those its manifest lists and those its format reads
    with it (OpenVINO's .bin), where they are."""
    from fcbench import formats

    names = list(dict.fromkeys([*manifest.extra.get("companion_files", []),
                                *formats.get(manifest.format).companions(path)]))
    return [n for n in names if (path.parent / n).is_file()]


def _measure_on_device(path: Path, manifest: Manifest, spec: BackendSpec, options: dict[str, Any],
                       cfg: BenchConfig, threads: int, device: Device | None) -> dict[str, Any]:
    """The raw result of a cell measured by the bench worker on ``device`` (default: a local device
    made for this cell, i.e. a subprocess of this machine, removed afterwards)."""
    from fcbench.benchmark.job import BenchJob
    from fcbench.devices.local import LocalDevice
    from fcbench.devices.runner import run_job

    companions = _companions(path, manifest)
    job = BenchJob(artifact=path.name, manifest=manifest.to_dict(), plugin=spec.plugin, variant=spec.variant,
                   companions=companions, options=options, threads=threads, warmup=cfg.warmup, runs=cfg.runs,
                   min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds, batch=cfg.batch,
                   label=f"{path.name} on {spec.label}")
    dev = device or LocalDevice()
    t = time.perf_counter()
    try:
        raw = run_job(dev, job, [path, *(path.parent / c for c in companions)], logs=_worker_logs(cfg, path, spec),
                      clean=device is not None, timeout=cfg.worker_timeout)
    except (TypeError, ValueError) as exc:  # options that do not go into JSON, a companion in a subfolder
        raw = {"status": "failed", "reason": f"{spec.label} on {path.name}: cannot send the job to {dev.name}: {exc}"}
    finally:
        if device is None:
            dev.cleanup()
    raw.update(isolation="subprocess", device=dev.name, worker_wall_ms=(time.perf_counter() - t) * 1e3)
    return raw


def run_interleaved(items: list[tuple[Path, Manifest]], spec: BackendSpec, cfg: BenchConfig, threads: int,
                    block_seconds: float | None = None, device: Device | None = None) -> list[Cell]:
    """Cells of several artifacts on one backend, timed *in turn* by one bench worker (A/B testing:
    :func:`fcbench.benchmark.timing.time_interleaved`); each cell's ``extra["rounds"]`` says which round each
    of its samples came from, and ``extra["interleaved"]`` with what. Checked as :func:`run_cell` checks one
    artifact; one that cannot run here skips them all (there is nothing to compare it with)."""
    from fcbench.benchmark.job import BenchJob
    from fcbench.devices.local import LocalDevice
    from fcbench.devices.runner import run_job

    cells = [Cell(artifact=str(p), format=m.format, backend=spec.label, status="skipped") for p, m in items]
    backend = None
    for cell, (path, manifest) in zip(cells, items, strict=True):
        backend, why = why_not(spec, path, manifest)
        if why:
            for c in cells:
                c.reason = why if c is cell else f"{Path(cell.artifact).name}: {why}"
            return cells
    assert backend is not None
    options, why = cell_options(spec, backend, cfg)
    if why:
        for c in cells:
            c.reason = why
        return cells
    options = backend.interleaved_options(spec.variant, options)
    files: dict[str, Path] = {}
    parts = []
    for k, (path, manifest) in enumerate(items):
        prefix = "" if k == 0 else f"ab{k}/"  # two artifacts may share a file name (base/model.onnx, new/model.onnx)
        companions = _companions(path, manifest)
        files.update({prefix + n: path.parent / n for n in [path.name, *companions]})
        parts.append({"artifact": prefix + path.name, "manifest": manifest.to_dict(),
                      "companions": [prefix + c for c in companions]})
    job = BenchJob(artifact=parts[0]["artifact"], manifest=parts[0]["manifest"], plugin=spec.plugin,
                   variant=spec.variant, companions=parts[0]["companions"], options=options, threads=threads,
                   warmup=cfg.warmup, runs=cfg.runs, min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds,
                   batch=cfg.batch, others=parts[1:], block_seconds=block_seconds,
                   label=f"{' / '.join(p.name for p, _ in items)} in turn on {spec.label}")
    dev = device or LocalDevice()
    t = time.perf_counter()
    try:
        raw = run_job(dev, job, files, logs=_worker_logs(cfg, items[0][0], spec), clean=device is not None,
                      timeout=cfg.worker_timeout)
    except (TypeError, ValueError) as exc:
        raw = {"status": "failed", "reason": f"{spec.label}: cannot send the job to {dev.name}: {exc}"}
    finally:
        if device is None:
            dev.cleanup()
    shared = {"isolation": "subprocess", "device": dev.name, "worker_wall_ms": (time.perf_counter() - t) * 1e3}
    raws = [raw, *(raw.get("others") or [])] if raw.get("status") == "ok" else [raw] * len(items)
    if len(raws) != len(items):
        raws = [{"status": "failed", "reason": f"{spec.label}: the worker returned {len(raws)} results for "
                                               f"{len(items)} artifacts"}] * len(items)
    for cell, r, (_, manifest), k in zip(cells, raws, items, range(len(items)), strict=True):
        r = {**r, **shared, "machine": raw.get("machine", {})}
        r.pop("others", None)
        cell.options = options
        cell.size_mb = artifact_size_mb(Path(cell.artifact), manifest)
        _cell_from_raw(cell, r, manifest, spec, backend, cfg, threads)
        if cell.status == "ok":
            cell.extra["rounds"] = list(r.get("rounds") or [])
            cell.extra["interleaved"] = {**(r.get("interleaved") or {}), "position": k,
                                         "artifacts": [str(p) for p, _ in items]}
    return cells


def ab_run(base: Cell, new: Cell) -> tuple[list[float], list[int], list[float], list[int]]:
    """Two cells of one :func:`run_interleaved` call as one A/B run for
    :func:`fcbench.compare.stats.compare_ab`: each one's samples and the round each came from."""
    return base.extra["samples_ms"], base.extra["rounds"], new.extra["samples_ms"], new.extra["rounds"]


def _cell_from_raw(cell: Cell, raw: dict[str, Any], manifest: Manifest, spec: BackendSpec, backend: Backend,
                   cfg: BenchConfig, threads: int) -> Cell:
    """Fill a cell from a raw result (the worker's, or ``_measure_here``'s): statistics from the samples."""
    if raw.get("status") != "ok":
        cell.status = "skipped" if raw.get("status") == "skipped" else "failed"
        cell.reason = str(raw.get("reason") or "the worker gave no reason")
        if raw.get("logs"):
            cell.extra["worker_logs"] = raw["logs"]
        return cell
    placement = [NodePlacement(**r) for r in raw.get("placement") or []]
    cell.status = "ok"
    samples = raw.get("samples_ms") or []
    cell.stats = Stats.of(samples) if samples else _tool_stats(raw.get("stats") or {})
    if cell.stats is None:
        cell.status, cell.reason = "failed", f"{spec.label}: the result has neither samples nor statistics"
        return cell
    cell.init_ms = raw.get("init_ms")
    cell.first_run_ms = raw.get("first_run_ms")
    cell.peak_mem_mb = raw.get("peak_mem_mb")
    cell.output = raw.get("output")
    precisions = {p.precision for p in placement if p.precision}
    cell.extra = {"samples_ms": [round(s, 4) for s in samples], "mem_delta_mb": raw.get("mem_delta_mb"),
                  "import_ms": round(raw["import_ms"], 3) if raw.get("import_ms") is not None else None,
                  "versions": raw.get("versions") or {}, "precisions": sorted(precisions),
                  "placement_nodes": len(placement), "placement": placement_summary(placement),
                  "precision": precision_summary(placement), "isolation": raw["isolation"], "device": raw["device"],
                  "device_info": raw["machine"], "device_fingerprint": fingerprint(raw["machine"])}
    if "worker_wall_ms" in raw:
        cell.extra["worker_wall_ms"] = round(raw["worker_wall_ms"], 1)
    if raw.get("also") is not None:
        cell.extra["pipeline"] = raw["also"].summary()
        if cfg.isolation != "inprocess":
            cell.extra["isolation_note"] = "--pipeline runs in-process"
    if cfg.precision:
        cell.extra["precision_requested"] = cfg.precision
    if "manifest_inferred" in manifest.extra:
        cell.extra["manifest_inferred"] = manifest.extra["manifest_inferred"]
    if cfg.require_placement is not None:
        _check_placement(cell, placement, backend.requested_placement(spec.variant), cfg.require_placement)
    if manifest.flops:
        cell.gflops_per_s = manifest.flops * cfg.batch / (cell.stats.p50_ms / 1e3) / 1e9
        prec = "bf16" if "bf16" in precisions else "f32"
        compute = cell.extra["precision"].split()[0]  # the compute ops' (main) precision, or "not"
        peak = None
        if compute[:1] in ("i", "u"):  # 8-bit (or narrower) integer kernels: a float peak does not apply
            cell.extra["peak_share_note"] = f"compute ran {compute}; no integer peak is measured"
        else:
            peak = _peak_gflops(threads, prec, at_least=cell.gflops_per_s)
        if peak:
            cell.peak_share = cell.gflops_per_s / peak
            cell.extra["peak_gflops"] = peak
            cell.extra["peak_precision"] = prec
    return cell


def _tool_stats(stats: dict[str, Any]) -> Stats | None:
    """Statistics a device's native tool printed (it gives aggregates, not every sample): what it did not
    print stays unknown (NaN), never 0."""
    if not stats or stats.get("runs") is None or stats.get("p50_ms", stats.get("mean_ms")) is None:
        return None
    nan = float("nan")

    def get(key: str) -> float:
        v = stats.get(key)
        return float(v) if v is not None else nan

    p50 = get("p50_ms") if stats.get("p50_ms") is not None else get("mean_ms")
    return Stats(get("mean_ms"), get("std_ms"), get("min_ms"), p50, get("p90_ms"), get("p99_ms"), int(stats["runs"]))


def load_artifact(a: str | Path, cfg: BenchConfig,
                  on_assumed: Callable[[Path, list[str]], None] | None = None) -> tuple[Path, Manifest]:
    """The artifact and its manifest, verified against each other (:func:`fcbench.artifact.load_manifest`:
    sha256 of the artifact and its companion files, names inside its folder); without a manifest, infer
    one if asked to (and say what was assumed). Bench, eval and inspect load artifacts through this."""
    from fcbench.artifact import manifest_path

    path = Path(a)
    if not path.exists():
        raise FcbenchError(f"bench: artifact {path} does not exist")
    if manifest_path(path).exists() or not cfg.infer_manifest:
        if not manifest_path(path).exists():
            raise FcbenchError(f"{path}: no manifest beside it ({manifest_path(path).name}); pass --infer-manifest "
                               "to infer inputs and preprocessing from the file (what is assumed gets printed)")
        return path, load_manifest(path)
    from fcbench.infer import infer_manifest

    manifest, assumed = infer_manifest(path, cfg.preprocessing, cfg.input_shape)
    if on_assumed:
        on_assumed(path, assumed)
    return path, manifest


def _check_placement(cell: Cell, rows: list, requested: str, required: float) -> None:
    """--require-placement: the share of nodes on the requested device, or the cell fails naming
    the first nodes that fell back."""
    if not rows:
        cell.status = "failed"
        cell.reason = f"{cell.backend} does not report placement, so --require-placement cannot be checked"
        return
    on = [r for r in rows if requested.lower() in (r.placement or "").lower()]
    share = len(on) / len(rows)
    cell.extra["requested_placement"] = requested
    cell.extra["requested_share"] = share
    if share + 1e-9 < required:
        off = [r for r in rows if r not in on][:3]
        named = ", ".join(f"{r.op_type} (node {r.node}) on {r.placement}" for r in off)
        cell.status = "failed"
        cell.reason = (f"{100 * share:.0f} % of {len(rows)} nodes ran on {requested}, --require-placement asks "
                       f"{100 * required:.0f} %; first that fell back: {named}")


@dataclass
class BenchResult:
    """The cells of one bench matrix in order (skipped ones too, with their reason) and the rows of the
    cells that ran. Iterating it gives the cells."""

    cells: list[Cell] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)  # --device: per device, cells done and seconds

    def to_rows(self) -> list[Row]:
        return list(self.rows)

    def failures(self) -> list[str]:
        return [f"{Path(c.artifact).name} on {c.backend}: {c.reason}" for c in self.cells if c.status == "failed"]

    def __iter__(self):
        return iter(self.cells)

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, i: int) -> Cell:
        return self.cells[i]


def bench(cfg: BenchConfig, ctx: RunContext | None = None, hooks: Hooks | None = None) -> BenchResult:
    """Run the matrix. Each finished cell goes to ``hooks.on_event('cell', cell)`` and its row to
    ``hooks.on_rows`` before the next cell starts (the CLI stores it then); nothing is printed or stored here.
    Artifacts without a manifest are inferred when ``cfg.infer_manifest`` (``on_event('assumed', (path,
    [what]))``); unreadable ``--images`` are left out (``on_event('unreadable', (path, why))``)."""
    cfg.validate()
    ctx = ctx or RunContext()
    hooks = or_default(hooks)
    if cfg.pipeline:
        unreadable: list[Path] = []

        def left_out(p: Path, why: str) -> None:
            unreadable.append(p)
            hooks.event("unreadable", (p, why))

        cfg._images = read_images(cfg.images, left_out)
        if unreadable:
            hooks.log(f"--images: {len(unreadable)} unreadable image(s) left out")
    threads = cfg.threads or os.cpu_count() or 1
    specs = expand(cfg.backends)
    loaded = [load_artifact(a, cfg, lambda p, what: hooks.event("assumed", (p, what))) for a in cfg.artifacts]
    result = BenchResult()
    if cfg.device:
        from fcbench.devices.fleet import bench_on_devices

        return bench_on_devices(cfg, loaded, specs, ctx, hooks, result, threads)
    for path, manifest in loaded:
        warning = parity_warning(manifest)
        if warning:
            hooks.log(f"warning: {path.name}: {warning}")
        for spec in specs:
            if "all" in cfg.backends and manifest.format not in get_backend(spec.plugin).formats:
                continue  # 'all' means every backend that loads this format, not every pair
            cell = run_cell(path, manifest, spec, cfg, threads)
            if warning:  # benched, but the table and the row say its manifest's parity check failed
                cell.extra["warning"] = warning
            result.cells.append(cell)
            if cell.status != "skipped":  # the store holds measurements (and failures), not cells not run
                row = cell_row(ctx, cell, manifest, spec, cfg, threads)
                result.rows.append(row)
                hooks.rows([row])
            hooks.event("cell", cell)
    return result


def cell_row(ctx: RunContext, cell: Cell, manifest: Manifest, spec: BackendSpec, cfg: BenchConfig,
             threads: int) -> Row:
    s = cell.stats
    extra = dict(cell.extra)
    samples_ms = extra.pop("samples_ms", [])  # a column of its own since store schema 2
    device_info = extra.pop("device_info", {})  # the machine that measured: columns of their own too
    device_fingerprint = extra.pop("device_fingerprint", "")
    extra["status"] = cell.status
    if cell.reason:
        extra["reason"] = cell.reason
    stat_values = {} if s is None else dict(runs=s.runs, mean_ms=s.mean_ms, std_ms=s.std_ms, min_ms=s.min_ms,
                                            p50_ms=s.p50_ms, p90_ms=s.p90_ms, p99_ms=s.p99_ms)
    return ctx.row(
        "speed", profile=spec.label if spec.profile else "",
        options_hash=options_hash(cell.options), model=manifest.model.get("name", ""),
        lineage=manifest.lineage_summary(), artifact=cell.artifact,
        artifact_sha256=manifest.sha256, format=manifest.format, backend=spec.plugin, variant=spec.variant,
        threads=threads, batch=cfg.batch, input_shape="x".join(map(str, [cfg.batch, *manifest.inputs[0].shape[1:]])),
        warmup=cfg.warmup, init_ms=cell.init_ms, first_run_ms=cell.first_run_ms, peak_mem_mb=cell.peak_mem_mb,
        model_size_mb=cell.size_mb, gflops_per_s=cell.gflops_per_s, peak_share=cell.peak_share,
        runtime_versions=cell.extra.get("versions") or None, samples_ms=samples_ms, extra=extra,
        **({"device_info": device_info, "device_fingerprint": device_fingerprint} if device_info else {}),
        **stat_values,
    )
