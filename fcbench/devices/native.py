"""Runtimes' own native benchmark tools, for devices without Python (Android over adb).

A phone has no Python, so an Android bench cell runs the runtime's native benchmark binary and fcbench
parses what it prints. For each tool, :func:`command` builds the argv and :func:`parse` turns its output
into a :class:`NativeRun`:

- ``benchmark_model`` (TFLite / LiteRT): ``--graph``, ``--num_threads``, ``--use_xnnpack`` /
  ``--use_gpu`` / ``--use_nnapi``, ``--warmup_runs``, ``--num_runs``, ``--min_secs``,
  ``--report_peak_memory_footprint``, ``--enable_op_profiling``.
- ``onnxruntime_perf_test`` (ONNX Runtime): ``-e cpu|xnnpack|nnapi``, ``-x`` threads, ``-m times -r N``
  (or ``-m duration -t S`` when no run count is asked), ``-I`` (generated inputs), ``-s`` (percentiles),
  ``-v`` (verbose: the per-node placement).
- ``executor_runner`` (ExecuTorch): ``--model_path``, ``--num_executions``, ``--cpu_threads``.
- ``speed_benchmark_torch`` (PyTorch Mobile): ``--model``, ``--input_dims``, ``--input_type``,
  ``--warmup``, ``--iter``, ``--report_pep`` (one latency line per iteration).

A figure the tool did not print is ``None`` and named in ``NativeRun.absent``, never 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOLS = ("benchmark_model", "onnxruntime_perf_test", "executor_runner", "speed_benchmark_torch")

# backend plugin -> (tool, {variant: the tool's flags for it})
_TOOL_OF = {
    "tflite": ("benchmark_model", {"cpu": ["--use_xnnpack=false"], "xnnpack": ["--use_xnnpack=true"],
                                   "gpu": ["--use_gpu=true"], "nnapi": ["--use_nnapi=true"]}),
    "onnxruntime": ("onnxruntime_perf_test", {"cpu": ["-e", "cpu"], "xnnpack": ["-e", "xnnpack"],
                                              "nnapi": ["-e", "nnapi"]}),
    "executorch": ("executor_runner", {"xnnpack": [], "portable": []}),
    "pytorch-mobile": ("speed_benchmark_torch", {"cpu": []}),
}
_NO_TOOL = {
    "opencv-dnn": "OpenCV DNN has no native benchmark tool for Android, so fcbench cannot bench it on an adb "
                  "device (bench it on a Linux board over ssh, or convert to tflite/onnx)",
    "openvino": "OpenVINO has no Android build or benchmark tool fcbench can drive over adb",
    "pytorch": "eager PyTorch does not run on Android; convert to .ptl (pytorch-mobile) or .pte (executorch)",
}

# placement labels: what each delegate / execution provider is called in placement rows
_DELEGATE_LABEL = (("xnnpack", "XNNPACK"), ("gpu", "GPU"), ("litert_cl", "GPU"), ("opencl", "GPU"),
                   ("nnapi", "NNAPI"), ("hexagon", "Hexagon"), ("qnn", "QNN"), ("coreml", "CoreML"))

_STAT_FIELDS = ("init_ms", "first_run_ms", "warmup_avg_ms", "runs", "mean_ms", "std_ms", "min_ms", "max_ms",
                "p50_ms", "p90_ms", "p95_ms", "p99_ms", "peak_mem_mb")


@dataclass
class NativeRun:
    """One run of a native tool, as it reported it (times in ms, memory in MiB)."""

    status: str = "ok"  # "ok" | "failed"
    reason: str = ""
    tool: str = ""
    init_ms: float | None = None
    first_run_ms: float | None = None
    warmup_avg_ms: float | None = None
    runs: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)  # only when the tool prints per-run times
    peak_mem_mb: float | None = None
    delegate_nodes: dict[str, dict[str, int | None]] = field(default_factory=dict)
    ops: list[dict[str, Any]] = field(default_factory=list)
    placed: list[dict[str, str]] = field(default_factory=list)  # per-node placement, where the tool lists nodes
    extra: dict[str, Any] = field(default_factory=dict)  # the tool's other figures (p999, memory deltas, ...)
    absent: list[str] = field(default_factory=list)
    raw: str = ""

    def _finish(self) -> NativeRun:
        self.absent = [f for f in _STAT_FIELDS if getattr(self, f) is None]
        if not self.samples_ms:
            self.absent.append("samples_ms")
        if not self.delegate_nodes:
            self.absent.append("delegate_nodes")
        return self

    def stats(self) -> dict[str, Any]:
        """The tool's own aggregates (printed figures only) and its extras."""
        out = {f: getattr(self, f) for f in _STAT_FIELDS if getattr(self, f) is not None}
        out.update(self.extra)
        if self.delegate_nodes:
            out["delegate_nodes"] = self.delegate_nodes
        if self.ops:
            out["ops"] = self.ops
        return out

    def placement(self) -> list[dict[str, str]]:
        """NodePlacement rows: the nodes the tool listed, else one row per node from the delegate counts
        (N on the delegate, the rest of the graph on the CPU); empty when the tool printed neither."""
        from fcbench.backends.base import NodePlacement

        if self.placed:
            return [NodePlacement(**p).to_dict() for p in self.placed]
        rows: list[NodePlacement] = []
        total = None
        for name, d in self.delegate_nodes.items():
            label = delegate_label(name)
            rows += [NodePlacement(node=f"{label}#{i}", op_type="(not reported)", placement=label)
                     for i in range(int(d.get("nodes") or 0))]
            if total is None and d.get("of") is not None:
                total = int(d["of"])
        if total is not None:
            cpu = "CPUExecutionProvider" if self.tool == "onnxruntime_perf_test" else "CPU"
            rows += [NodePlacement(node=f"CPU#{i}", op_type="(not reported)", placement=cpu)
                     for i in range(max(0, total - len(rows)))]
        return [r.to_dict() for r in rows]

    def to_raw(self) -> dict[str, Any]:
        """The worker's raw-result shape (fcbench.worker) plus ``stats`` (the tool's aggregates), ``tool`` and
        ``absent``. ``import_ms``, ``output`` and ``mem_delta_mb`` are None where the tool cannot tell."""
        if self.status != "ok":
            return {"status": "failed", "reason": self.reason, "tool": self.tool, "stats": self.stats(),
                    "absent": list(self.absent)}
        return {"status": "ok", "tool": self.tool, "samples_ms": list(self.samples_ms),
                "first_run_ms": self.first_run_ms, "warmup": None, "init_ms": self.init_ms, "import_ms": None,
                "peak_mem_mb": self.peak_mem_mb, "mem_delta_mb": self.extra.get("mem_overall_mb"),
                "placement": self.placement(), "versions": {}, "output": None, "output_shape": None,
                "stats": self.stats(), "absent": list(self.absent)}


