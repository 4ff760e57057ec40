"""LiteRT (TFLite) quantization with ai-edge-quantizer: ``tflite-dynamic``, ``tflite-int8``, ``tflite-fp16``.

All three read the float ``.tflite`` (converted from the checkpoint with fcbench's litert-torch
exporter when the input is one, or a float ``.tflite`` made by ``convert``, a Keras model's
included) and rewrite it with ``ai_edge_quantizer.Quantizer`` and a recipe; the result runs in
the LiteRT interpreter (backend ``tflite``, XNNPACK by default) with the float input and output
of its parent, so the manifest's preprocessing and every backend keep working:

- ``tflite-dynamic``: int8 weights, float activations quantized on the fly by the kernels
  (dynamic range; ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe);
- ``tflite-int8``: full integer: int8 weights and activations, activation ranges calibrated on
  the representative images (``Quantizer.calibrate``; the ``static_wi8_ai8`` recipe); the model's
  input and output stay float (a QUANTIZE op after the input, a DEQUANTIZE before the output);
- ``tflite-fp16``: float16 weights, dequantized to float32 when the model is prepared
  (weight-only with the ``float_casting`` algorithm).

``--keep-float`` names layers (as :meth:`layers` lists them: the PyTorch module path of a
convolution or linear layer where the float model carries it, else the op's output tensor name);
each becomes a ``no_quantize`` scope of the recipe matching exactly that op.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import module_available
from fcbench.quantization.base import Quantized, QuantMethod, Source, Spec

QUANTIZABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")
_MODULE_SEGMENT = re.compile(r"^(?:[\w.]+\.)?(\w+?)_(\w+)$")  # 'torch.nn.modules.conv.Conv2d_conv1' -> Conv2d, conv1
_LAYER_CLASSES = ("Conv2d", "ConvTranspose2d", "Linear")


def _available() -> tuple[bool, str]:
    ok, why = module_available("ai_edge_quantizer", "pip install 'fcbench[quantize]'")
    if not ok:
        return ok, why
    return module_available("ai_edge_litert.interpreter", "pip install 'fcbench[tflite]'")


def _module_path(tensor_name: str) -> str:
    """The PyTorch module path litert-torch recorded in a tensor name ('' when there is none):
    'a.IResNet/...Sequential_layer1/...IBasicBlock_0/...Conv2d_conv1;2' -> 'layer1.0.conv1'. A fused
    op's name joins several locations with ';'; the one ending in a convolution or linear layer is taken."""
    for part in tensor_name.split(";"):
        segments = [s for s in part.split("/") if s]
        if len(segments) < 2:
            continue
        parsed = [_MODULE_SEGMENT.match(s.rsplit(".", 1)[-1]) for s in segments[1:]]
        if all(parsed) and parsed[-1].group(1) in _LAYER_CLASSES:
            return ".".join(m.group(2) for m in parsed)
    return ""


def tflite_layers(path: Path) -> dict[str, str]:
    """{layer name: its op's output tensor name} for the ops a quantizer quantizes, in graph order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    layers: dict[str, str] = {}
    for op in interp._get_ops_details():
        if op["op_name"] not in QUANTIZABLE or not len(op["outputs"]):
            continue
        tensor = tensors.get(int(op["outputs"][0]), "")
        name = _module_path(tensor) or tensor
        if not name or name in layers:
            name = f"{name or op['op_name'].lower()}#{op['index']}"
        layers[name] = tensor
    return layers


def _check_float(path: Path) -> None:
    """A .tflite that is already quantized (int8 tensors or weights) is not a float parent."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = {op["op_name"] for op in interp._get_ops_details()}
    quantized = [d["name"] for d in interp.get_tensor_details()
                 if d["dtype"].__name__ in ("int8", "uint8", "int16") or d["dtype"].__name__ == "float16"]
    if quantized or "DEQUANTIZE" in ops or "QUANTIZE" in ops:
        what = quantized[0] if quantized else "a QUANTIZE op"
        raise FcbenchError(f"quantize: {path.name} is already quantized (it holds {what}); quantize a float .tflite "
                           "(convert keeps a model float unless tflite.optimize asks otherwise)")


def _scopes(keep: list[str], path: Path) -> list[str]:
    """The recipe regexes of the ``--keep-float`` layers: ai-edge-quantizer matches an op by its scope,
    its output tensor names each followed by ';'."""
    if not keep:
        return []
    layers = tflite_layers(path)
    unknown = [k for k in keep if k not in layers]
    if unknown:
        names = list(layers)
        raise FcbenchError(f"--keep-float: {unknown[0]} is not a quantizable layer of {path.name}"
                           f"{suggest(unknown[0], names)}; its layers: {', '.join(names[:8])}"
                           f"{' ...' if len(names) > 8 else ''}")
    return ["^" + re.escape(layers[k]) + ";$" for k in keep]  # ai-edge-quantizer's scope: output names, each + ';'


