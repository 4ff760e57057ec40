"""PyTorch's own int8: ``torch-dynamic``, ``torch-static``, ``torch-qat`` (the modes of seed 3).

Route: ``torch.ao.quantization`` (deprecated upstream but still shipped with torch 2.13) with
PyTorch's native quantized CPU kernels: fbgemm (engine ``x86``/``fbgemm``) on x86, qnnpack on ARM.
The result is quantized TorchScript saved for the lite interpreter (``.ptl``), which the
``pytorch-mobile`` backend runs and times. The newer routes do not give such a file: PT2E
(``torchao.quantization.pt2e`` with ``X86InductorQuantizer``) yields quantize/dequantize pairs that
only become int8 kernels inside ``torch.compile`` (no registered backend runs that), and torchao's
``quantize_`` makes tensor subclasses TorchScript cannot hold.

- ``torch-dynamic``: ``nn.Linear`` weights int8 ahead, activations quantized at run time (eager
  ``quantize_dynamic``); convolutions stay float. No calibration.
- ``torch-static``: FX graph mode (``prepare_fx``/``convert_fx``): conv+bn(+relu) fused, MinMax
  observers on the calibration images, weights and activations int8.
- ``torch-qat``: the same graph with fake quantization (``prepare_qat_fx``), fine-tuned on the
  calibration images and their labels (``epochs``, ``lr``, ``batch_size``) with the checkpoint's
  own training head (ArcFace, ...) for face models or cross-entropy on the logits for classifiers,
  then converted.

PReLU stays float in the static and QAT graphs: torch's quantized PReLU kernel (``quantized::prelu``)
scales positive inputs by the slope too (cosine to the float model ~ -0.2 on a tiny r18 here), so
each PReLU runs in float between a dequantize and a quantize.

The engine (``torch.backends.quantized.engine`` while quantizing) is recorded in the lineage step;
``reduce_range`` (7-bit activations, torch's default for fbgemm/x86, which can saturate 8 bits
without VNNI) defaults on for fbgemm/x86 and off for qnnpack.
"""

from __future__ import annotations

import contextlib
import copy
import platform
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fcbench.errors import FcbenchError
from fcbench.quantization.base import Quantized, QuantMethod, Source, Spec, check_keep_float, module_layers

ENGINES = ("auto", "x86", "fbgemm", "qnnpack")


def _available() -> tuple[bool, str]:
    try:
        import torch
        import torch.ao.quantization  # noqa: F401
    except ImportError as exc:
        return False, f"torch.ao.quantization cannot be imported ({exc}); pip install torch"
    if not torch.backends.quantized.supported_engines or torch.backends.quantized.supported_engines == ["none"]:
        return False, "this torch build has no quantized engine (fbgemm, x86 or qnnpack)"
    return True, ""


def resolve_engine(name: str) -> str:
    """The quantized engine for ``name`` (``auto``: qnnpack on ARM, x86 (else fbgemm) elsewhere)."""
    import torch

    supported = list(torch.backends.quantized.supported_engines)
    if name == "auto":
        arm = platform.machine().lower() in ("arm64", "aarch64", "armv7l", "armv8l")
        for cand in (("qnnpack",) if arm else ("x86", "fbgemm", "qnnpack")):
            if cand in supported:
                return cand
        raise FcbenchError(f"no quantized engine for {platform.machine()} in this torch build (it has "
                           f"{', '.join(supported)}); pass --opt engine=NAME")
    if name not in supported:
        raise FcbenchError(f"--opt engine={name}: this torch build's quantized engines are "
                           f"{', '.join(e for e in supported if e != 'none')}; pick one of them")
    return name


@contextlib.contextmanager
def _engine(name: str) -> Iterator[None]:
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice, observer notes
            yield
    finally:
        torch.backends.quantized.engine = before


def _reduce_range(engine: str, option: bool | None) -> bool:
    return engine in ("x86", "fbgemm") if option is None else bool(option)