def delegate_label(name: str) -> str:
    low = name.lower()
    for key, label in _DELEGATE_LABEL:
        if key in low:
            return label
    return name


def tool_for(plugin: str, variant: str) -> tuple[str | None, str]:
    """(the native tool that runs ``plugin:variant`` on Android, "") or (None, why there is none)."""
    if plugin in _NO_TOOL:
        return None, _NO_TOOL[plugin]
    if plugin not in _TOOL_OF:
        return None, f"no native Android benchmark tool is known for backend '{plugin}'"
    tool, variants = _TOOL_OF[plugin]
    if variant not in variants:
        return None, (f"{tool} cannot run {plugin}:{variant} on Android (variants it runs: "
                      f"{', '.join(variants)})")
    return tool, ""


def command(tool: str, binary: str, model: str, *, variant: str, threads: int | None = None, warmup: int = 1,
            runs: int = 50, min_seconds: float = 0.0, profile_ops: bool = False,
            input_shape: list[int] | None = None, input_type: str = "float") -> list[str]:
    """The argv that runs ``tool`` (at ``binary`` on the device) on ``model`` (its path on the device)."""
    if tool == "benchmark_model":
        argv = [binary, f"--graph={model}", *_TOOL_OF["tflite"][1][variant]]
        if threads:
            argv.append(f"--num_threads={threads}")
        argv += [f"--warmup_runs={warmup}", f"--num_runs={runs}", f"--min_secs={min_seconds:g}",
                 "--report_peak_memory_footprint=true"]
        if profile_ops:
            argv.append("--enable_op_profiling=true")
        return argv
    if tool == "onnxruntime_perf_test":
        argv = [binary, *_TOOL_OF["onnxruntime"][1][variant]]
        if threads:
            argv += ["-x", str(threads)]
        if runs and runs > 0:
            argv += ["-m", "times", "-r", str(runs)]
        else:
            argv += ["-m", "duration", "-t", str(max(1, round(min_seconds)))]
        argv += ["-I", "-s", "-v"]
        if profile_ops:
            argv += ["-p", model + ".profile"]
        return [*argv, model]
    if tool == "executor_runner":
        argv = [binary, f"--model_path={model}", f"--num_executions={runs}"]
        if threads:
            argv.append(f"--cpu_threads={threads}")
        return argv
    if tool == "speed_benchmark_torch":
        if not input_shape:
            raise ValueError("speed_benchmark_torch needs the input shape (--input_dims)")
        return [binary, f"--model={model}", f"--input_dims={','.join(str(d) for d in input_shape)}",
                f"--input_type={input_type}", f"--warmup={warmup}", f"--iter={runs}", "--report_pep=true"]
    raise ValueError(f"unknown native tool '{tool}'; known: {', '.join(TOOLS)}")


