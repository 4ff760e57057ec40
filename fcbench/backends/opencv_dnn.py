"""OpenCV's dnn module on an ONNX file (or an OpenVINO IR, where OpenCV was built with OpenVINO).

OpenCV 5 has two dnn engines: the new graph engine (CPU only) and the classic one, which has
the non-CPU backends (OpenCL, Vulkan, CUDA). ``readNet(..., engine=ENGINE_AUTO)`` tries the new
engine and falls back to the classic one without saying which it kept, so this backend makes the
choice itself and records it.

Options (``[options]`` of a backend profile):
  engine  "auto" (default: new engine for cpu, falling back to classic when the new parser does
          not take the model; classic for the other variants) | "new" | "classic"
  fp16    use the variant's FP16 target (CPU_FP16, OPENCL_FP16, CUDA_FP16); classic engine only

``threads`` calls ``cv2.setNumThreads`` (process-wide; the previous value is restored on close).

Placement: one row per layer of the loaded net (``getLayerNames``; the new engine lists the
layers after its fusions, the classic one per ONNX node) with the layer's type and the
backend/target it is set to run on; precision is given for the classic engine from its target
(f16 for *_FP16 targets, else f32) and left empty for the new engine, which does not say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError

# variant -> (backend constant, target constant, fp16 target constant)
TARGETS = {
    "cpu": ("DNN_BACKEND_OPENCV", "DNN_TARGET_CPU", "DNN_TARGET_CPU_FP16"),
    "opencl": ("DNN_BACKEND_OPENCV", "DNN_TARGET_OPENCL", "DNN_TARGET_OPENCL_FP16"),
    "vulkan": ("DNN_BACKEND_VKCOM", "DNN_TARGET_VULKAN", None),
    "cuda": ("DNN_BACKEND_CUDA", "DNN_TARGET_CUDA", "DNN_TARGET_CUDA_FP16"),
}
OPTIONS = ("engine", "fp16")


def _one_line(exc: BaseException) -> str:
    """cv2.error text without the 'OpenCV(5.0.0) /path/file.cpp:123: error: (-2:...) in function' noise."""
    text = str(exc)
    detail = [ln.lstrip("> ").strip() for ln in text.splitlines() if ln.startswith(">")]
    if detail:
        text = " ".join(detail)
    text = re.sub(r"OpenCV\([\d.]+\)\s+\S+:\d+:\s+error:\s+\([-\d]+:[^)]*\)\s*", "", text)
    text = re.sub(r"\s+in function '[^']*'", "", text)
    return " ".join(text.split())[:400]


def _constant_name(cv2, prefix: str, value: int) -> str:
    for name in dir(cv2.dnn):
        if name.startswith(prefix) and getattr(cv2.dnn, name) == value:
            return name[len(prefix):]
    return str(value)


class _CvSession(Session):
    def __init__(self, cv2, net, engine: str, backend: int, target: int, input_shape: list[int] | None,
                 old_threads: int | None) -> None:
        self.cv2 = cv2
        self.net = net
        self.engine = engine
        self.backend = _constant_name(cv2, "DNN_BACKEND_", backend)
        self.target = _constant_name(cv2, "DNN_TARGET_", target)
        self.input_shape = input_shape
        self._old_threads = old_threads

    def _mismatch(self, x: np.ndarray) -> str:
        exp = self.input_shape or []
        return f"model expects [{', '.join(map(str, exp))}], got [{', '.join(map(str, x.shape))}]"

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        exp = self.input_shape
        # OpenCV does not check input shapes itself; the batch dimension may differ where the graph allows it
        if exp and (x.ndim != len(exp) or any(e > 0 and e != g for e, g in zip(exp[1:], x.shape[1:], strict=True))):
            raise FcbenchError(f"opencv-dnn: input shape mismatch: {self._mismatch(x)}", exit_code=1)
        try:
            self.net.setInput(np.ascontiguousarray(x))
            out = self.net.forward()
        except self.cv2.error as exc:
            shape = f" (input shape mismatch? {self._mismatch(x)})" if exp and x.shape[0] != exp[0] else ""
            raise FcbenchError(f"opencv-dnn ({self.engine} engine): run failed: {_one_line(exc)}{shape}",
                               exit_code=1) from exc
        return np.array(out, copy=True)

    def placement(self) -> list[NodePlacement]:
        out = []
        for name in self.net.getLayerNames():
            try:
                layer = self.net.getLayer(name)
            except self.cv2.error:
                continue
            target = _constant_name(self.cv2, "DNN_TARGET_", layer.preferableTarget)
            if self.engine == "new":
                where, precision = f"{self.backend}/{target} (new engine)", ""
            else:
                where, precision = f"{self.backend}/{target}", "f16" if target.endswith("FP16") else "f32"
            out.append(NodePlacement(node=name, op_type=layer.type, placement=where, precision=precision))
        return out

    def close(self) -> None:
        if self._old_threads is not None:
            self.cv2.setNumThreads(self._old_threads)
            self._old_threads = None
        self.net = None


class OpenCvDnnBackend(Backend):
    name = "opencv-dnn"
    formats = ("onnx", "openvino")
    variants = ("cpu", "vulkan", "cuda", "opencl")
    default_variant = "cpu"
    module = "cv2"
    install_hint = "pip install 'fcbench[opencv]'"
    options = OPTIONS
    runtime_modules = ("cv2",)

    def variant_available(self, variant: str) -> tuple[bool, str]:
        ok, reason = super().variant_available(variant)  # known variant, runtime installed
        if not ok:
            return ok, reason
        import cv2

        backend_name, target_name, _ = TARGETS[variant]
        backend, target = getattr(cv2.dnn, backend_name), getattr(cv2.dnn, target_name)
        targets = list(cv2.dnn.getAvailableTargets(backend))
        where = f"opencv {cv2.__version__}"
        if variant == "cuda":
            count = cv2.cuda.getCudaEnabledDeviceCount() if hasattr(cv2, "cuda") else 0
            if count <= 0:
                return False, (f"{where} has no CUDA device (built without CUDA, or no GPU); "
                               f"needs an OpenCV built with CUDA")
        if variant == "vulkan" and not re.search(r"Vulkan:\s+YES", cv2.getBuildInformation()):
            return False, f"{where} was built without Vulkan; needs an OpenCV built with WITH_VULKAN=ON"
        if variant == "opencl" and not cv2.ocl.haveOpenCL():
            return False, f"{where} finds no OpenCL platform/device here"
        if target not in targets:
            return False, f"{where}: backend {backend_name[12:]} offers no {target_name[11:]} target here"
        return True, ""

    def accepts(self, artifact: Path, manifest: Manifest, variant: str) -> tuple[bool, str]:
        if manifest.format != "openvino":
            return True, ""
        import cv2

        if list(cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_INFERENCE_ENGINE)):
            return True, ""
        return False, (f"this OpenCV {cv2.__version__} is built without the OpenVINO backend, so it cannot run an "
                       "OpenVINO IR; it runs the ONNX file")

    def versions(self) -> dict[str, str]:
        import cv2

        return {"opencv": cv2.__version__}

    def _read(self, cv2, artifact: Path, engine: str):
        if artifact.suffix == ".xml":
            if not list(cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_INFERENCE_ENGINE)):
                raise FcbenchError(f"opencv-dnn: this OpenCV {cv2.__version__} has no OpenVINO backend, so it cannot "
                                   f"run an OpenVINO IR ({artifact.name}); use the ONNX file or the openvino backend",
                                   exit_code=1)
            return cv2.dnn.readNet(str(artifact), str(artifact.with_suffix(".bin"))), "classic"
        classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)  # OpenCV 5.1 dropped the classic engine
        if engine == "classic" and classic is None:
            raise FcbenchError(f"opencv-dnn: this OpenCV {cv2.__version__} has no classic engine (5.0 has it); "
                               "set engine = 'new' or 'auto', or install opencv-python-headless 5.0")
        engines = {"new": ["new"], "classic": ["classic"],
                   "auto": ["new", "classic"] if classic is not None else ["new"]}[engine]
        last: BaseException | None = None
        for name in engines:
            # the new engine is ENGINE_NEW in OpenCV 5.0 and ENGINE_OPENCV from 5.1
            flag = getattr(cv2.dnn, "ENGINE_NEW", getattr(cv2.dnn, "ENGINE_OPENCV", 0)) if name == "new" else classic
            try:
                net = cv2.dnn.readNetFromONNX(str(artifact), flag)
            except cv2.error as exc:
                last = exc
                if "parse" in str(exc).lower() and "onnx" in str(exc).lower():
                    break  # not an ONNX file: the other parser will not take it either
                continue
            if not net.empty():
                return net, name
        if last is None:
            raise FcbenchError(f"opencv-dnn: the new engine's ONNX parser rejected {artifact} (OpenCV logs the "
                               f"unsupported operations on stderr); try engine = 'classic'", exit_code=1)
        text = _one_line(last)
        op = re.search(r'of type "([^"]+)"', str(last))
        if op:
            raise FcbenchError(f"opencv-dnn: unsupported op '{op.group(1)}' in {artifact}: {text}",
                               exit_code=1) from last
        if "Failed to parse" in str(last) or "Unsupported format" in str(last):
            raise FcbenchError(f"opencv-dnn: {artifact} is not a valid ONNX model: {text}") from last
        raise FcbenchError(f"opencv-dnn: cannot load {artifact}: {text}", exit_code=1) from last

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        options = dict(options or {})
        artifact = self.check_request(artifact, variant, threads, options)
        import cv2

        engine = str(options.get("engine", "auto"))
        if engine not in ("auto", "new", "classic"):
            raise FcbenchError(f"opencv-dnn: engine must be auto, new or classic, got '{engine}'")
        if variant != "cpu":
            if engine == "new":
                raise FcbenchError(f"opencv-dnn: the new engine runs on CPU only; variant {variant} needs engine = "
                                   f"'classic' (or 'auto')")
            engine = "classic"
        fp16 = bool(options.get("fp16", False))
        backend_name, target_name, fp16_name = TARGETS[variant]
        if fp16 and not fp16_name:
            raise FcbenchError(f"opencv-dnn: variant {variant} has no FP16 target")

        net, used = self._read(cv2, artifact, engine)
        if fp16 and used == "new":
            raise FcbenchError("opencv-dnn: fp16 targets need the classic engine; set engine = 'classic'")
        backend = getattr(cv2.dnn, backend_name)
        target = getattr(cv2.dnn, fp16_name if fp16 else target_name)
        if used == "classic" and target not in list(cv2.dnn.getAvailableTargets(backend)):
            # OpenCV would log a fallback to CPU and carry on; a benchmark must not run something else
            raise FcbenchError(f"opencv-dnn: backend {backend_name[12:]} offers no "
                               f"{(fp16_name if fp16 else target_name)[11:]} target here"
                               f"{' (CPU_FP16 is for ARMv8 CPUs)' if fp16 and variant == 'cpu' else ''}", exit_code=1)
        if used == "classic":  # the new engine takes no backend/target (it warns and ignores them)
            net.setPreferableBackend(backend)
            net.setPreferableTarget(target)
        old_threads = None
        if threads:
            old_threads = cv2.getNumThreads()
            cv2.setNumThreads(int(threads))
        shape = list(manifest.inputs[0].shape) if manifest is not None and manifest.inputs else None
        return _CvSession(cv2, net, used, backend, target, shape, old_threads)
