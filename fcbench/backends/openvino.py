"""OpenVINO Runtime on an OpenVINO IR (.xml + .bin) or an ONNX file, one variant per device.

Options (``[options]`` of a backend profile):
  performance_hint  "LATENCY" (default) | "THROUGHPUT" | "CUMULATIVE_THROUGHPUT"
  precision         "f32" | "bf16" | "f16" -> INFERENCE_PRECISION_HINT; absent (or "default") leaves
                    the device's default, which on CPUs with AVX-512 BF16 / AMX is bf16
  num_streams       NUM_STREAMS (default: what the performance hint picks)
  config            table of raw OpenVINO properties passed to compile_model

``threads`` sets INFERENCE_NUM_THREADS on the CPU device (for AUTO, on the CPU it may pick).

Placement: the compiled model's runtime model lists the executed nodes (after fusion) with
rt_info ``layerType``, ``runtimePrecision`` and ``outputPrecisions``; ``placement()`` reports
each (except Input/Output/Const) with the compiled model's EXECUTION_DEVICES. The session's
``inference_precision`` is what the compiled model says it computes in
(``INFERENCE_PRECISION_HINT`` read back), e.g. "bf16" when the default was left alone on such a CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
PRECISIONS = ("f32", "bf16", "f16")
OPTIONS = ("performance_hint", "precision", "num_streams", "config")
DATA_LAYERS = {"Input", "Output", "Const", "Parameter", "Result", "Constant"}


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def keep_sigaltstack():
    """Put this thread's alternate signal stack back after an OpenVINO call that replaced it.

    OpenVINO 2026.4's CPU plugin installs its own sigaltstack on the compiling thread and
    swaps it back when compiled models are released; with several compiled models released
    out of order the thread was left pointing at a freed stack, and the next signal with an
    SA_ONSTACK handler (e.g. SIGCHLD once a DataLoader has used workers, as Python installs
    every handler with SA_ONSTACK) killed the process with SIGSEGV. Keeping the caller's
    stack (Python's faulthandler stack, larger than OpenVINO's) avoids the dangling pointer.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        saved = _StackT()
        have = libc.sigaltstack(None, ctypes.byref(saved)) == 0
    except (OSError, AttributeError):
        have = False
    try:
        yield
    finally:
        if have:
            now = _StackT()
            libc.sigaltstack(None, ctypes.byref(now))
            if (now.ss_sp, now.ss_size) != (saved.ss_sp, saved.ss_size):
                saved.ss_flags &= ~1  # SS_ONSTACK is not settable
                libc.sigaltstack(ctypes.byref(saved), None)


def _one_line(exc: BaseException) -> str:
    """OpenVINO messages carry 'Exception from src/...' and 'Check ... failed at' lines; keep the message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("Exception from", "Check '", "FrontEnd API failed"))]
    return " ".join(keep or lines or [type(exc).__name__])[:400]


def _unsupported_ops(text: str) -> str | None:
    """Op names from a frontend's 'not fully converted' report."""
    import re

    m = re.search(r"No conversion rule found for operations:\s*([^\n]+)", text)
    if m:
        return m.group(1).strip()
    failed = re.findall(r"^-- (\S+) with a message", text, re.M)
    return ", ".join(failed) if failed else None


def _short_type(t: Any) -> str:
    try:
        return t.get_type_name()  # Type.bf16 -> "bf16"
    except AttributeError:
        return str(t)


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in shape) + "]"


class _OvSession(Session):
    def __init__(self, core, compiled, device: str, requested_precision: str | None) -> None:
        self.core = core
        self.compiled = compiled
        self.device = device
        self.requested_precision = requested_precision
        self.request = compiled.create_infer_request()
        from openvino import Tensor

        self._make_tensor = Tensor  # imported here: the module must not import openvino
        pshape = compiled.inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else -1 for d in pshape]
        self.inference_precision = self._read_precision()
        try:
            self.execution_devices = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
        except Exception:
            self.execution_devices = [device]

    def _read_precision(self) -> str:
        import openvino.properties.hint as hints

        try:
            return _short_type(self.compiled.get_property(hints.inference_precision))
        except Exception:  # e.g. a device or AUTO that does not expose it
            return ""

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        expected = self.input_shape
        if len(x.shape) != len(expected) or any(e >= 0 and e != g for e, g in zip(expected, x.shape, strict=True)):
            raise FcbenchError(f"openvino: input shape mismatch: model expects {_shape_str(expected)}, "
                               f"got {_shape_str(list(x.shape))}", exit_code=1)
        try:
            # the caller's array is the input tensor (no copy per query, as benchmark_app's preallocated input)
            self.request.set_input_tensor(0, self._make_tensor(np.ascontiguousarray(x), shared_memory=True))
            self.request.infer()
            return self.request.get_output_tensor(0).data.copy()
        except Exception as exc:
            raise FcbenchError(f"openvino ({self.device}): run failed: {_one_line(exc)}", exit_code=1) from exc

    def placement(self) -> list[NodePlacement]:
        try:
            runtime = self.compiled.get_runtime_model()
        except Exception:  # some devices/plugins do not expose it
            return []
        device = ",".join(self.execution_devices)
        out = []
        for op in runtime.get_ordered_ops():
            info = op.get_rt_info()

            def get(key: str, info=info) -> str:
                try:
                    return str(info[key].astype(str)) if key in info else ""
                except Exception:
                    return ""

            layer = get("layerType") or op.get_type_name()
            if layer in DATA_LAYERS:
                continue
            out.append(NodePlacement(node=op.get_friendly_name(), op_type=layer, placement=device,
                                     precision=get("runtimePrecision") or get("outputPrecisions")))
        return out

    def close(self) -> None:
        with keep_sigaltstack():  # releasing a compiled model swaps the thread's signal stack too
            self.request = None
            self.compiled = None


