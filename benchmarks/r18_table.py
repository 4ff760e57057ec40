"""The full table for r18: eager PyTorch fp32 and every edge runtime on this host, in one run.

One r18 checkpoint converted by fcbench to every format, each timed through fcbench's library
(``fcbench.benchmark.run.bench``, as ``fcbench bench`` does). The whole list is run --reps times, forward
then reversed (A..I, I..A, ...); p50 and p90 are medians over repetitions, speed-up is eager
PyTorch's p50 over the cell's, GFLOP/s is the model's FLOPs over the p50 and share of peak divides it
by the machine's measured GEMM peak for the precision the runtime reported running. ``init ms`` is
load + compile, in the first repetition and (median) in the later ones; importing the runtime is
not in it (fcbench imports it before timing the load) and is shown apart as ``import ms (1st)``,
the first time this process imports that runtime.
"""

from __future__ import annotations

from _common import Run, artifacts, busy_note, fcbench_cell, interleaved, markdown, median, parse, parser, workdir

CELLS = [  # (label, format, backend)
    ("eager PyTorch fp32", "pytorch", "pytorch:eager"),
    ("ONNX Runtime cpu", "onnx", "onnxruntime:cpu"),
    ("OpenVINO f32", "openvino", "openvino-f32"),
    ("OpenVINO default", "openvino", "openvino-latency"),
    ("OpenCV DNN", "onnx", "opencv-dnn:cpu"),
    ("TFLite xnnpack", "tflite", "tflite:xnnpack"),
    ("TFLite cpu", "tflite", "tflite:cpu"),
    ("PyTorch Mobile", "ptl", "pytorch-mobile:cpu"),
    ("ExecuTorch xnnpack", "pte", "executorch:xnnpack"),
]


def not_run_here() -> list[str]:
    """Every other backend variant that cannot run on this host, with the reason (nothing is loaded)."""
    from fcbench.backends import expand, get_backend

    out = []
    for spec in expand(["all"]):
        backend = get_backend(spec.plugin)
        ok, reason = backend.available()
        if ok:
            ok, reason = backend.variant_available(spec.variant)
        if not ok:
            out.append(f"- {spec.label}: {reason}")
    return out


def main() -> None:
    from fcbench.benchmark.peak import machine_peak

    args = parse(parser(__doc__.splitlines()[0]))
    run = Run(args)
    root = workdir(args)
    art = artifacts(root, args.quick)
    peak = machine_peak(args.threads)["best"]  # measured once per CPU and thread count, then cached
    print("machine peak (2048² GEMM, best of numpy/torch/OpenVINO, cached): "
          + ", ".join(f"{p} {e['gflops']:.0f} GFLOP/s ({e['by']})" for p, e in peak.items()))
    store = root / "bench.sqlite"

    def measure(fmt: str, backend: str):
        return lambda: {"cell": fcbench_cell(art[fmt], backend, args, store)}

    res = interleaved({label: measure(fmt, backend) for label, fmt, backend in CELLS}, args)
    eager = median([r["cell"].stats.p50_ms for r in res[CELLS[0][0]]])
    rows = []
    for label, fmt, backend in CELLS:
        cells = [r["cell"] for r in res[label]]
        first, c = cells[0], cells[-1]
        p50 = median([x.stats.p50_ms for x in cells])
        flops = first.gflops_per_s * first.stats.p50_ms / 1e3 if first.gflops_per_s else None  # GFLOP per query
        gflops = flops / (p50 / 1e3) if flops else None
        peak_prec = first.extra.get("peak_precision", "f32")
        peak_g = (peak.get(peak_prec) or peak.get("f32") or {}).get("gflops")
        rows.append({
            "runtime": label, "artifact": art[fmt].name, "backend": backend, "p50 ms": p50,
            "p90 ms": median([x.stats.p90_ms for x in cells]), "speed-up vs eager": eager / p50,
            "GFLOP/s": f"{gflops:.0f}" if gflops else "-",
            "share of peak": f"{100 * gflops / peak_g:.0f} % ({peak_prec})" if gflops and peak_g else "-",
            "import ms (1st)": f"{first.extra.get('import_ms', 0):.0f}",
            "init ms (1st)": f"{first.init_ms:.0f}",
            "init ms (later)": f"{median([x.init_ms for x in cells[1:]]):.0f}" if len(cells) > 1 else "-",
            "size MB": f"{c.size_mb:.1f}", "precision": c.extra.get("precision") or "not reported",
            "placement": c.extra.get("placement") or "not reported",
            "p50 per rep": "/".join(f"{x.stats.p50_ms:.2f}" for x in cells),
            "others": f"{max(r['others_cores'] for r in res[label]):.2f}",
        })
    print()
    print(markdown(rows, ["runtime", "artifact", "backend", "p50 ms", "p90 ms", "speed-up vs eager", "GFLOP/s",
                          "share of peak", "import ms (1st)", "init ms (1st)", "init ms (later)", "size MB",
                          "precision"]))
    print()
    print(markdown(rows, ["runtime", "placement", "p50 per rep", "others"]))
    print("(others: the most cores other processes used during one of the runtime's repetitions; "
          f"{busy_note(res)})")
    skipped = not_run_here()
    if skipped:
        print("\nbackend variants that cannot run here:")
        print("\n".join(skipped))
    run.end()


if __name__ == "__main__":
    main()
