"""Shared helpers of the benchmark scripts (nothing here is collected by pytest).

- ``parser()``: the knobs every script takes; ``--quick`` shrinks model and runs to a smoke test.
- ``Run``: prints the exact command line, versions, CPU and ``uptime`` first; at the end ``uptime``
  again and how much CPU *other* processes used while the script ran (the load average alone
  cannot say: a 2-thread benchmark on 2 cores puts it near 2 by itself).
- ``artifacts()``: one r18 checkpoint, trained 2 steps, converted with fcbench's own ``convert``; made
  once per ``--workdir`` in a child process, so the measuring process never ran an exporter or a
  parity check (``python _common.py prepare DIR [--quick]`` is that child).
- ``fcbench_cell()``: one cell through ``fcbench.benchmark.run.bench``, as ``fcbench bench`` runs it (by
  default in the subprocess bench worker), into a store under the workdir (never results/fcbench.sqlite).
- ``interleaved()``: repetitions in A,B,B,A order, so a linear drift cancels out of the medians; on a
  shared machine it waits for other processes to go quiet and repeats a disturbed repetition.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUFFIX = {"pytorch": ".pt", "onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml", "ptl": ".ptl", "pte": ".pte"}
DISTS = ("fcbench", "torch", "numpy", "onnxruntime", "openvino", "ai-edge-litert", "executorch",
         "opencv-python-headless", "opencv-python")
QUICK_MODEL = {"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32]}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2, help="threads every runtime gets (default 2)")
    p.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement (default 5)")
    p.add_argument("--runs", type=int, default=50, help="minimum timed runs per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before each measurement (default 10)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions; medians are reported (default 5)")
    p.add_argument("--workdir", default=None,
                   help="model, artifacts and the temporary results store (default: a new temp dir); "
                        "pass the same one to every script to convert once")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each measurement wait up to this many seconds (15x in all) for other processes to "
                        "go quiet, and repeat a repetition they disturbed (default 60, with --quick 0; 0: measure "
                        "regardless)")
    p.add_argument("--busy", type=float, default=0.15,
                   help="cores other processes may use during a measurement before it counts as disturbed")
    p.add_argument("--quick", action="store_true", help="tiny model, short runs: checks the script works")
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    args = p.parse_args()
    if args.quick:
        args.seconds, args.runs, args.warmup, args.reps = min(args.seconds, 0.3), min(args.runs, 10), 2, 2
        args.quiet_wait = 0.0 if args.quiet_wait is None else args.quiet_wait
    elif args.quiet_wait is None:
        args.quiet_wait = 60.0
    return args


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def uptime() -> str:
    exe = shutil.which("uptime")
    if exe:
        return subprocess.run([exe], capture_output=True, text=True, check=False).stdout.strip()
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_snapshot() -> tuple[float, float, float, float]:
    """(wall s, CPU s busy on the machine, CPU s of this process and its waited-for children, steal s)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    tck = os.sysconf("SC_CLK_TCK")
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return time.monotonic(), (user + nice + system + irq + softirq) / tck, own, steal / tck


def others_cores(since: tuple[float, float, float, float]) -> float:
    """Average cores used by other processes since a snapshot (machine busy time minus ours)."""
    now = _cpu_snapshot()
    wall = max(now[0] - since[0], 1e-9)
    return max(0.0, (now[1] - since[1]) - (now[2] - since[2])) / wall


class Run:
    """Header and footer: what ran, where, and how loaded the machine was meanwhile."""

    def __init__(self, args: argparse.Namespace) -> None:
        from fcbench.results.context import package_version

        self.args = args
        print("$ " + shlex.join([sys.executable, *sys.argv]) + f"    # cwd {os.getcwd()}")
        print("versions: " + ", ".join(f"{d} {v}" for d in DISTS if (v := package_version(d)))
              + f", python {platform.python_version()}")
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores; threads {args.threads}, seconds {args.seconds}, "
              f"runs {args.runs}, warmup {args.warmup}, reps {args.reps}, quiet-wait {args.quiet_wait:g} s, "
              f"busy {args.busy:g} cores{' (quick)' if args.quick else ''}")
        print(f"before: {uptime()}")
        sys.stdout.flush()
        self.start = _cpu_snapshot()

    def end(self) -> None:
        now = _cpu_snapshot()
        wall = now[0] - self.start[0]
        print()
        print(f"after:  {uptime()}")
        print(f"during the run ({wall:.0f} s): other processes used {others_cores(self.start):.2f} cores on "
              f"average (this script's own threads excluded), hypervisor steal {(now[3] - self.start[3]) / wall:.2f}; "
              f"{_WAITED[0]:.0f} s of it spent waiting for them to go quiet")


def workdir(args: argparse.Namespace) -> Path:
    if args.workdir:
        path = Path(args.workdir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="fcbench-bench-"))


