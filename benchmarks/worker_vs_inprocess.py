"""fcbench's p50 of one cell timed in this process vs through the subprocess bench worker (the default).

The same cell (r18 ONNX on onnxruntime:cpu, --threads threads, same warm-up and stop rule) runs
through ``fcbench.benchmark.run.bench`` with ``isolation="inprocess"`` (``fcbench bench --in-process``) and
``isolation="subprocess"`` (``python -m fcbench.worker`` on the local device: the artifact is copied
into a job folder, a fresh python imports the runtime, loads, times, and writes raw samples; the host
computes the statistics). The two are repeated --reps times in A,B,B,A order; the medians over
repetitions of their p50s are compared. Also shown: the wall time of a whole cell each way (the
worker pays a python start, imports and a copy of the artifact per cell) and the worker's import time.
Target: p50 within 2 % (the worker changes where the timing loop runs, not what it times).
"""

from __future__ import annotations

import time

from _common import Run, artifacts, busy_note, fcbench_cell, interleaved, markdown, median, parse, parser, workdir


def main() -> None:
    from fcbench.devices.fingerprint import fingerprint, machine_info

    args = parse(parser(__doc__.splitlines()[0]))
    run = Run(args)
    info = machine_info()
    print(f"fingerprint {fingerprint(info)}: {info['cpu']}, {info['arch']}, {info['cores']} cores, "
          f"{info['memory_gb']} GB, ISA {' '.join(info['isa']) or '-'}, {info['os']}, kernel {info['kernel']}")
    root = workdir(args)
    onnx = artifacts(root, args.quick)["onnx"]
    store = root / "bench.sqlite"

    def cell(isolation: str) -> dict:
        t = time.perf_counter()
        c = fcbench_cell(onnx, "onnxruntime:cpu", args, store, isolation=isolation)
        return {"p50": c.stats.p50_ms, "mean": c.stats.mean_ms, "runs": c.stats.runs,
                "wall_s": time.perf_counter() - t, "import_ms": c.extra["import_ms"], "init_ms": c.init_ms}

    res = interleaved({"inprocess": lambda: cell("inprocess"), "worker": lambda: cell("subprocess")}, args)
    here, sub = res["inprocess"], res["worker"]
    h50, w50 = median([r["p50"] for r in here]), median([r["p50"] for r in sub])
    paired = sorted(w["p50"] / h["p50"] for w, h in zip(sub, here, strict=True))
    print()
    print(markdown([{"in-process p50 ms": h50, "worker p50 ms": w50, "ratio p50 (worker / in-process)": w50 / h50,
                     "within 2 %": "yes" if abs(w50 / h50 - 1) <= 0.02 else "NO",
                     "ratio per rep (min-max)": f"{paired[0]:.3f}-{paired[-1]:.3f}",
                     "in-process mean ms": median([r["mean"] for r in here]),
                     "worker mean ms": median([r["mean"] for r in sub]),
                     "cell wall s (in-process / worker)": f"{median([r['wall_s'] for r in here]):.2f} / "
                                                          f"{median([r['wall_s'] for r in sub]):.2f}",
                     "worker import ms": median([r["import_ms"] for r in sub]),
                     "init ms (in-process / worker)": f"{median([r['init_ms'] for r in here]):.1f} / "
                                                      f"{median([r['init_ms'] for r in sub]):.1f}"}],
                   ["in-process p50 ms", "worker p50 ms", "ratio p50 (worker / in-process)", "within 2 %",
                    "ratio per rep (min-max)", "in-process mean ms", "worker mean ms",
                    "cell wall s (in-process / worker)", "worker import ms", "init ms (in-process / worker)"]))
    print()
    print("per repetition, in-process p50 / worker p50 ms, runs (cores other processes used during the pair):")
    print(", ".join(f"{h['p50']:.3f}/{w['p50']:.3f} ms, {h['runs']}/{w['runs']} runs "
                    f"(others {max(h['others_cores'], w['others_cores']):.2f})"
                    for h, w in zip(here, sub, strict=True)))
    print(busy_note(res))
    run.end()


if __name__ == "__main__":
    main()
