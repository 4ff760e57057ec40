"""ONNX Runtime on an ONNX file, one variant per execution provider.

Options (``[options]`` of a backend profile):
  graph_optimization  "all" (default) | "extended" | "basic" | "disable"
  cpu_fallback        also register CPUExecutionProvider after the variant's provider, for nodes
                      that provider does not take (default true; ignored for the cpu variant)
  session_config      table of raw session config entries (``add_session_config_entry``)
  provider_options    table passed to the variant's provider (e.g. ``device_type`` for openvino,
                      ``device_id`` for cuda)
  any other key       also passed to the variant's provider (not allowed for the cpu variant)

``threads`` sets ``intra_op_num_threads`` (``inter_op_num_threads`` is 1). For xnnpack, which
has its own thread pool, ``threads`` goes to the provider's ``intra_op_num_threads`` and the
session's pool is set to 1 thread without spinning, as ONNX Runtime's XNNPACK page recommends.
For openvino on a CPU device it also goes to the provider as
``load_config = {"CPU": {"INFERENCE_NUM_THREADS": n}}`` unless a load_config is given.

Placement: ONNX Runtime 1.22+ records which provider each node was assigned to when the
session config ``session.record_ep_graph_assignment_info`` is "1"; ``placement()`` reports
that (one row per node as partitioned; fusions the CPU provider makes afterwards are not
shown). ONNX Runtime has no per-node precision report; its kernels compute in the element type
the model declares for their inputs (a float Conv runs a float kernel, a QLinearConv or
ConvInteger an 8-bit one), so each assigned node's precision is the element type of its first
input in the model file it loaded (the activation: ``u8`` for dynamically quantized nodes, whose
weights are ``i8``). A node the file does not name (made by an optimizer) is left empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
INSTALL = {
    "xnnpack": "onnxruntime builds with XNNPACK: onnxruntime-android/-objc, or build from source with --use_xnnpack",
    "openvino": "pip install onnxruntime-openvino (instead of onnxruntime)",
    "nnapi": "onnxruntime-android (Android only)",
    "cuda": "pip install onnxruntime-gpu (instead of onnxruntime) and an NVIDIA GPU with CUDA",
    "tensorrt": "pip install onnxruntime-gpu (instead of onnxruntime) plus TensorRT libraries",
}
SESSION_KEYS = ("graph_optimization", "cpu_fallback", "session_config", "provider_options")
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"


def _clean(exc: BaseException) -> str:
    """ONNX Runtime's message, one line, without the '[ONNXRuntimeError] : 1 : FAIL :' prefix."""
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", str(exc).strip())
    return " ".join(text.split())[:400]


def _unsupported_op(text: str) -> str | None:
    for pat in (r"([\w.]+:\w+)\(-?\d+\) is not a registered function/op",
                r"Could not find an implementation for (\w+)\(\d+\)",
                r"[Uu]nsupported (?:op|operator)[^:]*:\s*'?([\w.:]+)"):
        m = re.search(pat, text)
        if m:
            return m.group(1)
    return None


_ELEM = {1: "f32", 2: "u8", 3: "i8", 5: "i16", 6: "i32", 7: "i64", 10: "f16", 11: "f64", 16: "bf16",
         17: "f8", 18: "f8", 19: "f8", 20: "f8", 21: "u4", 22: "i4"}  # onnx.TensorProto.DataType


