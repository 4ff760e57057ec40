"""P2: ``fcbench optimize`` on a trained IResNet-18 (112x112): speed-up of what it finds over eager PyTorch fp32
and over the fastest uncompressed candidate, within 1 point of verification accuracy.

r18 is trained on built-in synthetic faces (``--epochs``, default 10: near where more epochs stop helping, so
fine-tuning a pruned model does not simply go on training an unfinished parent); ``fcbench optimize --backend
openvino,onnxruntime --max-drop 1 --prune 0.5 --finetune-epochs 2 --finetune-distill embedding-mse
--finetune-distill-opt weight=1000`` then measures every candidate (each runtime's float model at each
precision, every installed quantization method of those runtimes, the channel-pruned model fine-tuned as a
distillation student of the parent, and quantized) on this machine in one run, and prints its table.
Reported: the chosen candidate's speed-up over eager PyTorch (target >= 15x) and over the fastest uncompressed
candidate (target >= 2.5x), its accuracy drop (<= 1 point), the frontier, and the search's duration, with the
CPU.
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
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--finetune-distill", default="embedding-mse",
                   help="distill method of the fine-tuning, the parent as teacher ('' for plain fine-tuning)")
    p.add_argument("--distill-weight", type=float, default=1000.0, help="its weight (default 1000)")
    p.add_argument("--prune", default="0.5", help="channel-pruning ratios to search (comma-separated)")
    p.add_argument("--pairs", type=int, default=600, help="verification pairs (default 600)")
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--backends", default="openvino,onnxruntime")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per candidate (default 2)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny model and short runs: checks the script works")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import fcbench
    from fcbench.quantization.why import cpu_flags, int8_dot
    from fcbench.render.views import optimize as render

    root = Path(args.workdir or tempfile.mkdtemp(prefix="fcbench-opt-"))
    size, width, epochs = (32, 0.125, 1) if args.quick else (112, 1.0, args.epochs)
    train_data = {"num_classes": 32, "samples_per_class": 16}
    ckpt = root / f"r18-w{width:g}-{size}" / "model.pt"
    t0 = time.perf_counter()
    if not ckpt.exists():
        fcbench.train(model="r18", model_options={"width": width, "input_size": [size, size]},
                      data="synthetic:faces", data_options=train_data, epochs=epochs, batch_size=32, lr=0.05,
                      threads=args.threads, out=str(ckpt.parent))
    print(f"trained {ckpt} in {time.perf_counter() - t0:.0f} s")
    name, flags = cpu_flags()
    print(f"CPU: {name}; int8 dot-product: {', '.join(int8_dot(flags)) or 'none'}; threads {args.threads}")
    res = fcbench.optimize(checkpoint=str(ckpt), backends=args.backends.split(","), max_drop=args.max_drop,
                           data="synthetic:pairs", data_options={"num_pairs": 50 if args.quick else args.pairs},
                           calib_data="synthetic:faces", prune=[float(r) for r in args.prune.split(",") if r],
                           finetune_epochs=args.finetune_epochs, train_data="synthetic:faces",
                           finetune_distill=args.finetune_distill or None,
                           finetune_distill_options={"weight": args.distill_weight} if args.finetune_distill else {},
                           train_options=train_data, bench_seconds=0.3 if args.quick else args.seconds,
                           threads=args.threads, out=str(root / "optimize"))
    from rich.console import Console

    console = Console(width=160)
    for item in render(res, "table"):
        console.print(item)
    if res.chosen:
        c, f = res.chosen, res.fastest_uncompressed
        vs_eager = res.eager_p50_ms / c.p50_ms
        vs_fast = f.p50_ms / c.p50_ms if f else float("nan")
        print(f"\nP2: chosen {c.name} on {c.backend}: {vs_eager:.1f}x eager PyTorch (target >= 15: "
              f"{'met' if vs_eager >= 15 else 'NOT met'}), {vs_fast:.2f}x the fastest uncompressed "
              f"({f.name if f else '-'} on {f.backend if f else '-'}; target >= 2.5: "
              f"{'met' if vs_fast >= 2.5 else 'NOT met'}), drop {c.drop:+.2f} points (budget {args.max_drop:g}); "
              f"search {res.seconds:.0f} s")
    else:
        print("\nP2: " + "; ".join(res.failures()))


if __name__ == "__main__":
    main()
