"""fcbench's timing of ONNX Runtime vs a bare `session.run` loop on the same file and input.

The bare loop builds its own InferenceSession with the session options fcbench's onnxruntime:cpu
backend sets (all graph optimizations, intra-op threads = --threads, inter-op 1, log severity 3,
the placement-recording config entry, CPUExecutionProvider only), feeds the array fcbench feeds
(``fcbench.benchmark.run.prepared_input``) and times each ``session.run`` with ``perf_counter_ns``, with
the same first run, warm-up and stop rule (--runs and --seconds both reached). The two are repeated
--reps times in A,B,B,A order; the medians over repetitions of their p50s are compared. Target: within 2 %.
"""

from __future__ import annotations

import time

import numpy as np
from _common import Run, artifacts, busy_note, fcbench_cell, interleaved, markdown, median, parse, parser, workdir


def bare_loop(onnx_path, x: np.ndarray, args) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)  # first run, untimed as fcbench times it apart
    for _ in range(args.warmup):
        sess.run(None, feed)
    samples: list[float] = []
    start = time.perf_counter_ns()
    while True:
        t = time.perf_counter_ns()
        sess.run(None, feed)
        end = time.perf_counter_ns()
        samples.append((end - t) / 1e6)
        if len(samples) >= args.runs and (end - start) / 1e9 >= args.seconds:
            break
    del sess
    return {"p50": float(np.median(samples)), "mean": float(np.mean(samples)), "runs": len(samples)}


def main() -> None:
    from fcbench.artifact import read_manifest
    from fcbench.benchmark.run import prepared_input

    args = parse(parser(__doc__.splitlines()[0]))
    run = Run(args)
    root = workdir(args)
    onnx = artifacts(root, args.quick)["onnx"]
    x = prepared_input(read_manifest(onnx), batch=1)  # the input fcbench feeds every backend
    store = root / "bench.sqlite"

    def ours() -> dict:
        cell = fcbench_cell(onnx, "onnxruntime:cpu", args, store)
        return {"p50": cell.stats.p50_ms, "mean": cell.stats.mean_ms, "runs": cell.stats.runs}

    res = interleaved({"fcbench": ours, "bare": lambda: bare_loop(onnx, x, args)}, args)
    f50, b50 = median([r["p50"] for r in res["fcbench"]]), median([r["p50"] for r in res["bare"]])
    fmean, bmean = median([r["mean"] for r in res["fcbench"]]), median([r["mean"] for r in res["bare"]])
    ratio = f50 / b50
    paired = sorted(f["p50"] / b["p50"] for f, b in zip(res["fcbench"], res["bare"], strict=True))
    print()
    print(markdown([{"bare session.run p50 ms": b50, "fcbench p50 ms": f50, "ratio p50": ratio,
                     "within 2 %": "yes" if abs(ratio - 1) <= 0.02 else "NO",
                     "ratio per rep (min-max)": f"{paired[0]:.3f}-{paired[-1]:.3f}", "bare mean ms": bmean,
                     "fcbench mean ms": fmean, "ratio mean": fmean / bmean}],
                   ["bare session.run p50 ms", "fcbench p50 ms", "ratio p50", "within 2 %", "ratio per rep (min-max)",
                    "bare mean ms",
                    "fcbench mean ms", "ratio mean"]))
    print()
    print("per repetition, fcbench p50 / bare p50 ms, runs (cores other processes used during the pair):")
    print(", ".join(f"{f['p50']:.2f}/{b['p50']:.2f} ms, {f['runs']}/{b['runs']} runs "
                    f"(others {max(f['others_cores'], b['others_cores']):.2f})"
                    for f, b in zip(res["fcbench"], res["bare"], strict=True)))
    print(busy_note(res))
    run.end()


if __name__ == "__main__":
    main()
