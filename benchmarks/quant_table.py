"""Quantization per backend: latency ratio vs the fp32 artifact, accuracy drop and embedding cosine.

One IResNet-18 (--width, 112x112) is trained briefly on built-in synthetic faces; every installed
quantization method (``fcbench plugins --kind technique``, verb quantize) quantizes it with calibration on
synthetic faces, and ``fcbench quantize --bench`` times the float model in the method's format and the
quantized one one after the other on the method's backend (same run, same threads). The accuracy drop is
``fcbench eval --max-drop`` through the runtime against the float parent on synthetic pairs; the cosine is
the quantize verb's fidelity check (mean and 1st percentile over 64 images). The CPU is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--width", type=float, default=0.5, help="r18 width (default 0.5)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model (default 3)")
    p.add_argument("--methods", default="", help="comma-separated methods (default: every installed one)")
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--workdir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny model and short runs: checks the script works")
    args = p.parse_args()
    import fcbench
    from fcbench import formats
    from fcbench.options import EvalConfig
    from fcbench.quantization import get_method, method_names
    from fcbench.quantization.why import cpu_flags, int8_dot

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    root = Path(args.workdir or tempfile.mkdtemp(prefix="fcbench-quant-"))
    size, width, epochs = (32, 0.125, 1) if args.quick else (112, args.width, args.epochs)
    seconds = 0.3 if args.quick else args.seconds
    # the calibration images are the training distribution: torch-qat trains on them with the model's own head
    train_data = {"num_classes": 32, "samples_per_class": 16}
    ckpt = root / f"r18-w{width:g}-{size}" / "model.pt"
    if not ckpt.exists():
        fcbench.train(model="r18", model_options={"width": width, "input_size": [size, size]},
                      data="synthetic:faces", data_options=dict(train_data),
                      epochs=epochs, batch_size=32, lr=0.05, threads=args.threads, out=str(ckpt.parent))
    name, flags = cpu_flags()
    print(f"CPU: {name}; int8 dot-product: {', '.join(int8_dot(flags)) or 'none'}; threads {args.threads}")
    methods = [m for m in (args.methods.split(",") if args.methods else method_names()) if m]
    rows = []
    for m in methods:
        method = get_method(m)
        ok, why = method.available()
        if not ok:
            print(f"{m}: not available here: {why}")
            continue
        t0 = time.perf_counter()
        try:
            res = fcbench.quantize(input=str(ckpt), method=m, calib_data="synthetic:faces", calib_size=128,
                                   calib_options=dict(train_data),
                                   bench=method.backend, bench_seconds=seconds, threads=args.threads,
                                   out=str(root / f"q-{m}{formats.get(method.format).suffix}"))
        except fcbench.FcbenchError as exc:
            print(f"{m}: failed: {exc}")
            continue
        rep = fcbench.evaluate(EvalConfig(checkpoints=[str(res.output)], data="synthetic:pairs",
                                          data_options={"num_pairs": args.pairs}, max_drop=100,
                                          threads=args.threads))
        from fcbench.evaluation import headline_drop

        drop = headline_drop(rep.reports[0])[1] if rep.reports else None
        sp, fid = res.speed, res.fidelity
        rows.append({"method": m, "backend": sp["backend"], "fp32 ms": f"{sp['float_p50_ms']:.3f}",
                     "int8 ms": f"{sp['p50_ms']:.3f}", "latency ratio": f"{sp['p50_ms'] / sp['float_p50_ms']:.2f}",
                     "drop (points)": "-" if drop is None else f"{drop:.2f}",
                     "cosine mean": f"{fid['cosine_mean']:.4f}", "cosine p1": f"{fid['cosine_p1']:.4f}",
                     "size ratio": f"{res.size_ratio:.2f}", "s": f"{time.perf_counter() - t0:.0f}"})
        print(rows[-1], flush=True)
        for reason in sp.get("why_not_faster", []):
            print(f"  not faster: {reason}")
    cols = list(rows[0]) if rows else []
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
