"""ONNX Runtime quantization: ``ort-dynamic`` and ``ort-static`` (``onnxruntime.quantization``).

Both read the float ONNX model (converted from the checkpoint when the input is one) and write an
int8 ONNX model ONNX Runtime runs. ``ort-static`` calibrates activation ranges on the calibration
images (MinMax, Entropy or Percentile) and writes either QDQ pairs around float operators
(``format=qdq``, what ORT's graph optimiser fuses into integer kernels) or integer operators
(``format=qoperator``: QLinearConv, ...). ``ort-dynamic`` quantizes weights ahead and activations
at run time, needing no calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fcbench.errors import FcbenchError
from fcbench.plugins import module_available
from fcbench.quantization.base import Quantized, QuantMethod, Source, Spec

QUANTIZABLE = ("Conv", "Gemm", "MatMul")


def _available() -> tuple[bool, str]:
    return module_available("onnxruntime.quantization", "pip install 'fcbench[onnx]'")


def _quant_type(name: str):
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def _layer_names(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in QUANTIZABLE and n.name]


def _check_names(keep: list[str], path: Path) -> None:
    names = _layer_names(path)
    unknown = [k for k in keep if k not in names]
    if unknown:
        from fcbench.errors import suggest

        raise FcbenchError(f"--keep-float: {unknown[0]} is not a quantizable node of {path.name}"
                           f"{suggest(unknown[0], names)}; its nodes: {', '.join(names[:8])}"
                           f"{' ...' if len(names) > 8 else ''}")


def _preprocess(src: Path, folder: Path) -> Path:
    """ORT's recommended pre-processing (shape inference, graph optimisation) into ``folder``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = folder / (src.stem + "-prep.onnx")
    quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
    return out


def _node_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


class _OrtMethod(QuantMethod):
    """What both ONNX Runtime methods share: they read the float ONNX model and write one ORT runs."""

    format = "onnx"
    backend = "onnxruntime"
    source = "onnx"
    keeps_float = True
    per_channel_default = False

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return _available()

    def layers(self, source: Source, options: Any) -> list[str]:
        return _layer_names(source.float_artifact("onnx"))

    def float_onnx(self, source: Source, options: Any, spec: Spec) -> Path:
        """The float ONNX model to quantize: ``--keep-float`` names checked, pre-processed when asked."""
        src = source.float_artifact("onnx")
        _check_names(spec.keep_float, src)
        return _preprocess(src, source.stage) if options.preprocess else src


class OrtDynamic(_OrtMethod):
    """Weights int8 ahead, activations quantized at run time (no calibration)."""

    name = "ort-dynamic"
    calibration = "optional"  # only for the fidelity check

    @dataclass
    class Options:
        weight_type: Literal["int8", "uint8"] = "int8"
        reduce_range: bool = False  # 7-bit weights: for CPUs without VNNI, where 8 bits can saturate
        preprocess: bool = True  # onnxruntime's quant_pre_process first

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        from onnxruntime.quantization import quantize_dynamic

        src = self.float_onnx(source, options, spec)
        per_channel = bool(spec.per_channel)
        quantize_dynamic(str(src), str(out), per_channel=per_channel, reduce_range=options.reduce_range,
                         weight_type=_quant_type(options.weight_type), nodes_to_exclude=list(spec.keep_float))
        return Quantized(out, options={"per_channel": per_channel}, extra={"nodes": _node_counts(out)})


class OrtStatic(_OrtMethod):
    """Weights and activations int8, activation ranges calibrated ahead (QDQ or QOperator format)."""

    name = "ort-static"
    calibration = "required"
    min_calibration = 8

    @dataclass
    class Options:
        format: Literal["qdq", "qoperator"] = "qdq"
        calibrate: Literal["minmax", "entropy", "percentile"] = "minmax"
        percentile: float = 99.999  # for calibrate=percentile
        activation_type: Literal["int8", "uint8"] = "uint8"
        weight_type: Literal["int8", "uint8"] = "int8"
        reduce_range: bool = False
        preprocess: bool = True

        def __post_init__(self) -> None:
            if not 50.0 < self.percentile <= 100.0:
                raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static

        src = self.float_onnx(source, options, spec)
        calib = spec.calibration
        assert calib is not None  # quantize() gives it: calibration = "required"
        model = onnx.load(str(src), load_external_data=False)
        input_name = model.graph.input[0].name
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in model.graph.input[0].type.tensor_type.shape.dim]
        batch = dims[0] if dims and dims[0] > 0 else 1

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(b for b in calib.batches(batch) if len(b) == batch)

            def get_next(self) -> dict[str, np.ndarray] | None:
                x = next(self.it, None)
                return None if x is None else {input_name: x.astype(np.float32)}

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[options.calibrate]
        extra = {"CalibPercentile": options.percentile} if options.calibrate == "percentile" else {}
        per_channel = bool(spec.per_channel)
        quantize_static(
            str(src), str(out), Reader(),
            quant_format=QuantFormat.QDQ if options.format == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel, reduce_range=options.reduce_range,
            activation_type=_quant_type(options.activation_type), weight_type=_quant_type(options.weight_type),
            nodes_to_exclude=list(spec.keep_float), calibrate_method=method, extra_options=extra)
        return Quantized(out, options={"per_channel": per_channel, "calibration_images": len(calib)},
                         extra={"nodes": _node_counts(out)})