def _io(path: Path) -> dict[str, Any]:
    """The model's input and output tensors as it takes them: dtype and, for integer ones, the scale and
    zero point the tflite backend quantizes the prepared float image with (and dequantizes the output)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def spec(d: dict[str, Any]) -> dict[str, Any]:
        scale, zero_point = d.get("quantization", (0.0, 0))
        out: dict[str, Any] = {"dtype": d["dtype"].__name__}
        if scale:
            out.update(scale=float(scale), zero_point=int(zero_point))
        return out

    return {"input": spec(interp.get_input_details()[0]), "output": spec(interp.get_output_details()[0])}


def _op_counts(path: Path) -> dict[str, int]:
    from fcbench.conversion.tflite import tflite_op_counts

    return tflite_op_counts(path)


class _AeqMethod(QuantMethod):
    """What the three ai-edge-quantizer methods share: the float .tflite in, a recipe, the file out."""

    format = "tflite"
    backend = "tflite"
    source = "tflite"
    keeps_float = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return _available()

    def layers(self, source: Source, options: Any) -> list[str]:
        return list(tflite_layers(source.float_artifact("tflite")))

    def configure(self, quantizer: Any, spec: Spec, options: Any) -> dict[str, Any]:
        """Add the method's configs to ``quantizer``'s recipe; returns the options to record."""
        raise NotImplementedError

    def calibrate(self, quantizer: Any, path: Path, spec: Spec, layout: str, context: Any) -> Any:
        return None

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        from ai_edge_quantizer import algorithm_manager, quantizer

        src = source.float_artifact("tflite")
        _check_float(src)
        scopes = _scopes(spec.keep_float, src)
        q = quantizer.Quantizer(str(src))
        recorded = self.configure(q, spec, options)
        for scope in scopes:  # later scopes win: these ops stay float
            q.update_quantization_recipe(scope, "*", None, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        layout = source.manifest.inputs[0].layout if source.manifest.format == "tflite" else "NCHW"
        calibration = self.calibrate(q, src, spec, layout, context)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = q.quantize(calibration, enable_progress_report=False, enable_progress_bar=False)
        out.write_bytes(bytes(result.quantized_model))
        from fcbench.results.context import package_version

        recorded["quantizer"] = f"ai-edge-quantizer {package_version('ai-edge-quantizer') or 'unknown'}"
        return Quantized(out, input_layout=layout, options=recorded,
                         extra={"tflite_ops": _op_counts(out), "recipe": self.recipe_name, "io": _io(out)})

    recipe_name = ""


def _granularity(per_channel: bool) -> Any:
    from ai_edge_quantizer import qtyping

    return qtyping.QuantGranularity.CHANNELWISE if per_channel else qtyping.QuantGranularity.TENSORWISE


class TfliteDynamic(_AeqMethod):
    """int8 weights, float activations quantized on the fly (dynamic range)."""

    name = "tflite-dynamic"
    calibration = "optional"  # only for the fidelity check
    per_channel_default = True
    recipe_name = "dynamic_wi8_afp32"

    def configure(self, quantizer: Any, spec: Spec, options: Any) -> dict[str, Any]:
        per_channel = bool(spec.per_channel)
        quantizer.add_dynamic_config(".*", "*", 8, _granularity(per_channel))
        return {"per_channel": per_channel, "weights": "int8", "activations": "float32 (dynamic int8)"}


class TfliteFp16(_AeqMethod):
    """float16 weights (half the size), computed in float32."""

    name = "tflite-fp16"
    calibration = "optional"
    recipe_name = "weight_only_wf16_afp32 (float_casting)"

    def configure(self, quantizer: Any, spec: Spec, options: Any) -> dict[str, Any]:
        from ai_edge_quantizer import algorithm_manager, qtyping

        quantizer.add_weight_only_config(".*", "*", 16, qtyping.QuantGranularity.TENSORWISE,
                                         algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
        return {"weights": "float16", "activations": "float32"}


class TfliteInt8(_AeqMethod):
    """Full integer: int8 weights and activations, ranges calibrated on representative images;
    float input and output."""

    name = "tflite-int8"
    calibration = "required"
    min_calibration = 8
    per_channel_default = True
    recipe_name = "static_wi8_ai8"

    @dataclass
    class Options:
        activations: Literal["int8", "int16"] = "int8"  # int16: the a16w8 mode, for outputs that collapse in int8
        io: Literal["float", "int8"] = "float"  # int8: the model takes and gives quantized tensors

    def configure(self, quantizer: Any, spec: Spec, options: Any) -> dict[str, Any]:
        from ai_edge_quantizer import algorithm_manager, qtyping

        per_channel = bool(spec.per_channel)
        bits = 16 if options.activations == "int16" else 8
        quantizer.add_static_config(".*", "*", bits, 8, _granularity(per_channel))
        if options.io == "float":
            for io_op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
                quantizer.update_quantization_recipe(".*", io_op, None,
                                                     algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        return {"per_channel": per_channel, "weights": "int8", "activations": options.activations,
                "io": "float32" if options.io == "float" else f"int{bits}"}

    def calibrate(self, quantizer: Any, path: Path, spec: Spec, layout: str, context: Any) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        calib = spec.calibration
        assert calib is not None  # quantize() gives it: calibration = "required"
        signatures = Interpreter(model_path=str(path)).get_signature_list()
        if len(signatures) != 1 or len(next(iter(signatures.values()))["inputs"]) != 1:
            raise FcbenchError(f"quantize: {path.name} has {len(signatures)} signatures; tflite-int8 calibrates "
                               "a model with one signature of one input")
        key, sig = next(iter(signatures.items()))
        name = sig["inputs"][0]
        data = {key: [{name: x} for x in calib.batches(1, layout)]}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return quantizer.calibrate(data, num_threads=max(1, int(getattr(context, "threads", None) or 1)))
