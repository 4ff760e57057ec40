""""Why is it not faster?": reasons read from the CPU, the runtime and the artifacts, for a quantized or
pruned artifact that is not faster than its float parent on a backend.

Each check says something fcbench can read, never a guess:

- the CPU's int8 dot-product instructions (``/proc/cpuinfo`` flags: VNNI or AMX on x86, dotprod or
  i8mm on ARM): without them int8 GEMMs widen to 16 bits and gain little or nothing over float;
- what ONNX Runtime really runs: the graph after its optimiser, where ``DequantizeLinear`` nodes
  still feeding a float convolution or matmul are QDQ pairs it did not fuse into integer kernels,
  and dynamic quantization's ``ConvInteger`` whose activations are quantized on every call;
- where the runtime placed the nodes and in which precision (the placement table): compute nodes not
  run in int8, or the float parent already running in bf16 or f16 (so int8 halves the bytes at most);
- convolution channel counts that are not a multiple of the CPU's SIMD width;
- a model so small that the per-call overhead dominates its time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "avx_vnni_int8")
ARM_INT8_DOT = ("asimddp", "i8mm")
SMALL_MS = 0.3  # below this a single-image call is mostly overhead on a CPU
_COMPUTE = re.compile(r"conv|matmul|gemm|fully_?connected|^linear$|^dense$", re.I)
_INT_ORT = {"QLinearConv", "ConvInteger", "MatMulInteger", "QGemm", "QLinearMatMul", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "NhwcQLinearConv"}


def cpu_flags(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """(CPU model name, its feature flags) from ``/proc/cpuinfo`` (empty where it is not readable)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return "", set()
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not name:
            name = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return name, flags


def int8_dot(flags: set[str]) -> list[str]:
    """The int8 dot-product instruction sets among ``flags``."""
    return [f for f in (*X86_INT8_DOT, *ARM_INT8_DOT) if f in flags]


def simd_width(flags: set[str]) -> int:
    """fp32 lanes of the widest vector unit: 16 (AVX-512), 8 (AVX2), 4 (NEON/SSE)."""
    if "avx512f" in flags:
        return 16
    if "avx2" in flags:
        return 8
    return 4