def _qconfig(engine: str, reduce_range: bool, per_channel: bool, qat: bool):
    """MinMax observers (moving-average MinMax under fake quantization for QAT): activations quint8
    (7-bit with ``reduce_range``), weights qint8 symmetric, per channel or per tensor."""
    import torch
    from torch.ao.quantization import (
        FakeQuantize,
        MinMaxObserver,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
    )

    lo, hi = (0, 127) if reduce_range else (0, 255)
    if qat:
        act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=lo, quant_max=hi,
                                     dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        if per_channel:
            weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                                            quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
        else:
            weight = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
                                            dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        return QConfig(activation=act, weight=weight)
    act = MinMaxObserver.with_args(dtype=torch.quint8, quant_min=lo, quant_max=hi)
    weight = (PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
              if per_channel else MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
    return QConfig(activation=act, weight=weight)


def _float_prelu_class():
    import torch

    class FloatPReLU(torch.nn.Module):
        """A PReLU kept float (a leaf FX does not trace into, with no qconfig)."""

        def __init__(self, prelu: torch.nn.Module) -> None:
            super().__init__()
            self.prelu = prelu

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.prelu(x)

    return FloatPReLU


def _wrap_prelu(module, cls) -> int:
    import torch

    n = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.PReLU):
            setattr(module, name, cls(child))
            n += 1
        else:
            n += _wrap_prelu(child, cls)
    return n


def _prepare(model, example, engine: str, reduce_range: bool, per_channel: bool, qat: bool,
             keep_float: list[str] | tuple[str, ...] = ()):
    """(FX-prepared copy of ``model`` with observers or fake quantizers, PReLUs and the ``keep_float`` modules
    kept float)."""
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    cls = _float_prelu_class()
    model = copy.deepcopy(model)
    kept = _wrap_prelu(model, cls)
    mapping = QConfigMapping().set_global(_qconfig(engine, reduce_range, per_channel, qat)).set_object_type(cls, None)
    for name in keep_float:
        mapping.set_module_name(name, None)
    custom = PrepareCustomConfig().set_non_traceable_module_classes([cls])
    if qat:
        return prepare_qat_fx(model.train(), mapping, (example,), prepare_custom_config=custom), kept
    return prepare_fx(model.eval(), mapping, (example,), prepare_custom_config=custom), kept


