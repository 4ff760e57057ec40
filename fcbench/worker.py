"""The bench worker: ``python -m fcbench.worker JOB.json OUT.json``, run on the device.

It reads a :class:`~fcbench.benchmark.job.BenchJob`, loads the backend, and for a ``bench`` job times
the queries and reads the placement; for a ``run`` job it runs the inputs and saves the outputs.
It writes raw results to OUT.json: per-query samples (ms), first-run, load (init) and import
times, peak memory, placement rows, runtime versions, the first output, and the machine
(``fcbench.devices.fingerprint.machine_info``). Statistics are the host's job, from the samples.

A cell that fails (bad artifact, runtime error) is ``{"status": "failed", "reason": ...}`` and the
worker exits 0: it did its job. Exit 2 means it was called wrongly; anything else (a crash, a
kill) the host reports as a failed cell with the worker's stdout and stderr kept.

Imports: numpy, the runtime the job names, and fcbench's light modules (no torch unless the
backend is pytorch, no CLI libraries).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest, verify
from fcbench.backends.base import Backend, Session
from fcbench.benchmark.job import BenchJob
from fcbench.benchmark.timing import BLOCK_SECONDS, PeakMemory, time_interleaved, time_queries
from fcbench.devices.fingerprint import machine_info
from fcbench.errors import FcbenchError, first_line

USAGE = ("usage: python -m fcbench.worker JOB.json OUT.json\n"
         "       python -m fcbench.worker --probe [PLUGIN:VARIANT ...]   (JSON on stdout)")
_HEAVY = ("torch", "tensorflow", "typer", "rich")  # reported, so a test can tell the worker stayed light


def measure(backend: Backend, path: Path, manifest: Manifest, variant: str, threads: int | None,
            options: dict[str, Any], x: np.ndarray, *, warmup: int, runs: int, min_seconds: float,
            max_seconds: float | None, also: Callable[[Session], Any] | None = None,
            import_ms: float | None = None) -> dict[str, Any]:
    """Import the runtime, load, time single-stream queries of ``x``, read the placement: the raw
    result a bench cell is made of (the same on the host in-process and in the worker on a device).
    ``also(session)`` runs with the loaded session before it closes (in-process pipeline timing);
    its value is returned as ``also``. ``import_ms``: the runtime's import, when the caller timed it
    already. A runtime's FcbenchError is a failed result."""
    try:
        with PeakMemory() as mem:
            if import_ms is None:
                import_ms = backend.import_runtime()  # paid once per process, not part of loading a model
            t = time.perf_counter()
            session = backend.load(path, manifest, variant, threads, options)
            init_ms = (time.perf_counter() - t) * 1e3
            timing = time_queries(lambda: session.run(x), warmup=warmup, min_runs=runs,
                                  min_seconds=min_seconds, max_seconds=max_seconds)
            out = np.asarray(session.run(x))  # once more, untimed: the output, for fidelity checks
            placement = session.placement()
            extra = also(session) if also else None
            session.close()
    except FcbenchError as exc:
        return {"status": "failed", "reason": str(exc)}
    return {"status": "ok", "samples_ms": timing.samples_ms, "first_run_ms": timing.first_run_ms,
            "warmup": timing.warmup, "init_ms": init_ms, "import_ms": import_ms, "peak_mem_mb": mem.peak_mb,
            "mem_delta_mb": mem.delta_mb, "placement": [p.to_dict() for p in placement],
            "versions": backend.versions(), "output": _floats(out[:1]), "output_shape": list(out.shape),
            "also": extra}


def measure_interleaved(backend: Backend, items: list[tuple[Path, Manifest, np.ndarray]], variant: str,
                        threads: int | None, options: dict[str, Any], *, warmup: int, runs: int, min_seconds: float,
                        max_seconds: float | None, block_seconds: float | None = None,
                        import_ms: float | None = None) -> list[dict[str, Any]]:
    """:func:`measure` for several artifacts at once, timed in turn (A/B): all loaded into one process on one
    backend, then :func:`~fcbench.benchmark.timing.time_interleaved`. One raw result per artifact, each with
    ``rounds`` beside its samples; peak memory is the process's, for them all. A failure fails them all."""
    sessions: list[Session] = []
    try:
        with PeakMemory() as mem:
            if import_ms is None:
                import_ms = backend.import_runtime()
            inits = []
            for path, manifest, _ in items:
                t = time.perf_counter()
                sessions.append(backend.load(path, manifest, variant, threads, options))
                inits.append((time.perf_counter() - t) * 1e3)
            queries = [lambda s=s, x=x: s.run(x) for s, (_, _, x) in zip(sessions, items, strict=True)]
            timings = time_interleaved(queries, warmup=warmup, min_runs=runs, min_seconds=min_seconds,
                                       max_seconds=max_seconds, block_seconds=block_seconds or BLOCK_SECONDS)
            outs = [np.asarray(s.run(x)) for s, (_, _, x) in zip(sessions, items, strict=True)]
            placements = [s.placement() for s in sessions]
    except FcbenchError as exc:
        return [{"status": "failed", "reason": str(exc)} for _ in items]
    finally:
        for s in sessions:
            s.close()
    return [{"status": "ok", "samples_ms": tm.samples_ms, "rounds": tm.rounds, "first_run_ms": tm.first_run_ms,
             "warmup": tm.warmup, "init_ms": init, "import_ms": import_ms, "peak_mem_mb": mem.peak_mb,
             "mem_delta_mb": mem.delta_mb, "placement": [p.to_dict() for p in pl], "versions": backend.versions(),
             "output": _floats(out[:1]), "output_shape": list(out.shape), "also": None,
             "interleaved": {"with": len(items), "block_seconds": block_seconds or BLOCK_SECONDS}}
            for tm, init, out, pl in zip(timings, inits, outs, placements, strict=True)]


