"""The machine's measured peak, for the "share of peak" column.

A large square MatMul is timed with every GEMM installed (numpy, torch, OpenVINO) per
precision, and the best is kept: a slow GEMM would make the peak too low and shares go
above 100 %, which means the peak is wrong (ARCHITECTURE.md). Cached per CPU model and
thread count in ``~/.cache/fcbench/peak.json`` (``FCBENCH_CACHE`` overrides the folder).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.devices.local import _cpu_model


def _cache_file() -> Path:
    root = Path(os.environ.get("FCBENCH_CACHE") or Path.home() / ".cache" / "fcbench")
    return root / "peak.json"


def _best_seconds(fn: Callable[[], Any], min_seconds: float = 0.5, min_runs: int = 3) -> float:
    fn()
    best, start, runs = float("inf"), time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        runs += 1
    return best


def _numpy_gemm(n: int, threads: int) -> dict[str, float]:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return {"f32": 2 * n**3 / _best_seconds(lambda: a @ b) / 1e9}


def _torch_gemm(n: int, threads: int) -> dict[str, float]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        return {"f32": 2 * n**3 / _best_seconds(lambda: torch.matmul(a, b)) / 1e9}
    finally:
        torch.set_num_threads(old)


def _openvino_gemm(n: int, threads: int) -> dict[str, float]:
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    x = ops.parameter([n, n], ov.Type.f32, name="x")
    w = ops.constant(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32))
    model = ov.Model([ops.matmul(x, w, False, False)], [x], "gemm")
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = {}
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precisions = ["f32"] + (["bf16"] if "BF16" in caps else []) + (["f16"] if "FP16" in caps else [])
    from fcbench.backends.openvino import keep_sigaltstack

    for prec in precisions:
        with keep_sigaltstack():  # OpenVINO swaps the thread's signal stack as it compiles and releases
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": prec,
                                                         "INFERENCE_NUM_THREADS": threads,
                                                         "PERFORMANCE_HINT": "LATENCY"})
            req = compiled.create_infer_request()
            out[prec] = 2 * n**3 / _best_seconds(lambda r=req: r.infer({0: a})) / 1e9
            del req, compiled
    return out


GEMMS: dict[str, Callable[[int, int], dict[str, float]]] = {
    "numpy": _numpy_gemm, "torch": _torch_gemm, "openvino": _openvino_gemm,
}


def measure_peak(threads: int, n: int = 2048) -> dict[str, Any]:
    """GFLOP/s per precision: the best over every installed GEMM, with who reached it."""
    by_impl: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    for name, fn in GEMMS.items():
        try:
            by_impl[name] = fn(n, threads)
        except ImportError as exc:
            errors[name] = f"not installed ({exc.name})"
    best: dict[str, dict[str, Any]] = {}
    for impl, per_prec in by_impl.items():
        for prec, gflops in per_prec.items():
            if prec not in best or gflops > best[prec]["gflops"]:
                best[prec] = {"gflops": gflops, "by": impl}
    return {"threads": threads, "n": n, "cpu": _cpu_model(), "best": best, "all": by_impl, "skipped": errors}


def machine_peak(threads: int, *, refresh: bool = False) -> dict[str, Any]:
    """Cached :func:`measure_peak` for this CPU and thread count."""
    path = _cache_file()
    key = f"{_cpu_model()}|threads={threads}"
    cache: dict[str, Any] = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except ValueError:
            cache = {}
    if refresh or key not in cache:
        new = measure_peak(threads)
        old = cache.get(key)
        if old:  # a peak is the best ever seen: a measurement on a busy machine must not lower it
            for prec, entry in old.get("best", {}).items():
                if entry["gflops"] > new["best"].get(prec, {}).get("gflops", 0.0):
                    new["best"][prec] = entry
        cache[key] = new
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=2))
    return cache[key]