def parse(tool: str, text: str, returncode: int = 0) -> NativeRun:
    """``tool``'s output (stdout and stderr together) as a :class:`NativeRun`; a non-zero ``returncode``
    fails the run."""
    parsers = {"benchmark_model": _parse_tflite, "onnxruntime_perf_test": _parse_ort,
               "executor_runner": _parse_executorch, "speed_benchmark_torch": _parse_torch}
    if tool not in parsers:
        raise ValueError(f"unknown native tool '{tool}'; known: {', '.join(TOOLS)}")
    run = NativeRun(tool=tool, raw=text)
    parsers[tool](run, text)
    if returncode != 0 and run.status == "ok":
        run.status = "failed"
        run.reason = _last_line(text) or f"{tool} exited {returncode}"
    if run.status != "ok" and not run.reason:
        run.reason = f"{tool} exited {returncode}"
    if run.status != "ok":
        run.reason = f"{tool}: {run.reason}" if not run.reason.startswith(tool) else run.reason
    return run._finish()


def _num(s: str) -> float:
    return float(s)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def _strip_level(line: str) -> str:
    return re.sub(r"^(INFO|WARNING|WARN|ERROR|VERBOSE): ", "", line.strip())


# --- TFLite benchmark_model -------------------------------------------------------------------------------

_TFL_STAT = re.compile(r"^count=(\d+)(?: first=(\S+))? curr=(\S+?)(?:\(all same\))?(?: min=(\S+) max=(\S+) "
                       r"avg=(\S+) std=(\S+))?(?: p5=(\S+) median=(\S+) p95=(\S+))?$")
_TFL_DELEGATE = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]+)\) node, "
                           r"yielding (\d+) partitions")


def _tfl_stat(line: str) -> dict[str, float] | None:
    m = _TFL_STAT.match(line)
    if not m:
        return None
    count, first, curr, mn, mx, avg, std, _p5, med, p95 = m.groups()
    if mn is None:  # all runs took the same time
        mn = mx = avg = curr
        std = "0"
    out = {"count": int(count), "first": _num(first or curr), "min": _num(mn), "max": _num(mx),
           "avg": _num(avg), "std": _num(std)}
    if med is not None:
        out["median"], out["p95"] = _num(med), _num(p95)
    return out


