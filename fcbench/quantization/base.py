"""The quantization method contract: what a ``quantize`` technique plugin is and what it is given.

A quantization method is a technique plugin (entry-point group ``fcbench.techniques``) whose
lineage ``verb`` is ``"quantize"``. Unlike a checkpoint-to-checkpoint technique it makes a
runtime's artifact (an int8 ONNX model, an OpenVINO IR, a .tflite, a .pte, ...), so instead of
``apply`` it has::

    format  = "onnx"          # the registered format it writes (fcbench.formats)
    backend = "onnxruntime"   # the backend (profile or plugin:variant) that runs what it writes
    source  = "onnx"          # what it quantizes: "checkpoint", or a format it reads (the float
                              # artifact is converted from the checkpoint when the input is one)
    calibration = "required"  # "none", "optional" or "required": whether it reads --calib-data
    min_calibration = 16      # the fewest calibration images it accepts
    keeps_float = True        # it can leave named layers in float (--keep-float, --keep-sensitive)
    accuracy_control = False  # it honours --max-drop/--eval-data (Spec.max_drop, Spec.eval_data)

    def quantize(self, source: Source, options, spec: Spec, out: Path, context) -> Quantized

``quantize`` writes one file at ``out`` (companions beside it, as the format says) and returns
:class:`Quantized`; :func:`fcbench.quantization.quantize` does the rest: input checks,
calibration data, the manifest and lineage, the fidelity check against the float parent, atomic
publishing and the result row. A method never prints and never writes the results store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fcbench.errors import FcbenchError
from fcbench.techniques.base import NoOptions, Technique

if TYPE_CHECKING:
    import torch

    from fcbench.artifact import Manifest


@dataclass
class Calibration:
    """Calibration images, prepared with the input's preprocessing: float32 ``(N, C, H, W)``."""

    images: np.ndarray
    source: str
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, batch_size: int = 1, layout: str = "NCHW") -> Iterator[np.ndarray]:
        """The images in batches of ``batch_size`` (the last one may be shorter), in ``layout``."""
        for i in range(0, len(self), batch_size):
            x = self.images[i:i + batch_size]
            yield np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "NHWC" else x)