def node_precisions(path: str | Path) -> dict[str, str]:
    """Node name -> element type of its first input, from the ONNX file (weights not loaded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def types(m) -> dict[str, int]:
        g = m.graph
        out = {t.name: t.data_type for t in g.initializer}
        out.update({v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)
                    if v.type.HasField("tensor_type")})
        return out

    known = types(model)
    first_input = {n.name: n.input[0] for n in model.graph.node if n.input and n.input[0]}
    if any(t not in known for t in first_input.values()):  # exporters differ in how much value_info they keep
        try:
            known = types(onnx.shape_inference.infer_shapes(model))
        except Exception:  # inference is best effort; nodes it cannot type stay unreported
            pass
    return {node: _ELEM.get(known.get(t, 0), "") for node, t in first_input.items()}


def _shape_str(shape: list[Any] | tuple[Any, ...]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else (str(d) if d else "?") for d in shape) + "]"


def check_input(backend: str, x: np.ndarray, expected: list[Any] | tuple[Any, ...]) -> None:
    """Raise a one-line FcbenchError when ``x`` does not fit ``expected`` (ints fixed, else dynamic)."""
    fits = len(x.shape) == len(expected) and all(
        not isinstance(e, int) or e <= 0 or e == g for e, g in zip(expected, x.shape, strict=True))
    if not fits:
        raise FcbenchError(f"{backend}: input shape mismatch: model expects {_shape_str(expected)}, "
                           f"got {_shape_str(list(x.shape))}", exit_code=1)


class _OrtSession(Session):
    def __init__(self, sess, provider: str, path: Path) -> None:
        self.sess = sess
        self.provider = provider
        self.path = path
        inp = sess.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        self.output_names = [o.name for o in sess.get_outputs()][:1]
        self.providers = sess.get_providers()

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        check_input("onnxruntime", x, self.input_shape)
        try:
            return self.sess.run(self.output_names, {self.input_name: np.ascontiguousarray(x)})[0]
        except Exception as exc:  # onnxruntime raises its own exception classes (Fail, InvalidArgument, ...)
            raise FcbenchError(f"onnxruntime ({self.provider}): run failed: {_clean(exc)}", exit_code=1) from exc

    def placement(self) -> list[NodePlacement]:
        get = getattr(self.sess, "get_provider_graph_assignment_info", None)
        if get is None:
            return []
        try:
            subgraphs = get()
        except Exception:  # recording not enabled or not supported by this build
            return []
        try:
            precision = node_precisions(self.path)
        except Exception:  # the file is what ORT loaded, so this is unexpected; placement still stands
            precision = {}
        out = []
        for sg in subgraphs:
            for node in sg.get_nodes():
                op = f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
                out.append(NodePlacement(node=node.name, op_type=op, placement=sg.ep_name,
                                         precision=precision.get(node.name, "")))
        return out

    def close(self) -> None:
        self.sess = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)
    variants = tuple(PROVIDERS)
    default_variant = "cpu"
    module = "onnxruntime"
    install_hint = "pip install 'fcbench[onnx]'"
    options = SESSION_KEYS
    runtime_modules = ("onnxruntime",)

    def interleaved_options(self, variant: str, options: dict[str, Any]) -> dict[str, Any]:
        """Sessions timed in turn do not spin: an ORT session's intra-op threads spin for a while after each
        run, on the cores the next session is being timed on. Measured (r18 and r34 at 64x64, 2 threads, 12 A/B
        runs of a file against a copy of itself): the copy read x1.058 slower with spinning, x1.006 without.
        A ``session_config`` that names ``session.intra_op.allow_spinning`` is kept."""
        config = dict(options.get("session_config") or {})
        config.setdefault("session.intra_op.allow_spinning", "0")
        return {**options, "session_config": config}

    def _providers_here(self) -> tuple[list[str], list[str]]:
        """(providers in get_available_providers(), plugin execution providers with devices)."""
        import onnxruntime as ort

        builtin = list(ort.get_available_providers())
        plugin: list[str] = []
        try:
            plugin = sorted({d.ep_name for d in ort.get_ep_devices()} - set(builtin))
        except Exception:  # older onnxruntime without the plugin-EP API
            pass
        return builtin, plugin

    def variant_available(self, variant: str) -> tuple[bool, str]:
        ok, reason = super().variant_available(variant)  # known variant, runtime installed
        if not ok:
            return ok, reason
        import onnxruntime as ort

        builtin, plugin = self._providers_here()
        provider = PROVIDERS[variant]
        if provider in builtin or provider in plugin:
            return True, ""
        return False, (f"onnxruntime {ort.__version__} here has no {provider} (available: "
                       f"{', '.join(builtin + plugin)}); needs {INSTALL.get(variant, 'a build with it')}")

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        options = dict(options or {})
        session_options = {k: options.pop(k) for k in SESSION_KEYS if k in options}
        # other keys are the provider's own options, except on cpu, which takes none
        artifact = self.check_request(artifact, variant, threads, options if variant == "cpu" else {})
        import onnxruntime as ort

        provider = PROVIDERS[variant]
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        level = str(session_options.get("graph_optimization", "all"))
        if level not in levels:
            raise FcbenchError(f"onnxruntime: graph_optimization must be one of {', '.join(levels)}, got '{level}'")
        cpu_fallback = bool(session_options.get("cpu_fallback", True))
        session_config = dict(session_options.get("session_config", {}) or {})
        provider_options = {str(k): str(v) for k, v in dict(session_options.get("provider_options", {}) or {}).items()}
        provider_options.update({str(k): str(v).lower() if isinstance(v, bool) else str(v)
                                 for k, v in options.items()})

        so = ort.SessionOptions()
        so.graph_optimization_level = levels[level]
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only; failures come back as exceptions
        if threads:
            if variant == "xnnpack":
                provider_options.setdefault("intra_op_num_threads", str(threads))
                so.intra_op_num_threads = 1
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            else:
                so.intra_op_num_threads = threads
            device = provider_options.get("device_type", "CPU")
            if variant == "openvino" and device.startswith("CPU") and "load_config" not in provider_options:
                # OpenVINO EP (ORT 1.23+): device properties go in load_config, a JSON string per device
                provider_options["load_config"] = json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads)}})
        so.add_session_config_entry(RECORD_ASSIGNMENT, "1")
        for k, v in session_config.items():
            so.add_session_config_entry(str(k), str(v))

        builtin, _ = self._providers_here()
        providers: list[Any] | None
        if provider in builtin:
            providers = [(provider, provider_options)]
            if variant != "cpu" and cpu_fallback:
                providers.append("CPUExecutionProvider")
        else:  # a plugin execution provider (ORT 1.22+): register it through its devices
            devices = [d for d in ort.get_ep_devices() if d.ep_name == provider]
            so.add_provider_for_devices(devices, provider_options)
            providers = None
        path = str(artifact)
        try:
            sess = ort.InferenceSession(path, so, providers=providers) if providers else ort.InferenceSession(path, so)
        except Exception as exc:
            msg = _clean(exc)
            op = _unsupported_op(msg)
            if op:
                raise FcbenchError(f"onnxruntime ({provider}): unsupported op '{op}' in {artifact}: {msg}",
                                   exit_code=1) from exc
            if any(s in str(exc) for s in ("INVALID_PROTOBUF", "NO_SUCHFILE", "Protobuf parsing failed",
                                           "INVALID_GRAPH", "ModelProto does not have a graph")):
                raise FcbenchError(f"onnxruntime: {artifact} is not a valid ONNX model: {msg}") from exc
            raise FcbenchError(f"onnxruntime ({provider}): cannot load {artifact}: {msg}", exit_code=1) from exc
        if provider not in sess.get_providers():
            raise FcbenchError(f"onnxruntime: {provider} was not registered for {artifact} (session providers: "
                               f"{', '.join(sess.get_providers())}); check its options and install", exit_code=1)
        if hasattr(sess, "disable_fallback"):
            sess.disable_fallback()  # a failing provider must fail, not silently rerun on CPU
        return _OrtSession(sess, provider, artifact)