def ort_optimized_ops(path: str | Path, threads: int = 1) -> list[tuple[str, str, list[str]]]:
    """(op type, node name, op types of its consumers) of every node in the graph ONNX Runtime runs
    for ``path`` on its CPU provider after its optimiser (``ORT_ENABLE_ALL``, as fcbench's backend)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath, load_external_data=False).graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    return [(n.op_type, n.name, sorted({c for o in n.output for c in consumers.get(o, [])})) for n in graph.node]


def ort_reasons(path: Path, threads: int = 1) -> list[str]:
    ops = ort_optimized_ops(path, threads)
    counts = Counter(op for op, _, _ in ops)
    out = []
    unfused = Counter(c for op, _, cons in ops if op == "DequantizeLinear" for c in cons if _COMPUTE.search(c))
    if unfused:
        what = ", ".join(f"{n} {op}" for op, n in unfused.most_common())
        out.append(f"QDQ left unfused: after ONNX Runtime's optimiser {sum(unfused.values())} DequantizeLinear "
                   f"node(s) still feed float compute ({what}), which then runs in float with extra "
                   "quantize/dequantize work")
    compute = [op for op, _, _ in ops if _COMPUTE.search(op)]
    floats = [op for op in compute if op not in _INT_ORT]
    if compute and floats and len(floats) < len(compute):
        kinds = Counter(floats)
        out.append(f"{len(floats)} of {len(compute)} compute node(s) still run in float in ONNX Runtime's optimised "
                   f"graph ({', '.join(f'{k} {op}' for op, k in kinds.most_common())})")
    dyn = counts.get("ConvInteger", 0) + counts.get("DynamicQuantizeLinear", 0)
    if counts.get("ConvInteger"):
        out.append(f"dynamic quantization of convolutions: ONNX Runtime runs {counts['ConvInteger']} ConvInteger "
                   f"node(s) with {counts.get('DynamicQuantizeLinear', 0)} DynamicQuantizeLinear, quantizing "
                   "activations on every call with no fused kernel; static quantization (ort-static) avoids it")
    elif dyn:
        out.append(f"dynamic quantization: {counts.get('DynamicQuantizeLinear', 0)} DynamicQuantizeLinear node(s) "
                   "quantize activations on every call")
    return out


def placement_reasons(nodes: list[Any], parent_nodes: list[Any] | None = None) -> list[str]:
    """Reasons from the placement tables (``NodePlacement`` rows) of the artifact and its parent."""
    out = []
    compute = [n for n in nodes if _COMPUTE.search(n.op_type or "")]
    precise = [n for n in compute if n.precision]
    floaty = [n for n in precise if not re.search(r"int8|i8|u8|uint8|int4|i4", n.precision, re.I)]
    if precise and floaty:
        kinds = Counter(n.precision for n in floaty)
        out.append(f"{len(floaty)} of {len(precise)} compute node(s) ran in "
                   f"{', '.join(f'{p} ({k})' for p, k in kinds.most_common())}, not int8, as the runtime reports")
    places = Counter(n.placement for n in nodes if n.placement)
    if len(places) > 1:
        main, _ = places.most_common(1)[0]
        off = sum(k for p, k in places.items() if p != main)
        out.append(f"{off} of {sum(places.values())} node(s) were not taken by {main} "
                   f"({', '.join(f'{p}: {k}' for p, k in places.items() if p != main)})")
    if parent_nodes:
        pp = Counter(n.precision.lower() for n in parent_nodes if n.precision and _COMPUTE.search(n.op_type or ""))
        low = [p for p in pp if p in ("bf16", "f16", "fp16", "bfloat16", "float16")]
        if low:
            out.append(f"the float parent already ran in {'/'.join(low)} (the runtime's choice on this CPU), so int8 "
                       "halves the bytes moved at most")
    return out


def channel_reasons(conv_out_channels: list[int], flags: set[str]) -> list[str]:
    width = simd_width(flags)
    odd = [c for c in conv_out_channels if c % width]
    if not odd:
        return []
    return [f"{len(odd)} of {len(conv_out_channels)} convolution(s) have output channels that are not a multiple "
            f"of {width} (this CPU's SIMD width), e.g. {', '.join(map(str, sorted(set(odd))[:4]))}: kernels pad or "
            "fall back to slower paths (prune --round-to fixes it)"]


def onnx_conv_channels(path: Path) -> list[int]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name: list(t.dims) for t in graph.initializer}
    out = []
    for n in graph.node:
        if n.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            w = n.input[3] if n.op_type == "QLinearConv" else n.input[1]
            dims = inits.get(w)
            if dims is None and n.op_type == "Conv":  # QDQ: the weight comes through a DequantizeLinear
                src = next((m.input[0] for m in graph.node if w in m.output), None)
                dims = inits.get(src or "")
            if dims:
                out.append(int(dims[0]))
    return out


def explain(artifact: Path, manifest: Any, backend: str, p50_ms: float, parent_p50_ms: float,
            nodes: list[Any] | None = None, parent_nodes: list[Any] | None = None,
            threads: int = 1) -> list[str]:
    """Every reason fcbench can read why ``artifact`` (p50 ``p50_ms``) is not faster than its parent
    (``parent_p50_ms``) on ``backend``; empty when it is faster."""
    if p50_ms < 0.95 * parent_p50_ms:
        return []
    name, flags = cpu_flags()
    out = []
    quantized = any(s.verb == "quantize" for s in manifest.lineage)
    if quantized and flags and not int8_dot(flags):
        out.append(f"this CPU ({name or 'unknown'}) has no int8 dot-product instructions (VNNI/AMX on x86, "
                   "dotprod/i8mm on ARM): int8 products are widened to 16 bits and gain little over float")
    if any(s.verb == "prune" and s.technique == "l1-unstructured" for s in manifest.lineage):
        out.append("l1-unstructured pruning zeroes weights but keeps every channel: the exported file is dense "
                   f"and {backend}'s kernels multiply the zeros too; channel pruning removes the work")
    if manifest.format == "onnx" and backend == "onnxruntime":
        # ONNX Runtime reports the file's element types, not what its kernels run: read the optimised graph
        try:
            out += ort_reasons(artifact, threads)
        except Exception as exc:  # the optimised graph could not be read: say so, do not guess
            out.append(f"ONNX Runtime's optimised graph could not be read ({type(exc).__name__})")
        out += placement_reasons([replace(n, precision="") for n in nodes or []], None)
    else:
        out += placement_reasons(nodes or [], parent_nodes)
    if manifest.format == "onnx":
        try:
            out += channel_reasons(onnx_conv_channels(artifact), flags)
        except Exception:
            pass
    if parent_p50_ms < SMALL_MS:
        out.append(f"the float parent runs in {parent_p50_ms:.3f} ms: at this size per-call overhead (input "
                   "conversion, dispatch) outweighs arithmetic, so compression has little to win")
    if not out:
        out.append("nothing fcbench can read explains it (CPU, optimised graph, placement and channel counts look "
                   "fine); profile the runtime's own per-op timings")
    return out


def why_not_faster(artifact: Path, parent: Path, label: str, p50_ms: float, parent_p50_ms: float,
                   threads: int) -> list[str]:
    """``explain`` for two files timed side by side on the backend ``label`` (a profile or plugin:variant):
    when ``artifact`` is not faster, each file is loaded there once more for its placement; empty when it is
    faster. Serves ``quantize --bench`` and ``prune --bench``."""
    if p50_ms < 0.95 * parent_p50_ms:
        return []
    from fcbench.artifact import read_manifest
    from fcbench.backends import expand
    from fcbench.evaluation import _RuntimeModel

    placements = []
    for path in (artifact, parent):
        rt = _RuntimeModel(path, read_manifest(path), label, threads)
        try:
            placements.append(rt.session.placement())
        finally:
            rt.close()
    (spec,) = expand([label])
    return explain(artifact, read_manifest(artifact), spec.plugin, p50_ms, parent_p50_ms, placements[0],
                   placements[1], threads)
