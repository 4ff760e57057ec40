"""fcbench's timing of ONNX Runtime vs a bare `session.run` loop on the same file and input.

The bare loop builds its own InferenceSession with the options fcbench's onnxruntime backend uses
(all graph optimizations, intra-op threads = --threads, inter-op 1) and times each run with
perf_counter_ns. Both are repeated --reps times, interleaved; medians compared. Target: within 2 %.
"""

from __future__ import annotations

import time

import numpy as np
from _common import fcbench_cell, header, markdown, median, parser, r18_artifacts, workdir


def bare_loop(onnx_path, x: np.ndarray, threads: int, seconds: float) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(10):
        sess.run(None, {name: x})
    samples, start = [], time.perf_counter()
    while len(samples) < 20 or time.perf_counter() - start < seconds:
        t = time.perf_counter_ns()
        sess.run(None, {name: x})
        samples.append((time.perf_counter_ns() - t) / 1e6)
    return float(np.median(samples))


def main() -> None:
    from fcbench.artifact import read_manifest
    from fcbench.bench.run import prepared_input

    args = parser(__doc__.splitlines()[0]).parse_args()
    if args.quick:
        args.seconds, args.reps = 1.0, 1
    header(args)
    root = workdir(args)
    onnx = r18_artifacts(root, args.quick, ("onnx",))["onnx"]
    x = prepared_input(read_manifest(onnx), batch=1)  # the input fcbench feeds every backend
    ours, bare = [], []
    for _ in range(args.reps):
        ours.append(fcbench_cell(onnx, "onnxruntime:cpu", args, root / "bench.sqlite").stats.p50_ms)
        bare.append(bare_loop(onnx, x, args.threads, args.seconds))
    ratio = median(ours) / median(bare)
    print(markdown([{"bare session.run p50 ms": median(bare), "fcbench p50 ms": median(ours), "ratio": ratio,
                     "within 2 %": "yes" if abs(ratio - 1) <= 0.02 else "NO",
                     "per rep (fcbench / bare)": ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ours, bare,
                                                                                            strict=True))}],
                   ["bare session.run p50 ms", "fcbench p50 ms", "ratio", "within 2 %", "per rep (fcbench / bare)"]))


if __name__ == "__main__":
    main()
