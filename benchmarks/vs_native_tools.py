"""fcbench's p50 beside the runtimes' own benchmark tools, on the same files, in one run.

- OpenVINO ``benchmark_app`` on the same model.xml: ``-hint latency -api sync``, 1 stream and --threads
  threads, f32 input, once with ``-infer_precision f32`` (vs fcbench's ``openvino-f32`` profile) and once
  with the CPU's default precision (bf16 on CPUs with AVX-512 BF16; vs ``openvino-latency``). benchmark_app
  refuses ``-nthreads``/``-nstreams`` together with ``-hint latency`` (a rule of its command line, it says,
  not of OpenVINO), so they go in ``-load_config`` as INFERENCE_NUM_THREADS and NUM_STREAMS; the compiled
  model's values it prints are checked. Its median is compared with fcbench's p50.
- ``litert-benchmark`` (ai-edge-litert's tool: CompiledModel on the CPU accelerator, which is XNNPACK)
  on the same model.tflite with ``--num_threads`` vs fcbench's ``tflite:xnnpack`` (the Interpreter with its
  default XNNPACK delegate, ``num_threads``). Its median is compared with fcbench's p50.

Each pair is repeated --reps times in A,B,B,A order; medians over repetitions are compared and the
means are shown too. Target: within 5 %.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from _common import Run, artifacts, busy_note, fcbench_cell, interleaved, markdown, median, parse, parser, workdir

BIN = Path(sys.executable).parent
OV_TYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
COMMANDS: dict[str, str] = {}  # one example command line per tool, printed at the end


def _exe(name: str) -> str:
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not exe:
        raise SystemExit(f"{name} not found beside {sys.executable} or on PATH")
    return exe


def benchmark_app(xml: Path, args, precision: str | None, tmp: Path) -> dict:
    config = tmp / "ov_config.json"
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(args.threads), "NUM_STREAMS": "1"}}))
    cmd = [_exe("benchmark_app"), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync",
           "-load_config", str(config), "-ip", "f32", "-t", str(max(1, math.ceil(args.seconds)))]
    if precision:
        cmd += ["-infer_precision", precision]
    COMMANDS[f"benchmark_app {precision or 'default'}"] = shlex.join(cmd) + f"    # {config}: {config.read_text()}"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr

    def grab(pattern: str) -> str | None:
        m = re.search(pattern, out)
        return m.group(1) if m else None

    def ms(label: str) -> float | None:  # benchmark_app prints "us" below 1 ms
        m = re.search(label + r":\s*([\d.]+) (ms|us)", out)
        return None if not m else float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)

    med, mean = ms("Median"), ms("Average")
    if proc.returncode != 0 or med is None or mean is None:
        raise SystemExit(f"benchmark_app failed (rc {proc.returncode}) or printed no median/average:\n{out[-3000:]}")
    prec = grab(r"INFERENCE_PRECISION_HINT: <Type: '(\w+)'>") or "?"
    threads, streams = grab(r"INFERENCE_NUM_THREADS: (\d+)"), grab(r"NUM_STREAMS: (\d+)")
    hint = grab(r"PERFORMANCE_HINT: (\w+)")
    return {"median": med, "mean": mean, "count": int(grab(r"Count:\s*(\d+)") or 0),
            "ran": f"{OV_TYPES.get(prec, prec)}, {threads} threads, {streams} stream, {hint}"}


def litert_benchmark(tflite: Path, args, runs: int, tmp: Path) -> dict:
    result = tmp / "litert.json"
    cmd = [_exe("litert-benchmark"), "--model", str(tflite), "--num_threads", str(args.threads),
           "--warmup_runs", str(args.warmup), "--num_runs", str(runs), "--result_json", str(result)]
    COMMANDS["litert-benchmark"] = shlex.join(cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"litert-benchmark failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    r = json.loads(result.read_text())
    result.unlink()
    lat = r["latency"]
    return {"median": float(lat["median_ms"]), "mean": float(lat["avg_ms"]), "count": int(lat["num_runs"]),
            "ran": f"{'+'.join(r['accelerators'])}, {r['num_threads']} threads, "
                   f"fully accelerated {r['fully_accelerated']}"}


def ours(artifact: Path, backend: str, args, store: Path) -> dict:
    cell = fcbench_cell(artifact, backend, args, store)
    return {"median": cell.stats.p50_ms, "mean": cell.stats.mean_ms, "count": cell.stats.runs,
            "ran": f"{cell.extra.get('precision') or '?'}, {cell.extra.get('placement') or '?'}"}


def main() -> None:
    args = parse(parser(__doc__.splitlines()[0]))
    run = Run(args)
    root = workdir(args)
    art = artifacts(root, args.quick)
    store, tmp = root / "bench.sqlite", root / "tools"
    tmp.mkdir(exist_ok=True)
    xml, tflite = art["openvino"], art["tflite"]

    # litert-benchmark takes a run count, not a duration: size it from a short calibration run
    calib = litert_benchmark(tflite, args, 5, tmp)["median"]
    litert_runs = max(args.runs, math.ceil(args.seconds * 1000 / max(calib, 0.01)))

    pairs = [
        ("OpenVINO f32", "benchmark_app -infer_precision f32", "openvino-f32",
         lambda: ours(xml, "openvino-f32", args, store), lambda: benchmark_app(xml, args, "f32", tmp)),
        ("OpenVINO default (bf16 here)", "benchmark_app", "openvino-latency",
         lambda: ours(xml, "openvino-latency", args, store), lambda: benchmark_app(xml, args, None, tmp)),
        ("TFLite XNNPACK", "litert-benchmark", "tflite:xnnpack",
         lambda: ours(tflite, "tflite:xnnpack", args, store), lambda: litert_benchmark(tflite, args, litert_runs, tmp)),
    ]
    rows, details = [], []
    for label, tool_name, backend, fc, tool in pairs:
        res = interleaved({"fcbench": fc, "tool": tool}, args)
        f_med, t_med = median([r["median"] for r in res["fcbench"]]), median([r["median"] for r in res["tool"]])
        f_mean, t_mean = median([r["mean"] for r in res["fcbench"]]), median([r["mean"] for r in res["tool"]])
        ratio = f_med / t_med
        paired = sorted(f["median"] / t["median"] for f, t in zip(res["fcbench"], res["tool"], strict=True))
        rows.append({"pair": label, "tool": tool_name, "tool median ms": t_med, "fcbench": backend,
                     "fcbench p50 ms": f_med, "ratio p50": ratio,
                     "within 5 %": "yes" if abs(ratio - 1) <= 0.05 else "NO",
                     "ratio per rep (min-max)": f"{paired[0]:.3f}-{paired[-1]:.3f}", "tool mean ms": t_mean,
                     "fcbench mean ms": f_mean, "ratio mean": f_mean / t_mean,
                     "tool ran": res["tool"][0]["ran"], "fcbench ran": res["fcbench"][0]["ran"]})
        details.append(f"- {label}: " + ", ".join(
            f"{f['median']:.2f}/{t['median']:.2f} (others {max(f['others_cores'], t['others_cores']):.2f})"
            for f, t in zip(res["fcbench"], res["tool"], strict=True)) + f"; {busy_note(res)}")
    print()
    print(markdown(rows, ["pair", "tool", "tool median ms", "fcbench", "fcbench p50 ms", "ratio p50", "within 5 %",
                          "ratio per rep (min-max)", "tool mean ms", "fcbench mean ms", "ratio mean"]))
    print()
    print(markdown(rows, ["pair", "tool ran", "fcbench ran"]))
    print()
    print("per repetition, fcbench p50 / tool median ms (cores other processes used during the pair):")
    print("\n".join(details))
    print("\ntool command lines:")
    print("\n".join(f"- {c}" for c in COMMANDS.values()))
    run.end()


if __name__ == "__main__":
    main()