def _quantized_ops(model) -> dict[str, int]:
    """Quantized modules and ops of the converted model, by type."""
    counts: dict[str, int] = {}
    for m in model.modules():
        mod = type(m).__module__
        if ".quantized" in mod and m is not model:
            counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    graph = getattr(model, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.op == "call_function" and "quantized" in str(node.target):
            name = str(node.target).split(".")[-1]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _save_ptl(model, source: Source, out: Path) -> dict[str, Any]:
    """``model`` (quantized) as TorchScript for the lite interpreter at ``out`` (ptl's exporter:
    trace, freeze, save)."""
    from fcbench.conversion.ptl import PtlExporter

    result = PtlExporter().export(model.eval(), source.example(), out, {"method": "trace", "freeze": True})
    return {"ptl_operators": result.extra.get("ptl_operators", [])}


class _TorchMethod(QuantMethod):
    format = "ptl"
    backend = "pytorch-mobile"
    source = "checkpoint"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return _available()

    keeps_float = True
    _layer_types: tuple[str, ...] = ("Conv2d", "Linear")  # the modules --keep-float may name

    def layers(self, source: Source, options: Any) -> list[str]:
        """The model's module paths (``layer1.0.conv1``) of the layers this method quantizes, in order."""
        return module_layers(source.model(), self._layer_types)

    def _common(self, source: Source, options: Any, spec: Spec | None = None) -> tuple[Any, str]:
        engine = resolve_engine(options.engine)
        if spec is not None and spec.keep_float:
            check_keep_float(self.name, list(spec.keep_float), self.layers(source, options), source.path)
        source.float_artifact("ptl")  # the fp32 .ptl: the size the result is compared with
        return source.model(), engine

    @staticmethod
    def _facts(engine: str, reduce_range: bool | None = None, per_channel: bool | None = None) -> dict[str, Any]:
        import torch

        facts: dict[str, Any] = {"engine": engine, "torch": torch.__version__, "route": "torch.ao.quantization"}
        if reduce_range is not None:
            facts["reduce_range"] = reduce_range
        if per_channel is not None:
            facts["per_channel"] = per_channel
        return facts


class TorchDynamic(_TorchMethod):
    """nn.Linear weights int8, activations quantized at run time (torch.ao.quantization.quantize_dynamic)."""

    name = "torch-dynamic"
    calibration = "optional"  # only for the fidelity check
    per_channel_default = False
    _layer_types = ("Linear",)

    @dataclass
    class Options:
        engine: Literal["auto", "x86", "fbgemm", "qnnpack"] = "auto"

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        import torch
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        model, engine = self._common(source, options, spec)
        per_channel = bool(spec.per_channel)
        linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
        if not linears:
            raise FcbenchError(f"quantize: torch-dynamic quantizes nn.Linear layers and {source.path.name} has none; "
                               "use torch-static (convolutions too)")
        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        with _engine(engine):
            targets = {n: qconfig for n, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and n not in spec.keep_float}
            quantized = quantize_dynamic(copy.deepcopy(model).eval(), targets, dtype=torch.qint8)
            extra = _save_ptl(quantized, source, out)
        facts = self._facts(engine, per_channel=per_channel)
        return Quantized(out, options=facts, extra={**facts, "quantized_linear": linears,
                                                     "ops": _quantized_ops(quantized), **extra})


class TorchStatic(_TorchMethod):
    """Weights and activations int8, MinMax-calibrated, conv+bn+relu fused (FX graph mode)."""

    name = "torch-static"
    calibration = "required"
    min_calibration = 8
    per_channel_default = True

    @dataclass
    class Options:
        engine: Literal["auto", "x86", "fbgemm", "qnnpack"] = "auto"
        reduce_range: bool | None = None  # None: on for fbgemm/x86, off for qnnpack
        batch_size: int = 16  # calibration batch

        def __post_init__(self) -> None:
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        import torch
        from torch.ao.quantization.quantize_fx import convert_fx

        model, engine = self._common(source, options, spec)
        calib = spec.calibration
        assert calib is not None  # calibration = "required"
        reduce_range, per_channel = _reduce_range(engine, options.reduce_range), bool(spec.per_channel)
        with _engine(engine):
            prepared, kept = _prepare(model, source.example(), engine, reduce_range, per_channel, qat=False,
                                      keep_float=spec.keep_float)
            with torch.no_grad():
                for x in calib.batches(options.batch_size):
                    prepared(torch.from_numpy(x))
            quantized = convert_fx(prepared)
            extra = _save_ptl(quantized, source, out)
        facts = self._facts(engine, reduce_range, per_channel)
        return Quantized(out, options={**facts, "calibration_images": len(calib)},
                         extra={**facts, "float_prelu": kept, "ops": _quantized_ops(quantized), **extra})


class TorchQat(_TorchMethod):
    """Quantization-aware fine-tuning (fake quantization) on labelled calibration images, then int8."""

    name = "torch-qat"
    calibration = "required"
    min_calibration = 16
    per_channel_default = True

    @dataclass
    class Options:
        epochs: int = 1
        lr: float = 1e-4  # QAT fine-tunes: ~1% of a training learning rate
        batch_size: int = 16
        momentum: float = 0.9
        freeze_bn: bool = True  # keep BatchNorm statistics (fine-tune weights only): small data moves them
        engine: Literal["auto", "x86", "fbgemm", "qnnpack"] = "auto"
        reduce_range: bool | None = None

        def __post_init__(self) -> None:
            if self.epochs < 1:
                raise ValueError(f"epochs must be >= 1, got {self.epochs}")
            if not self.lr > 0:
                raise ValueError(f"lr must be > 0, got {self.lr}")
            if self.batch_size < 2:
                raise ValueError(f"batch_size must be >= 2 (BatchNorm trains on it), got {self.batch_size}")

    def _loss(self, source: Source, num_labels: int):
        """(head or None, what it is called): the checkpoint's training head for embedding models."""
        from fcbench.models import create_head
        from fcbench.training.checkpoint import load_checkpoint

        assert source.checkpoint is not None
        ckpt = load_checkpoint(source.checkpoint)
        if ckpt.task != "embedding":
            if num_labels > ckpt.output_size:
                raise FcbenchError(f"quantize: torch-qat: --calib-data has labels up to {num_labels - 1} but "
                                   f"{source.path.name} has {ckpt.output_size} classes; use the data it was trained on")
            return None, "cross-entropy"
        if not ckpt.head:
            raise FcbenchError(f"quantize: torch-qat fine-tunes an embedding model through its training head, and "
                               f"{source.path.name} keeps none; give the model.pt fcbench train wrote")
        head = create_head(ckpt.head["name"], int(ckpt.head["embedding_size"]), int(ckpt.head["num_classes"]),
                           **dict(ckpt.head.get("options") or {}))
        head.load_state_dict(ckpt.head["state_dict"])
        if num_labels > int(ckpt.head["num_classes"]):
            raise FcbenchError(f"quantize: torch-qat: --calib-data has labels up to {num_labels - 1} but the "
                               f"training head of {source.path.name} has {ckpt.head['num_classes']} classes; "
                               "use the data it was trained on")
        for p in head.parameters():
            p.requires_grad_(False)
        return head.train(), f"{ckpt.head['name']} head"

    def quantize(self, source: Source, options: Any, spec: Spec, out: Path, context: Any) -> Quantized:
        import numpy as np
        import torch
        from torch.ao.quantization.quantize_fx import convert_fx

        calib = spec.calibration
        assert calib is not None  # calibration = "required"
        if calib.labels is None or len(calib.labels) != len(calib):
            raise FcbenchError(f"quantize: torch-qat fine-tunes on labelled images and --calib-data ({calib.source}) "
                               "gives none; use a labelled dataset (imagefolder, cifar10, synthetic:faces)")
        model, engine = self._common(source, options, spec)
        head, loss_name = self._loss(source, int(calib.labels.max()) + 1)
        reduce_range, per_channel = _reduce_range(engine, options.reduce_range), bool(spec.per_channel)
        torch.manual_seed(context.seed)
        rng = np.random.default_rng(context.seed)
        losses: list[float] = []
        with _engine(engine):
            prepared, kept = _prepare(model, source.example(), engine, reduce_range, per_channel, qat=True,
                                      keep_float=spec.keep_float)
            if options.freeze_bn:
                from torch.ao.nn.intrinsic.qat import freeze_bn_stats

                prepared.apply(freeze_bn_stats)  # fused conv+bn
                for m in prepared.modules():
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                        m.eval()
            opt = torch.optim.SGD([p for p in prepared.parameters() if p.requires_grad], lr=options.lr,
                                  momentum=options.momentum)
            images, labels = torch.from_numpy(calib.images), torch.from_numpy(calib.labels.astype(np.int64))
            n = len(calib)
            for epoch in range(options.epochs):
                order = torch.from_numpy(rng.permutation(n))
                total, seen = 0.0, 0
                for i in range(0, n - 1, options.batch_size):
                    idx = order[i:i + options.batch_size]
                    if len(idx) < 2:  # BatchNorm needs two samples
                        continue
                    x, y = images[idx], labels[idx]
                    out_ = prepared(x)
                    logits = head(out_, y) if head is not None else out_
                    loss = torch.nn.functional.cross_entropy(logits, y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total, seen = total + float(loss) * len(idx), seen + len(idx)
                losses.append(total / max(seen, 1))
                if context.progress:
                    context.progress(f"torch-qat: epoch {epoch + 1}/{options.epochs} loss {losses[-1]:.4f}",
                                     (epoch + 1) / options.epochs)
            prepared.eval()
            quantized = convert_fx(prepared)
            extra = _save_ptl(quantized, source, out)
        facts = self._facts(engine, reduce_range, per_channel)
        return Quantized(out, options={**facts, "loss": loss_name, "train_images": len(calib)},
                         extra={**facts, "loss": loss_name, "epoch_loss": [round(v, 6) for v in losses],
                                "float_prelu": kept, "ops": _quantized_ops(quantized), **extra})