def _parse_tflite(run: NativeRun, text: str) -> None:
    stats: list[dict[str, float]] = []
    failed: list[str] = []
    raws = text.splitlines()
    lines = [_strip_level(ln) for ln in raws]
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("count="):
            s = _tfl_stat(line)
            if s:
                stats.append(s)
        elif m := re.match(r"Initialized session in ([\d.eE+-]+) ?ms", line):
            run.init_ms = _num(m.group(1))
        elif m := re.match(r"Inference timings in us: Init: (\S+), First inference: (\S+), Warmup \(avg\): (\S+), "
                           r"Inference \(avg\): (\S+)", line):
            init, first, warm, avg = (_num(v.rstrip(",")) / 1e3 for v in m.groups())
            run.init_ms, run.first_run_ms, run.warmup_avg_ms, run.mean_ms = init, first, warm, avg
        elif m := re.match(r"Average inference timings in us: Warmup: (\S+), Init: (\S+), "
                           r"(?:Inference|no stats): (\S+)", line):
            warm, init, avg = (_num(v.rstrip(",")) / 1e3 for v in m.groups())
            run.warmup_avg_ms, run.init_ms, run.mean_ms = warm, init, avg
        elif m := re.match(r"Memory footprint delta from the start of the tool \(MB\): init=(\S+) overall=(\S+)",
                           line):
            run.extra["mem_init_mb"], run.extra["mem_overall_mb"] = _num(m.group(1)), _num(m.group(2))
        elif m := re.match(r"Overall peak memory footprint \(MB\) via periodic monitoring: (\S+)", line):
            run.peak_mem_mb = _num(m.group(1))
        elif m := re.match(r"The input model file size \(MB\): (\S+)", line):
            run.extra["model_size_mb"] = _num(m.group(1))
        elif m := _TFL_DELEGATE.search(line):
            n, of, name, parts = m.groups()
            run.delegate_nodes[name] = {"nodes": int(n), "of": int(of) if of else None, "partitions": int(parts)}
        elif re.search(r"Failed to apply .*delegate|Benchmarking failed", line) or raws[i].lstrip().startswith("ERROR"):
            failed.append(line)
        elif re.match(r"=+ Run Order =+", line):
            run.ops = []  # the initialization table comes first; the regular runs' table last
            i = _tfl_ops(run, lines, i + 1)
            continue
        i += 1
    if stats:
        steady = stats[-1]  # warm-up stats come first, the steady-state runs last
        run.runs = int(steady["count"])
        run.mean_ms = steady["avg"] / 1e3
        run.std_ms, run.min_ms, run.max_ms = steady["std"] / 1e3, steady["min"] / 1e3, steady["max"] / 1e3
        if "median" in steady:
            run.p50_ms, run.p95_ms = steady["median"] / 1e3, steady["p95"] / 1e3
        if run.first_run_ms is None and len(stats) > 1:
            run.first_run_ms = stats[0]["first"] / 1e3
        if run.warmup_avg_ms is None and len(stats) > 1:
            run.warmup_avg_ms = stats[0]["avg"] / 1e3
    if failed:
        run.status = "failed"
        named = [f for f in failed if "Failed to apply" in f]
        run.reason = (named or failed)[0]
    elif not stats and run.mean_ms is None:
        run.status = "failed"
        run.reason = "printed no timings" + (f" (last line: {_last_line(text)})" if text.strip() else "")


def _tfl_ops(run: NativeRun, lines: list[str], i: int) -> int:
    """The "Run Order" op-profile table: one row per op, tab separated, until a blank line."""
    while i < len(lines) and lines[i].strip():
        cells = [c.strip() for c in lines[i].split("\t") if c.strip()]
        if len(cells) >= 9 and not cells[0].startswith("["):
            try:
                run.ops.append({"op_type": cells[0], "start_ms": _num(cells[1]), "first_ms": _num(cells[2]),
                                "avg_ms": _num(cells[3]), "percent": _num(cells[4].rstrip("%")),
                                "times_called": int(cells[7]), "name": cells[8].strip("[]")})
            except ValueError:
                pass
        i += 1
    return i


# --- ONNX Runtime onnxruntime_perf_test ---------------------------------------------------------------------

_ORT_LAT = {"Min": "min_ms", "Max": "max_ms", "P50": "p50_ms", "P90": "p90_ms", "P95": "p95_ms", "P99": "p99_ms",
            "P999": "p999_ms"}
_ORT_PLACED = re.compile(r"(?:Node\(s\)|All nodes) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_ORT_NODE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]\s{3,}(\S+) \((.*)\)\s*$")
_ORT_CAPABILITY = re.compile(r"(\w+ExecutionProvider)::GetCapability, number of partitions supported by \w+: (\d+) "
                             r"number of nodes in the graph: (\d+) number of nodes supported by \w+: (\d+)")


