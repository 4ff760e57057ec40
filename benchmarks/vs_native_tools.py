"""fcbench's p50 beside the runtimes' own benchmark tools, on the same files, in one run.

- OpenVINO `benchmark_app` (-hint latency -api sync, 1 stream; with 2 cores it uses 2 threads)
  vs fcbench's openvino backend, once asking f32 and once with the CPU's default precision.
- `litert-benchmark` (LiteRT CompiledModel, CPU accelerator = XNNPACK) vs fcbench's tflite:xnnpack.
Each pair is run back to back, repeated --reps times (A, B, A, B, ...); the medians over the
repetitions are compared. Target: within 5 %.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import fcbench_cell, header, markdown, median, parser, r18_artifacts, workdir

BIN = Path(sys.executable).parent


def benchmark_app(xml: Path, seconds: float, precision: str | None) -> tuple[float, int | None]:
    exe = shutil.which("benchmark_app", path=str(BIN)) or "benchmark_app"
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync", "-t", str(max(1, int(seconds)))]
    if precision:
        cmd += ["-infer_precision", precision]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    threads = re.search(r"INFERENCE_NUM_THREADS:\s*(\d+)", out)
    m = re.search(r"Median:\s*([\d.]+)\s*(ms|us)", out)
    if not m:
        raise SystemExit("benchmark_app printed no median:\n" + out[-2000:])
    value = float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)
    return value, int(threads.group(1)) if threads else None


def litert_benchmark(tflite: Path, seconds: float, threads: int, per_run_ms: float) -> float:
    exe = shutil.which("litert-benchmark", path=str(BIN)) or "litert-benchmark"
    runs = max(20, int(seconds * 1000 / max(per_run_ms, 0.1)))
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "r.json"
        subprocess.run([exe, "--model", str(tflite), "--num_runs", str(runs), "--warmup_runs", "10",
                        "--num_threads", str(threads), "--result_json", str(result)],
                       capture_output=True, text=True, check=True)
        return float(json.loads(result.read_text())["latency"]["median_ms"])


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    if args.quick:
        args.seconds, args.reps = 1.0, 1
    header(args)
    root = workdir(args)
    art = r18_artifacts(root, args.quick, ("tflite", "openvino"))
    store = root / "bench.sqlite"
    pairs = [
        ("OpenVINO f32", "benchmark_app -infer_precision f32", "openvino-f32",
         lambda: benchmark_app(art["openvino"], args.seconds, "f32")),
        ("OpenVINO default (bf16 here)", "benchmark_app", "openvino:CPU",
         lambda: benchmark_app(art["openvino"], args.seconds, None)),
    ]
    rows = []
    for label, tool_name, backend, tool in pairs:
        ours, theirs, tool_threads = [], [], None
        for _ in range(args.reps):
            ours.append(fcbench_cell(art["openvino"], backend, args, store).stats.p50_ms)
            t, tool_threads = tool()
            theirs.append(t)
        rows.append({"pair": label, "tool": tool_name, "tool median ms": median(theirs),
                     "fcbench p50 ms": median(ours), "ratio": median(ours) / median(theirs),
                     "threads (tool)": tool_threads})
    ours, theirs = [], []
    for _ in range(args.reps):
        cell = fcbench_cell(art["tflite"], "tflite:xnnpack", args, store)
        ours.append(cell.stats.p50_ms)
        theirs.append(litert_benchmark(art["tflite"], args.seconds, args.threads, cell.stats.p50_ms))
    rows.append({"pair": "TFLite XNNPACK", "tool": "litert-benchmark", "tool median ms": median(theirs),
                 "fcbench p50 ms": median(ours), "ratio": median(ours) / median(theirs),
                 "threads (tool)": args.threads})
    for r in rows:
        r["within 5 %"] = "yes" if abs(r["ratio"] - 1) <= 0.05 else "NO"
    print(markdown(rows, ["pair", "tool", "tool median ms", "fcbench p50 ms", "ratio", "within 5 %",
                          "threads (tool)"]))


if __name__ == "__main__":
    main()