@dataclass
class Spec:
    """The method-independent part of a request: ``per_channel`` (None: the method's default),
    ``keep_float`` (layer names the method leaves in float) and the calibration images."""

    per_channel: bool | None = None
    keep_float: list[str] = field(default_factory=list)
    calibration: Calibration | None = None
    max_drop: float | None = None  # accuracy control: points below the float parent, on eval_data
    eval_data: str | None = None
    eval_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Quantized:
    """What a method wrote: the file, its input layout, the options it resolved (recorded in the
    lineage step) and facts for the manifest's ``extra.quantization`` (e.g. how many nodes it quantized)."""

    file: Path
    input_layout: str = "NCHW"
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Source:
    """The input being quantized: an fcbench checkpoint, or a float artifact with its manifest.

    :meth:`float_artifact` gives the float model in the format a method reads: the input itself
    when it is one, else converted from the checkpoint into the staging folder (a faithful
    conversion, checked like ``convert``'s) and removed with it."""

    def __init__(self, path: Path, manifest: Manifest, stage: Path, checkpoint: Path | None) -> None:
        self.path = path
        self.manifest = manifest
        self.stage = stage
        self.checkpoint = checkpoint  # the input when it is an fcbench checkpoint, else None
        self._model: torch.nn.Module | None = None
        self._converted: dict[str, Path] = {}
        self.layouts: dict[str, str] = {}  # input layout of each converted float artifact

    @property
    def is_checkpoint(self) -> bool:
        return self.checkpoint is not None

    def model(self) -> torch.nn.Module:
        """The float PyTorch model (eval mode); only when the input is a checkpoint."""
        if self.checkpoint is None:
            raise FcbenchError(f"{self.path.name} is a {self.manifest.format} artifact; this method quantizes an "
                               "fcbench checkpoint (.pt): give the checkpoint it was converted from")
        if self._model is None:
            from fcbench.training.checkpoint import load_checkpoint

            self._model = load_checkpoint(self.checkpoint).build_model().eval()
        return self._model

    def example(self, batch: int = 1) -> torch.Tensor:
        """The fixed prepared input (NCHW) every backend gets, from the manifest's preprocessing."""
        import torch

        from fcbench.benchmark.run import prepared_input

        return torch.from_numpy(prepared_input(self.manifest_nchw(), batch=batch))

    def manifest_nchw(self) -> Manifest:
        from dataclasses import replace

        from fcbench.artifact import TensorSpec

        spec = self.manifest.inputs[0]
        if spec.layout == "NCHW":
            return self.manifest
        n, h, w, c = spec.shape
        return replace(self.manifest, inputs=[TensorSpec(spec.name, [n, c, h, w], spec.dtype, "NCHW")])

    def float_artifact(self, fmt: str, options: dict[str, Any] | None = None) -> Path:
        """The float model as a ``fmt`` file: the input itself, or converted from the checkpoint."""
        if self.manifest.format == fmt:
            return self.path
        if fmt in self._converted:
            return self._converted[fmt]
        if self.checkpoint is None:
            raise FcbenchError(f"{self.path.name} is a {self.manifest.format} artifact, and this method quantizes "
                               f"{fmt}: give the fcbench checkpoint (.pt) or a {fmt} file")
        from fcbench import formats
        from fcbench.conversion import exporter_class

        form = formats.get(fmt)
        cls = exporter_class(fmt)
        ok, why = cls.available()
        if not ok:
            raise FcbenchError(f"converting to {fmt} first is not possible here: {why}")
        folder = self.stage / f"float-{fmt}"
        folder.mkdir(exist_ok=True)
        target = folder / (self.path.stem + form.suffix)
        result = cls().export(self.model(), self.example(), target, dict(options or {}))
        self._converted[fmt] = result.file
        self.layouts[fmt] = result.input_layout
        return result.file

    def converted(self, fmt: str) -> Path | None:
        """The float ``fmt`` artifact if the input is one or one was converted for the method, else None."""
        return self.path if self.manifest.format == fmt else self._converted.get(fmt)


def module_layers(model: Any, types: tuple[str, ...] = ("Conv2d", "Linear")) -> list[str]:
    """The module paths (``layer1.0.conv1``) of ``model``'s modules of these class names, in order: the names
    ``--keep-float`` takes for the methods that quantize a PyTorch model."""
    return [n for n, m in model.named_modules() if n and type(m).__name__ in types]


def check_keep_float(method: str, keep: list[str], names: list[str], path: Path) -> None:
    """One clear error for the first ``--keep-float`` name that is not one of the method's ``names``."""
    unknown = [k for k in keep if k not in names]
    if unknown:
        from fcbench.errors import suggest

        raise FcbenchError(f"--keep-float: {unknown[0]} is not a layer {method} quantizes in "
                           f"{path.name}{suggest(unknown[0], names)}; its layers: "
                           f"{', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")


class QuantMethod(Technique):
    """Base class of quantization methods (subclassing it is optional; keeping the contract is not)."""

    verb: ClassVar[str] = "quantize"
    format: ClassVar[str] = ""
    backend: ClassVar[str] = ""
    source: ClassVar[str] = "checkpoint"
    calibration: ClassVar[str] = "none"  # none | optional | required
    min_calibration: ClassVar[int] = 0
    keeps_float: ClassVar[bool] = False
    accuracy_control: ClassVar[bool] = False  # honours Spec.max_drop / eval_data (quantize --max-drop)
    per_channel_default: ClassVar[bool | None] = None  # None: the method has no per-channel choice
    Options: ClassVar[type] = NoOptions

    def layers(self, source: Source, options: Any) -> list[str]:
        """Names of the layers ``keep_float`` may name (for --keep-sensitive), in graph order."""
        return []

    def apply(self, checkpoint: Any, options: Any, context: Any) -> Any:
        raise FcbenchError(f"'{self.name}' is a quantization method: it writes a runtime artifact, not a "
                           f"checkpoint; run fcbench quantize CKPT --method {self.name}")

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        raise NotImplementedError