def _parse_ort(run: NativeRun, text: str) -> None:
    provider = None
    counts: dict[str, int] = {}
    errors: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if m := re.match(r"Session creation time cost: ?(\S+) s", line):
            run.init_ms = _num(m.group(1)) * 1e3
        elif m := re.match(r"First inference time cost: ?(\S+) ms", line):
            run.first_run_ms = _num(m.group(1))
        elif m := re.match(r"Total inference requests: ?(\d+)", line) or re.match(r"Total iterations: ?(\d+)", line):
            run.runs = int(m.group(1))
        elif m := re.match(r"Average (?:inference )?time cost(?: total)?: ?(\S+) ms", line):
            run.mean_ms = _num(m.group(1))
        elif m := re.match(r"Total inference time cost: ?(\S+) s", line) or re.match(r"Total time cost: ?(\S+)$", line):
            run.extra["total_ms"] = _num(m.group(1)) * 1e3
        elif m := re.match(r"Number of inferences per second: ?(\S+)", line):
            run.extra["inferences_per_s"] = _num(m.group(1))
        elif m := re.match(r"Peak working set size: ?(\d+)", line):
            run.peak_mem_mb = int(m.group(1)) / 2**20
        elif m := re.match(r"(Min|Max|P50|P90|P95|P99|P999) Latency: (\S+) s", line):
            key = _ORT_LAT[m.group(1)]
            if key == "p999_ms":
                run.extra[key] = _num(m.group(2)) * 1e3
            else:
                setattr(run, key, _num(m.group(2)) * 1e3)
        elif m := _ORT_PLACED.search(line):
            provider = m.group(1)
            counts[provider] = int(m.group(2))
        elif (m := _ORT_NODE.search(line)) and provider:
            run.placed.append({"node": m.group(2) or m.group(1), "op_type": m.group(1), "placement": provider})
        elif m := _ORT_CAPABILITY.search(line):
            run.delegate_nodes[m.group(1)] = {"nodes": int(m.group(4)), "of": int(m.group(3)),
                                              "partitions": int(m.group(2))}
        elif line.startswith("Run failed:") or line.startswith("[E:onnxruntime") or \
                re.search(r"is not supported in this build|Exception|^Error", line):
            errors.append(line)
    total = sum(counts.values())
    for prov, n in counts.items():
        if prov != "CPUExecutionProvider" and prov not in run.delegate_nodes:
            run.delegate_nodes[prov] = {"nodes": n, "of": total, "partitions": None}
    if run.placed and len(run.placed) != total:
        run.placed = []  # the listing was cut short: counts only
    if errors:
        run.status, run.reason = "failed", errors[0]
    elif run.mean_ms is None:
        run.status = "failed"
        run.reason = "printed no timings" + (f" (last line: {_last_line(text)})" if text.strip() else "")


# --- ExecuTorch executor_runner -----------------------------------------------------------------------------

_ET_LOG = re.compile(r"^([DIEWF]) [\d:.]+ executorch:([^\]]+)\] ?(.*)$")


def _parse_executorch(run: NativeRun, text: str) -> None:
    errors: list[str] = []
    done = False
    for raw in text.splitlines():
        m = _ET_LOG.match(raw.strip())
        if not m:
            if "Aborted" in raw or "terminat" in raw:
                errors.append(raw.strip())
            continue
        level, msg = m.group(1), m.group(3)
        if level in ("E", "F"):
            errors.append(msg)
        elif mm := re.match(r"Model loaded in (\S+) ms", msg):
            run.init_ms = _num(mm.group(1))
        elif mm := re.match(r"Iteration \d+ of \d+: (\S+) ms", msg):
            run.samples_ms.append(_num(mm.group(1)))
        elif mm := re.match(r"Model executed successfully (\d+) time\(s\) in (\S+) ms", msg):
            run.runs = int(mm.group(1))
            run.extra["total_ms"] = _num(mm.group(2).rstrip("."))
            run.mean_ms = run.extra["total_ms"] / max(1, run.runs)
            done = True
        elif mm := re.match(r"Resetting threadpool with num threads = (\d+)", msg):
            run.extra["threads"] = int(mm.group(1))
    if run.samples_ms:
        run.first_run_ms = run.samples_ms[0]  # executor_runner does no warm-up: its first timed run is the first
    if errors:
        run.status, run.reason = "failed", errors[0]
    elif not done:
        run.status = "failed"
        run.reason = "printed no 'Model executed successfully' line" + (
            f" (last line: {_last_line(text)})" if text.strip() else "")


# --- PyTorch Mobile speed_benchmark_torch -------------------------------------------------------------------


def _parse_torch(run: NativeRun, text: str) -> None:
    errors: list[str] = []
    done = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("PyTorchObserver "):
            try:
                rec = json.loads(line[len("PyTorchObserver "):])
            except ValueError:
                continue
            if rec.get("metric") == "latency" and rec.get("type") == "NET":
                scale = {"us": 1e-3, "ms": 1.0}.get(rec.get("unit", "us"), 1e-3)
                run.samples_ms.append(float(rec["value"]) * scale)
        elif m := re.match(r"Main run finished\. Microseconds per iter: (\S+)\. Iters per second: (\S+)", line):
            run.mean_ms = _num(m.group(1)) / 1e3
            run.extra["iters_per_s"] = _num(m.group(2))
            done = True
        elif line.startswith("what():") or line.startswith("terminate called") or "Error" in line.split(" ")[0]:
            errors.append(line)
    if run.samples_ms:
        run.runs = len(run.samples_ms)
    if errors:
        what = [e for e in errors if e.startswith("what():")]
        run.status, run.reason = "failed", (what or errors)[0]
    elif not done:
        run.status = "failed"
        run.reason = "printed no 'Main run finished' line" + (
            f" (last line: {_last_line(text)})" if text.strip() else "")
