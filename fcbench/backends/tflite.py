"""TFLite (LiteRT) interpreter from ai-edge-litert.

Variants:

- ``cpu``: builtin kernels only (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``), the
  XNNPACK delegate is not applied.
- ``xnnpack``: the interpreter's default (``OpResolverType.BUILTIN``): builtin kernels with the
  XNNPACK delegate applied to every subgraph it supports.
- ``gpu``, ``nnapi``: need the GPU delegate / Android NNAPI, which ai-edge-litert does not ship
  for a Linux host; they are for devices (drivers planned) and report unavailable here.

``threads`` becomes ``num_threads`` of the interpreter (XNNPACK uses it too); left unset,
ai-edge-litert 2.3 runs single-threaded.

A model with an integer input or output tensor that carries a quantization scale (a full-integer
model with int8 I/O, e.g. ``quantize --method tflite-int8 --opt io=int8``) is fed the prepared
float image quantized with the input's scale and zero point, and its output is dequantized, so
it is timed and evaluated on the same data as every other artifact (the conversion is part of
the timed run, as it is in an app that feeds camera frames to such a model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError, first_line

_DEVICE_ONLY = {
    "gpu": "tflite:gpu needs the TFLite GPU delegate (OpenCL / OpenGL ES), which ai-edge-litert does not ship "
           "for a Linux host; it runs on Android devices (device drivers: planned)",
    "nnapi": "tflite:nnapi needs Android's NNAPI delegate; it runs on Android devices only "
             "(device drivers: planned)",
}
_PRECISION = {
    "float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64", "int8": "i8", "uint8": "u8",
    "int16": "i16", "int32": "i32", "int64": "i64", "bool": "bool", "int4": "i4",
}
_WEIGHT_TYPES = {"int8", "int4", "uint8", "float16"}


def _dtype_name(t: Any) -> str:
    return np.dtype(t).name if t is not None else ""


def delegated_nodes(ops: list[dict[str, Any]]) -> dict[int, int]:
    """Which original nodes each DELEGATE node replaced: {node index: delegate node index}.

    The interpreter keeps the replaced nodes in its node list and appends one DELEGATE node
    per delegated partition, whose inputs and outputs are the partition's boundary tensors;
    the execution plan itself is not exposed to Python. A partition is the set of nodes
    that compute the DELEGATE node's outputs from its inputs, so walking producers back
    from the outputs, stopping at the inputs, recovers it.
    """
    producer: dict[int, int] = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            for t in op["outputs"]:
                producer[int(t)] = op["index"]
    covered: dict[int, int] = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            continue
        stop = {int(t) for t in op["inputs"]}
        stack = [int(t) for t in op["outputs"]]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t < 0 or t in stop or t in seen:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None or node in covered:
                continue
            covered[node] = op["index"]
            stack.extend(int(i) for i in ops[node]["inputs"])
    return covered


def _short(tensor_name: str) -> str:
    """'a.b.IResNet/torch.nn.modules.conv.Conv2d_conv1;...' -> 'IResNet/Conv2d_conv1' (litert-torch
    names tensors by module path; ';' joins the names of fused locations, the first is kept)."""
    first = next((part for part in tensor_name.split(";") if part), tensor_name)
    return "/".join(seg.rsplit(".", 1)[-1] for seg in first.split("/"))


class TfliteSession(Session):
    def __init__(self, path: Path, variant: str, threads: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (OpResolverType.BUILTIN if variant == "xnnpack"
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path = path
        self.variant = variant
        try:
            self.interp = Interpreter(model_path=str(path), num_threads=threads,
                                      experimental_op_resolver_type=resolver)
        except ValueError as exc:
            raise FcbenchError(f"{path}: not a valid TFLite model ({first_line(exc)})") from exc
        try:
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise FcbenchError(f"{path}: the TFLite interpreter cannot prepare this model "
                               f"({first_line(exc)})", exit_code=1) from exc
        inputs = self.interp.get_input_details()
        if len(inputs) != 1:
            raise FcbenchError(f"{path}: the model has {len(inputs)} inputs; fcbench feeds exactly one")
        self._input = inputs[0]
        self._output = self.interp.get_output_details()[0]
        self._shape = tuple(int(s) for s in self._input["shape"])

    def _quantize_input(self, x: np.ndarray) -> np.ndarray:
        """A float image for an integer input with a scale: quantized as the model's input expects."""
        want = np.dtype(self._input["dtype"])
        scale, zero_point = self._input.get("quantization", (0.0, 0))
        if x.dtype != np.float32 or want.kind not in "iu" or not scale:
            return x
        info = np.iinfo(want)
        return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(want)

    def _dequantize_output(self, y: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output.get("quantization", (0.0, 0))
        if y.dtype.kind not in "iu" or not scale:
            return y
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def _check(self, x: np.ndarray) -> None:
        want = np.dtype(self._input["dtype"])
        if x.dtype != want:
            raise FcbenchError(f"tflite: input dtype {x.dtype.name} does not match the model's {want.name} "
                               f"({self.path.name})")
        if tuple(x.shape) == self._shape:
            return
        signature = [int(s) for s in self._input["shape_signature"]]
        fits = len(signature) == x.ndim and all(s in (-1, d) for s, d in zip(signature, x.shape, strict=True))
        if not fits:
            raise FcbenchError(f"tflite: input shape mismatch: the model expects {signature} "
                               f"(-1 = any), got {list(x.shape)} ({self.path.name})")
        try:  # a dynamic dimension (e.g. batch of a Keras model): resize and re-plan
            self.interp.resize_tensor_input(self._input["index"], list(x.shape), strict=True)
            self.interp.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise FcbenchError(f"tflite: cannot resize the input to {list(x.shape)}: {first_line(exc)}",
                               exit_code=1) from exc
        self._shape = tuple(x.shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self._quantize_input(x)
        self._check(x)
        try:
            self.interp.set_tensor(self._input["index"], x)
            self.interp.invoke()
            return self._dequantize_output(self.interp.get_tensor(self._output["index"]))
        except (RuntimeError, ValueError) as exc:
            raise FcbenchError(f"tflite: run failed on input {list(x.shape)}: {first_line(exc)}",
                               exit_code=1) from exc

    def placement(self) -> list[NodePlacement]:
        """One row per original node of the main subgraph, placed on XNNPACK when a DELEGATE
        node replaced it (with the BUILTIN resolver the only delegate applied is XNNPACK) and
        on the builtin CPU kernels otherwise. Precision is the node's output tensor type;
        "f32+i8w" marks a float op with int8 constant weights (dynamic-range quantization)."""
        try:
            ops = self.interp._get_ops_details()
        except Exception:  # a private API: if it changes, report nothing rather than guess
            return []
        covered = delegated_nodes(ops)
        produced = {int(t) for op in ops for t in op["outputs"]}
        graph_inputs = {int(d["index"]) for d in self.interp.get_input_details()}
        rows = []
        for op in ops:
            if op["op_name"] == "DELEGATE":
                continue
            out_types = [_dtype_name(t) for t in op["result_types"]]
            precision = _PRECISION.get(out_types[0], out_types[0]) if out_types else ""
            if precision in ("f32", "f16", "bf16"):
                weights = {_dtype_name(t) for i, t in zip([int(i) for i in op["inputs"] if i != -1],
                                                          op["operand_types"], strict=False)
                           if i not in produced and i not in graph_inputs}
                low = sorted(weights & _WEIGHT_TYPES - {out_types[0]})
                if low:
                    precision += "+" + "+".join(_PRECISION[w] + "w" for w in low)
            out_name = ""
            if len(op["outputs"]):
                try:
                    out_name = self.interp._get_tensor_details(int(op["outputs"][0]), 0)["name"]
                except (ValueError, RuntimeError):
                    out_name = ""
            node = f"{op['index']}:{_short(out_name)}" if out_name else str(op["index"])
            where = "XNNPACK" if op["index"] in covered else "CPU"
            rows.append(NodePlacement(node=node, op_type=op["op_name"], placement=where, precision=precision))
        return rows

    def close(self) -> None:
        self.interp = None


class TfliteBackend(Backend):
    name = "tflite"
    formats = ("tflite",)
    variants = ("cpu", "xnnpack", "gpu", "nnapi")
    default_variant = "xnnpack"
    module = "ai_edge_litert"
    install_hint = "pip install 'fcbench[tflite]'"
    runtime_modules = ("ai_edge_litert.interpreter",)

    def variant_available(self, variant: str) -> tuple[bool, str]:
        ok, reason = super().variant_available(variant)
        if not ok:
            return ok, reason
        if variant in _DEVICE_ONLY:
            return False, _DEVICE_ONLY[variant]
        return True, ""

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        path = self.check_request(artifact, variant, threads, options)
        return TfliteSession(path, variant, threads)