@functools.lru_cache(maxsize=1)
def _devices() -> tuple[str, ...]:
    """The devices OpenVINO sees; asked once per process (the first ask loads the device plugins)."""
    import openvino as ov

    return tuple(ov.Core().available_devices)


class OpenVinoBackend(Backend):
    name = "openvino"
    formats = ("openvino", "onnx")
    variants = ("CPU", "GPU", "NPU", "AUTO")
    default_variant = "CPU"
    module = "openvino"
    install_hint = "pip install 'fcbench[openvino]'"
    options = OPTIONS
    runtime_modules = ("openvino", "openvino.properties", "openvino.properties.hint", "openvino.frontend")

    def variant_available(self, variant: str) -> tuple[bool, str]:
        ok, reason = super().variant_available(variant)  # known variant, runtime installed
        if not ok:
            return ok, reason
        import openvino as ov

        devices = _devices()  # e.g. ['CPU', 'GPU.0', 'GPU.1']
        if variant == "AUTO":
            return (True, "") if devices else (False, "openvino sees no device")
        if any(d == variant or d.startswith(variant + ".") for d in devices):
            return True, ""
        return False, f"openvino {ov.__version__} sees no {variant} device here (devices: {', '.join(devices)})"

    def precisions(self, variant: str) -> tuple[str, ...]:
        """f32 everywhere; bf16/f16 where the device lists them in OPTIMIZATION_CAPABILITIES."""
        import openvino as ov

        try:
            caps = set(ov.Core().get_property(variant, "OPTIMIZATION_CAPABILITIES"))
        except RuntimeError:
            return ("f32",)
        return ("f32",) + tuple(p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in caps)

    def precision_options(self, precision: str) -> dict[str, Any]:
        return {"precision": precision}

    def versions(self) -> dict[str, str]:
        import openvino as ov

        return {"openvino": ov.__version__}

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints
        from openvino.frontend import FrontEndManager

        options = dict(options or {})
        artifact = self.check_request(artifact, variant, threads, options)
        hint = str(options.get("performance_hint", "LATENCY")).upper()
        if hint not in HINTS:
            raise FcbenchError(f"openvino: performance_hint must be one of {', '.join(HINTS)}, got '{hint}'")
        precision = options.get("precision")
        precision = None if precision in (None, "", "default") else str(precision).lower()
        if precision is not None and precision not in PRECISIONS:
            raise FcbenchError(f"openvino: precision must be one of {', '.join(PRECISIONS)} (or absent for the "
                               f"device default), got '{precision}'")

        framework = "ir" if artifact.suffix == ".xml" else "onnx"
        if not FrontEndManager().load_by_framework(framework).supported(str(artifact)):
            kind = "OpenVINO IR (.xml with its .bin)" if framework == "ir" else "ONNX model"
            raise FcbenchError(f"openvino: {artifact} is not a valid {kind}")
        if framework == "ir" and not artifact.with_suffix(".bin").exists():
            raise FcbenchError(f"openvino: {artifact.with_suffix('.bin').name} (the weights) is missing beside "
                               f"{artifact.name}")

        core = ov.Core()
        config: dict[Any, Any] = {hints.performance_mode: getattr(hints.PerformanceMode, hint)}
        if precision is not None:
            config[hints.inference_precision] = getattr(ov.Type, precision)
        if options.get("num_streams") is not None:
            config[props.num_streams] = int(options["num_streams"])
        if threads:
            if variant == "CPU":
                config[props.inference_num_threads] = int(threads)
            elif variant == "AUTO":
                core.set_property("CPU", {props.inference_num_threads: int(threads)})
        config.update({str(k): v for k, v in dict(options.get("config", {}) or {}).items()})
        try:
            model = core.read_model(str(artifact))
        except Exception as exc:
            ops = _unsupported_ops(str(exc))
            if ops:
                raise FcbenchError(f"openvino: unsupported op(s) in {artifact}: {ops}", exit_code=1) from exc
            raise FcbenchError(f"openvino: cannot read {artifact}: {_one_line(exc)}") from exc
        try:
            with keep_sigaltstack():
                compiled = core.compile_model(model, variant, config)
        except Exception as exc:
            ops = _unsupported_ops(str(exc))
            what = f"unsupported op(s) {ops}" if ops else _one_line(exc)
            raise FcbenchError(f"openvino ({variant}): compile failed for {artifact}: {what}", exit_code=1) from exc
        return _OvSession(core, compiled, variant, precision)