def _floats(a: np.ndarray) -> list[float]:
    return np.asarray(a, dtype=np.float64).ravel().tolist()


def run_batches(session: Session, x: np.ndarray, step: int) -> np.ndarray:
    """``x`` through the session in slices of ``step`` (an artifact's fixed batch), the last slice
    padded with copies of its last item and cut back."""
    out = []
    for i in range(0, len(x), step):
        chunk = np.ascontiguousarray(x[i:i + step])
        n = len(chunk)
        if n < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        out.append(np.asarray(session.run(chunk))[:n])
    return np.concatenate(out) if out else np.empty((0,), np.float32)


def execute(job: BenchJob, job_dir: Path) -> dict[str, Any]:
    """One job, its files in ``job_dir``: the raw result (never raises for a failing runtime)."""
    from fcbench.backends import get_backend

    path = job_dir / job.artifact
    try:
        manifest = Manifest.from_dict(job.manifest)
        verify(path, manifest, cache=False)  # the copy this device got is the file the host checked
        backend = get_backend(job.plugin)
        ok, reason = backend.available()
        if not ok:
            return {"status": "skipped", "reason": reason}
        import_ms = backend.import_runtime()  # first: can_run may import the runtime, and this process is fresh
        ok, reason = backend.can_run(path, manifest, job.variant)
        if not ok:
            return {"status": "skipped", "reason": reason}
        if job.kind == "bench" and job.others:
            from fcbench.benchmark.run import prepared_input

            items = [(path, manifest, prepared_input(manifest, job.batch, job.seed))]
            for o in job.others:
                m = Manifest.from_dict(o["manifest"])
                p = job_dir / o["artifact"]
                verify(p, m, cache=False)
                ok, reason = backend.can_run(p, m, job.variant)
                if not ok:
                    return {"status": "skipped", "reason": f"{o['artifact']}: {reason}"}
                items.append((p, m, prepared_input(m, job.batch, job.seed)))
            raws = measure_interleaved(backend, items, job.variant, job.threads, job.options, warmup=job.warmup,
                                       runs=job.runs, min_seconds=job.min_seconds, max_seconds=job.max_seconds,
                                       block_seconds=job.block_seconds, import_ms=import_ms)
            first = dict(raws[0])
            first.pop("also", None)
            if first.get("status") == "ok":
                first["others"] = [{k: v for k, v in r.items() if k != "also"} for r in raws[1:]]
            return first
        if job.kind == "bench":
            from fcbench.benchmark.run import prepared_input

            x = prepared_input(manifest, job.batch, job.seed)
            raw = measure(backend, path, manifest, job.variant, job.threads, job.options, x, warmup=job.warmup,
                          runs=job.runs, min_seconds=job.min_seconds, max_seconds=job.max_seconds, import_ms=import_ms)
            raw.pop("also", None)
            return raw
        x = np.load(job_dir / job.inputs, allow_pickle=False)
        t = time.perf_counter()
        session = backend.load(path, manifest, job.variant, job.threads, job.options)
        init_ms = (time.perf_counter() - t) * 1e3
        try:
            out = run_batches(session, x, job.batch)
            placement = session.placement()
        finally:
            session.close()
        np.save(job_dir / job.outputs, out, allow_pickle=False)
        return {"status": "ok", "outputs": job.outputs, "output_shape": list(out.shape), "init_ms": init_ms,
                "import_ms": import_ms, "placement": [p.to_dict() for p in placement], "versions": backend.versions()}
    except FcbenchError as exc:
        return {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # a runtime's own exception: its first line, the traceback kept in the output
        return {"status": "failed", "reason": f"{job.plugin}: {type(exc).__name__}: {first_line(exc)}",
                "traceback": traceback.format_exc()}


def _write(out_path: Path, result: dict[str, Any]) -> None:
    import json

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out_path)  # the host never reads half a file


def probe(specs: list[str]) -> dict[str, Any]:
    """What this device can run: its machine and, per ``plugin:variant``, whether the runtime is installed and
    the variant usable here (with the reason when not) and the runtime's versions. Imports each runtime."""
    from fcbench.backends import get_backend

    out: dict[str, Any] = {}
    for text in specs:
        plugin, _, variant = text.partition(":")
        try:
            backend = get_backend(plugin)
            ok, reason = backend.available()
            if ok:
                ok, reason = backend.variant_available(variant)
            out[text] = {"ok": bool(ok), "reason": reason, "versions": backend.versions() if ok else {}}
        except Exception as exc:  # a runtime that fails to import is a reason, not a crash
            out[text] = {"ok": False, "reason": f"{type(exc).__name__}: {first_line(exc)}", "versions": {}}
    return {"machine": machine_info(), "backends": out, "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    import fcbench

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--probe"]:
        import json

        print(json.dumps(probe(args[1:])))
        return 0
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    start = time.perf_counter()
    job_path, out_path = Path(args[0]), Path(args[1])
    job: BenchJob | None = None
    try:
        job = BenchJob.from_json(job_path.read_text())
    except (OSError, ValueError) as exc:
        result: dict[str, Any] = {"status": "failed", "reason": f"worker: cannot read job {job_path}: {exc}"}
    else:
        result = execute(job, job_path.parent)
    result["kind"] = job.kind if job else None
    result["job_dir"] = str(job_path.parent.resolve())
    result["machine"] = machine_info()
    result["worker"] = {"pid": os.getpid(), "python": sys.executable, "fcbench": fcbench.__version__,
                        "fcbench_path": os.path.dirname(fcbench.__file__),
                        "wall_ms": (time.perf_counter() - start) * 1e3,
                        "imported": [m for m in _HEAVY if m in sys.modules]}
    _write(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
