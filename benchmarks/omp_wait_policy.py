"""What OpenMP's wait policy does to torch beside a busy neighbour: a reason for the test suite's setting.

Times one forward pass of a tiny detector (ssd-mobilenetv2, width 0.25, 64x64) in fresh processes: one torch
thread, two threads with OpenMP's default wait policy (threads spin while they wait for each other) and two
threads with ``OMP_WAIT_POLICY=PASSIVE``: alone, beside a neighbour process that spins on one core, and as
one of two such processes running at once (two pytest-xdist workers on a 2-core machine, each starting a
command with the same thread count). Prints the medians and their ratios to the quiet one-thread time.
Not a timed test: a script, run by hand; figures go to docs/performance.md.

    python benchmarks/omp_wait_policy.py [--reps 5] [--passes 30]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
from fcbench.models import create
torch.set_num_threads(int(sys.argv[1]))
m = create("ssd-mobilenetv2", width=0.25, input_size=64, num_classes=3).eval()
x = torch.randn(1, 3, 64, 64)
ts = []
with torch.no_grad():
    for _ in range(3):
        m(x)
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter(); m(x); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps(ts[len(ts) // 2] * 1e3))
"""


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _once(threads: int, policy: str | None, passes: int, copies: int = 1) -> float:
    """The median ms of ``copies`` processes started at once (the median of their medians)."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("OMP_NUM_THREADS", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(threads), str(passes)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a timing process failed")
    return statistics.median(float(json.loads(o.strip().splitlines()[-1])) for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="fresh processes per setting (default 5)")
    ap.add_argument("--passes", type=int, default=30, help="timed forward passes per process (default 30)")
    a = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    print(f"CPU: {cpu}, {os.cpu_count()} cores; torch forward of ssd-mobilenetv2 w0.25 64x64, median ms of "
          f"{a.passes} passes, median of {a.reps} processes")
    settings = [(1, None), (2, None), (2, "PASSIVE")]
    results: dict[tuple, float] = {}
    for neighbour in ("none", "spinning", "twin"):
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,)) if neighbour == "spinning" else None
        if spinner:
            spinner.start()
            time.sleep(0.5)
        try:
            for threads, policy in settings:
                results[neighbour, threads, policy] = statistics.median(
                    _once(threads, policy, a.passes, copies=2 if neighbour == "twin" else 1) for _ in range(a.reps))
        finally:
            if spinner:
                stop.set()
                spinner.join()
    base = results["none", 1, None]
    print(f"{'neighbour':<12}{'threads':>8}  {'wait policy':<12}{'ms':>10}{'x quiet 1 thread':>18}")
    for (neighbour, threads, policy), ms in results.items():
        print(f"{neighbour:<12}{threads:>8}  {policy or 'default':<12}{ms:>10.2f}{ms / base:>18.2f}")
    print("twin: two such processes at once, same threads and policy")


if __name__ == "__main__":
    main()
