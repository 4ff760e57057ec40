"""Shared set-up for the benchmark scripts: one r18 checkpoint converted once, fcbench's own
timing through the library, and a header that says what ran where."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

FORMATS = ("onnx", "tflite", "openvino", "ptl", "pte")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions; medians are reported")
    p.add_argument("--workdir", default=None, help="where the model and artifacts go (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="tiny model, short runs: checks the script works")
    return p


def header(args: argparse.Namespace) -> None:
    import torch

    import fcbench

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print("$ " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    print(f"fcbench {fcbench.__version__}, torch {torch.__version__}, python {platform.python_version()}, "
          f"{cpu}, {os.cpu_count()} cores, threads {args.threads}, load average {os.getloadavg()[0]:.2f}")
    print()


def workdir(args: argparse.Namespace) -> Path:
    if args.workdir:
        path = Path(args.workdir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="fcbench-bench-"))


def r18_artifacts(root: Path, quick: bool, formats: tuple[str, ...] = FORMATS) -> dict[str, Path]:
    """Full-size r18 (112x112, 512-d) or, with --quick, a tiny one: trained for a few steps so its
    activations are those of a real model, then converted with fcbench; reused when present."""
    from fcbench.convert import convert
    from fcbench.train.config import TrainConfig
    from fcbench.train.loop import train

    ckpt = root / "r18" / "model.pt"
    if not ckpt.exists():
        opts = {"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32]} if quick else {}
        train(TrainConfig(model="r18", model_options=opts, data="synthetic:faces",
                          data_options={"num_classes": 8, "samples_per_class": 4}, epochs=1, batch_size=8,
                          lr=0.01, out=str(ckpt.parent), store=str(root / "train.sqlite")))
    out = {"pytorch": ckpt}
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml", "ptl": ".ptl", "pte": ".pte"}
    missing = [f for f in formats if not (ckpt.parent / ("model" + suffix[f])).exists()]
    if missing:
        for o in convert(ckpt, missing):
            if o.status != "ok":
                raise SystemExit(f"convert to {o.format} failed: {o.status} {o.reason}")
    out.update({f: ckpt.parent / ("model" + suffix[f]) for f in formats})
    return out


def fcbench_cell(artifact: Path, backend: str, args: argparse.Namespace, store: Path):
    """One fcbench bench cell through the library, exactly as `fcbench bench` runs it."""
    from fcbench.bench.run import BenchConfig, bench

    (cell,) = bench(BenchConfig(artifacts=[str(artifact)], backends=[backend], threads=args.threads, warmup=10,
                                runs=20, min_seconds=args.seconds, store=str(store)))
    if cell.status != "ok":
        raise SystemExit(f"fcbench {backend} on {artifact.name}: {cell.status}: {cell.reason}")
    return cell


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def markdown(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
