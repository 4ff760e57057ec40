"""OpenVINO post-training quantization with NNCF: ``openvino-ptq``.

Reads the float OpenVINO IR (converted from the checkpoint when the input is one, or the ``.xml``
given) and writes an int8 IR (FakeQuantize nodes, int8 weights) that OpenVINO Runtime runs with
integer kernels. Activation ranges are calibrated on the calibration images with
``nncf.quantize``. NNCF's default scales the weights per output channel and the activations per
tensor; ``--per-channel false`` asks for per-tensor weight scales.

With ``--max-drop P --eval-data D`` it runs ``nncf.quantize_with_accuracy_control`` instead: the
headline metric (verification accuracy on a pair set for a face model, top-1 for a classifier) is
computed through OpenVINO on ``D`` for the float and the quantized IR, and NNCF reverts the layers
that hurt most to float until the drop is at most ``P`` points (or nothing is left to revert).
What it reverted and the metrics it saw are recorded in the manifest's ``extra.quantization``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import module_available
from fcbench.quantization.base import Quantized, QuantMethod, Source, Spec

# the IR operations NNCF quantizes (their weights and inputs), whose names --keep-float takes
QUANTIZABLE = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
               "MatMul")


def _ops(model) -> list[Any]:
    return [op for op in model.get_ordered_ops() if op.get_type_name() in QUANTIZABLE]


def _read(path: Path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def _has_fake_quantize(op) -> bool:
    """Whether the op's data input comes through a FakeQuantize (NNCF's int8 marker), looking through
    the Convert/Reshape/Transpose nodes that may sit between them."""
    node = op.input_value(0).get_node()
    for _ in range(4):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind not in ("Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze"):
            return False
        node = node.input_value(0).get_node()
    return False


def float_layers(model) -> list[str]:
    """Names of the quantizable ops the (quantized) model still computes in float, in graph order."""
    return [op.get_friendly_name() for op in _ops(model) if not _has_fake_quantize(op)]


def _check_names(keep: list[str], names: list[str], path: Path) -> None:
    unknown = [k for k in keep if k not in names]
    if unknown:
        raise FcbenchError(f"quantize: --keep-float {unknown[0]} is not a quantizable operation of the OpenVINO IR of "
                           f"{path.name}"
                           f"{suggest(unknown[0], names)}; its operations: {', '.join(names[:8])}"
                           f"{' ...' if len(names) > 8 else ''}")


class _Validation:
    """The headline metric of a model through OpenVINO on the validation images, as NNCF's
    ``validation_fn``: ``(compiled model, items) -> (metric, per-item outputs)``. Returning the outputs
    per item makes NNCF rank the layers by how much quantizing each changes the outputs; the metric is
    computed on the whole set (a pair set's accuracy needs every pair). Metrics are fractions (0..1)."""

    def __init__(self, protocol: str, images: np.ndarray, labels: np.ndarray | None, issame: np.ndarray | None,
                 nfolds: int) -> None:
        self.protocol, self.images, self.labels, self.issame, self.nfolds = protocol, images, labels, issame, nfolds
        self.seen: list[float] = []  # the metric of every full pass, in order (float model first)

    def items(self) -> list[np.ndarray]:
        return [self.images[i:i + 1] for i in range(len(self.images))]

    def metric(self, outputs: np.ndarray) -> float:
        if self.protocol == "verification":
            from fcbench.metrics.verification import verification_metrics

            return float(verification_metrics(outputs[0::2], outputs[1::2], self.issame, nfolds=self.nfolds).accuracy)
        from fcbench.metrics.classification import classification_metrics

        return float(classification_metrics(outputs, self.labels, ks=(1,)).top1)

    def run(self, compiled, items) -> np.ndarray:
        out = [np.asarray(compiled(x)[0], dtype=np.float32).reshape(1, -1) for x in items]
        return np.concatenate(out)

    def __call__(self, compiled, items) -> tuple[float, list[list[np.ndarray]]]:
        outputs = self.run(compiled, list(items))
        if len(outputs) < len(self.images):  # NNCF probing the return type on one item: no metric on a part
            return 0.0, [[o] for o in outputs]
        value = self.metric(outputs)
        self.seen.append(value)
        return value, [[o] for o in outputs]


def _validation(source: Source, spec: Spec) -> _Validation:
    """The validation set of ``--eval-data``, prepared with the input's preprocessing, and its protocol."""
    from fcbench.data import open_dataset

    manifest = source.manifest
    pre = replace(manifest.preprocessing, layout="NCHW")
    options = dict(spec.eval_options)
    nfolds = int(options.pop("nfolds", 10))
    dataset = open_dataset(spec.eval_data, preprocessing=pre, **options)
    is_pairs = hasattr(dataset, "issame")
    if manifest.output_kind not in ("logits", "embedding"):
        raise FcbenchError(f"quantize: accuracy control measures top-1 or verification accuracy, and "
                           f"{source.path.name} outputs {manifest.output_kind}; quantize it without --eval-data")
    classifier = manifest.output_kind == "logits"
    if not is_pairs and not classifier:
        raise FcbenchError(f"quantize: --eval-data {spec.eval_data} is no pair set, and accuracy control of a face "
                           "model measures verification accuracy: give a pair set (e.g. synthetic:pairs or an "
                           "insightface .bin)")
    if is_pairs and classifier:
        raise FcbenchError(f"quantize: --eval-data {spec.eval_data} is a pair set, and {source.path.name} is a "
                           "classifier (top-1 needs labelled images): give a labelled dataset")
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        x = item[0] if isinstance(item, (list, tuple)) else item
        images.append(np.asarray(x, dtype=np.float32))
        if isinstance(item, (list, tuple)) and len(item) > 1:
            labels.append(int(item[1]))
    if not images:
        raise FcbenchError(f"quantize: --eval-data {spec.eval_data} holds no images")
    arr = np.stack(images)
    shape = list(manifest.inputs[0].shape)
    want = shape[1:] if manifest.inputs[0].layout == "NCHW" else [shape[3], shape[1], shape[2]]
    if any(w > 0 and w != g for w, g in zip(want, arr.shape[1:], strict=True)):
        raise FcbenchError(f"quantize: --eval-data {spec.eval_data} gives images of "
                           f"{'x'.join(map(str, arr.shape[1:]))} (CxHxW) but the model takes "
                           f"{'x'.join(map(str, want))}: use validation data of the model's input size")
    if is_pairs:
        return _Validation("verification", arr, None, np.asarray(dataset.issame, dtype=bool), nfolds)
    return _Validation("classification", arr, np.asarray(labels), None, nfolds)


class OpenvinoPtq(QuantMethod):
    """NNCF post-training int8 quantization of an OpenVINO IR (and NNCF's accuracy control)."""

    name = "openvino-ptq"
    format = "openvino"
    backend = "openvino"
    source = "openvino"
    calibration = "required"
    min_calibration = 8
    keeps_float = True
    accuracy_control = True
    per_channel_default = True  # NNCF's default: per-channel weight scales, per-tensor activations

    @dataclass
    class Options:
        preset: Literal["performance", "mixed"] = "performance"  # mixed: asymmetric activations
        subset_size: int = 0  # calibration images NNCF uses (0: all that were given)
        fast_bias_correction: bool = True  # False: the slower, more exact bias correction
        target_device: Literal["ANY", "CPU"] = "ANY"

        def __post_init__(self) -> None:
            if self.subset_size < 0:
                raise ValueError(f"subset_size must be >= 0 (0: every calibration image), got {self.subset_size}")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        for module, hint in (("openvino", "pip install 'fcbench[openvino]'"),
                             ("nncf", "pip install 'fcbench[quantize]'")):
            ok, why = module_available(module, hint)
            if not ok:
                return ok, why
        return True, ""

    def layers(self, source: Source, options: Any) -> list[str]:
        return [op.get_friendly_name() for op in _ops(_read(source.float_artifact("openvino")))]

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        """NNCF compiles and releases many OpenVINO models (in threads, too); OpenVINO's CPU plugin swaps the
        calling thread's alternate signal stack as it does, and a model released out of order leaves it
        pointing at freed memory, so the next signal (SIGCHLD from any subprocess) crashed the process with
        SIGSEGV. Everything OpenVINO made here is released inside ``keep_sigaltstack``."""
        import gc

        from fcbench.backends.openvino import keep_sigaltstack

        with keep_sigaltstack():
            try:
                return self._quantize(source, options, spec, out, context)
            finally:
                gc.collect()

    def _quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        import nncf
        import openvino as ov
        from nncf.quantization.advanced_parameters import (
            AdvancedAccuracyRestorerParameters,
            AdvancedQuantizationParameters,
            QuantizationParameters,
        )

        src = source.float_artifact("openvino")
        model = _read(src)
        names = [op.get_friendly_name() for op in _ops(model)]
        _check_names(spec.keep_float, names, source.path)
        calib = spec.calibration
        assert calib is not None  # quantize() gives it: calibration = "required"
        subset = min(options.subset_size or len(calib), len(calib))
        kwargs: dict[str, Any] = {
            "preset": {"performance": nncf.QuantizationPreset.PERFORMANCE,
                       "mixed": nncf.QuantizationPreset.MIXED}[options.preset],
            "target_device": nncf.TargetDevice[options.target_device],
            "subset_size": subset,
            "fast_bias_correction": options.fast_bias_correction,
        }
        if spec.keep_float:
            kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(spec.keep_float))
        per_channel = True if spec.per_channel is None else bool(spec.per_channel)
        if not per_channel:
            kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
                weights_quantization_params=QuantizationParameters(per_channel=False))
        calibration = nncf.Dataset([x for x in calib.batches(1)])
        extra: dict[str, Any] = {}
        if spec.max_drop is not None and spec.eval_data:
            validation = _validation(source, spec)
            # one ranking worker: NNCF picks the count from how long a compile took, and with two or more it
            # compiles models in threads while this one runs inference; sequential is deterministic
            quantized = nncf.quantize_with_accuracy_control(
                model, calibration, nncf.Dataset(validation.items()), validation, max_drop=spec.max_drop / 100.0,
                drop_type=nncf.DropType.ABSOLUTE,
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(num_ranking_workers=1),
                **kwargs)
            # f32 inference, as NNCF measured the float and int8 models
            compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            final = validation.metric(validation.run(compiled, validation.items()))
            del compiled
            left = float_layers(quantized)
            reverted = [n for n in left if n not in spec.keep_float]
            drop = 100.0 * (validation.seen[0] - final)
            extra["accuracy_control"] = {
                "metric": "accuracy" if validation.protocol == "verification" else "top1",
                "protocol": validation.protocol, "eval_data": spec.eval_data, "images": len(validation.images),
                "max_drop": spec.max_drop, "float": validation.seen[0],
                "quantized_before": validation.seen[1] if len(validation.seen) > 1 else None,
                "final": final, "drop": drop, "met": drop <= spec.max_drop + 1e-9,
                "reverted": len(reverted), "reverted_layers": reverted}
        else:
            quantized = nncf.quantize(model, calibration, **kwargs)
        ov.save_model(quantized, str(out), compress_to_fp16=False)
        left = float_layers(quantized)
        kinds: dict[str, int] = {}
        for op in quantized.get_ordered_ops():
            if op.get_type_name() == "FakeQuantize":
                kinds["FakeQuantize"] = kinds.get("FakeQuantize", 0) + 1
        extra.update({"quantizable": len(names), "quantized": len(names) - len(left), "float_layers": left,
                      "fake_quantize": kinds.get("FakeQuantize", 0), "nncf": nncf.__version__})
        return Quantized(out, options={"per_channel": per_channel, "subset_size": subset,
                                       **({"max_drop": spec.max_drop, "eval_data": spec.eval_data}
                                          if spec.max_drop is not None else {})},
                         extra=extra)