def artifacts(root: Path, quick: bool) -> dict[str, Path]:
    """Every format fcbench makes from one r18 checkpoint, keyed by format; made once per workdir."""
    d = root / ("r18-quick" if quick else "r18")
    out = {fmt: d / ("model" + suffix) for fmt, suffix in SUFFIX.items()}
    if not all(p.exists() and p.with_name(p.name + ".manifest.json").exists() for p in out.values()):
        cmd = [sys.executable, str(HERE / "_common.py"), "prepare", str(d)] + (["--quick"] if quick else [])
        print("preparing artifacts: " + shlex.join(cmd))
        sys.stdout.flush()
        subprocess.run(cmd, check=True)
    man = json.loads(out["onnx"].with_name("model.onnx.manifest.json").read_text())
    cos = {f: json.loads(p.with_name(p.name + ".manifest.json").read_text()).get("extra", {}).get("parity", {})
           .get("cosine") for f, p in out.items() if f != "pytorch"}
    print(f"model: {man['model']['name']} {man['model'].get('options') or ''} input {man['inputs'][0]['shape']}, "
          f"{(man.get('flops') or 0) / 1e9:.3g} GFLOPs, artifacts in {d}; parity cosine vs PyTorch: "
          + ", ".join(f"{f} {c:.6f}" if isinstance(c, float) else f"{f} -" for f, c in cos.items()))
    return out


def _prepare(d: Path, quick: bool) -> None:
    """Child process: train r18 two steps (untrained IResNets have huge activations), convert to every format."""
    from fcbench.conversion import convert
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    ckpt = d / "model.pt"
    if not ckpt.exists():
        train(TrainConfig(model="r18", model_options=QUICK_MODEL if quick else {}, data="synthetic:faces",
                          data_options={"num_classes": 8, "samples_per_class": 4}, epochs=1, max_steps=2,
                          batch_size=8, lr=0.01, out=str(d)))
    missing = [f for f, s in SUFFIX.items() if f != "pytorch" and not (d / ("model" + s)).exists()]
    bad = []
    for o in convert(ckpt, missing):
        print(f"  convert {o.format}: {o.status} {o.parity.get('cosine', '')} {o.reason}".rstrip())
        if o.status != "ok":
            bad.append(o.format)
            for p in d.glob("model" + SUFFIX[o.format] + "*"):
                p.unlink()
    if bad:
        raise SystemExit(f"conversion failed for {', '.join(bad)}")


_CTX: list[Any] = []


def fcbench_cell(artifact: Path, backend: str, args: argparse.Namespace, store: Path, **options: Any):
    """One fcbench bench cell through the library, exactly as ``fcbench bench`` runs it (``options``: more
    ``BenchConfig`` fields, e.g. ``isolation="inprocess"``)."""
    from fcbench.benchmark.run import BenchConfig, bench
    from fcbench.hooks import Hooks
    from fcbench.results.context import RunContext
    from fcbench.results.store import Store

    if not _CTX:
        _CTX.append(RunContext())
    with Store(store) as db:  # the row is stored the moment the cell ends, as the CLI does
        (cell,) = bench(BenchConfig(artifacts=[str(artifact)], backends=[backend], threads=args.threads,
                                    warmup=args.warmup, runs=args.runs, min_seconds=args.seconds, **options),
                        ctx=_CTX[0], hooks=Hooks(on_rows=db.add_many))
    if cell.status != "ok":
        raise SystemExit(f"fcbench {backend} on {artifact.name}: {cell.status}: {cell.reason}")
    return cell


_WAITED = [0.0]  # seconds this script has spent waiting for quiet


def wait_quiet(args: argparse.Namespace) -> None:
    """Wait until other processes use under --busy cores over half a second: at most --quiet-wait s
    per measurement and 15 x --quiet-wait s per script, after which measurements go on regardless."""
    start = time.monotonic()
    while time.monotonic() - start < args.quiet_wait and _WAITED[0] < 15 * args.quiet_wait:
        since = _cpu_snapshot()
        time.sleep(0.5)
        _WAITED[0] += 0.5
        if others_cores(since) < args.busy:
            return


def interleaved(fns: dict[str, Callable[[], dict]], args: argparse.Namespace) -> dict[str, list[dict]]:
    """--reps repetitions of every function, forward order on even repetitions and reversed on odd ones
    (A,B,B,A,A,B...). Each result gets ``others_cores``, the CPU other processes used while it ran. With
    --quiet-wait, a repetition where that passed --busy is run again after waiting for quiet (at most
    2 x --reps extra attempts) and kept only when no quiet one replaced it; ``busy_reps`` counts them."""
    names, clean, busy = list(fns), [], []
    retry = args.quiet_wait > 0
    while len(clean) < args.reps and len(clean) + len(busy) < (3 * args.reps if retry else args.reps):
        rep = {}
        for name in names if len(clean) % 2 == 0 else names[::-1]:
            if retry:
                wait_quiet(args)
            since = _cpu_snapshot()
            rep[name] = fns[name]()
            rep[name]["others_cores"] = others_cores(since)
        (clean if max(r["others_cores"] for r in rep.values()) < args.busy else busy).append(rep)
        if retry and _WAITED[0] >= 15 * args.quiet_wait:
            retry = False  # the wait budget is spent: measure regardless from here on
    used = clean + busy[: args.reps - len(clean)]
    out: dict[str, list[dict]] = {name: [rep[name] for rep in used] for name in names}
    out["busy_reps"] = [{"kept": len(used) - len(clean), "rerun": len(busy) - (len(used) - len(clean))}]
    return out


def busy_note(res: dict[str, list[dict]]) -> str:
    b = res["busy_reps"][0]
    return (f"repetitions disturbed by other processes: {b['rerun']} run again, {b['kept']} kept"
            f"{' (see others)' if b['kept'] else ''}; waited {_WAITED[0]:.0f} s for quiet so far")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def markdown(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "prepare":
        _prepare(Path(sys.argv[2]), "--quick" in sys.argv[3:])
    else:
        raise SystemExit("usage: python _common.py prepare DIR [--quick]  (the scripts call this themselves)")
