"""PyTorch -> ONNX with ``torch.onnx.export``.

The default path is the ``torch.export``-based ("dynamo") exporter at opset 18, the opset its
ONNX Script translation library is written for (other opsets go through the ONNX version
converter). The TorchScript ("legacy") exporter is kept as a fallback and as an explicit
choice; torch marks it deprecated. Whichever ran is recorded in the result's options.

Options:
  opset          ONNX opset (default 18)
  exporter       "auto" (dynamo, falling back to legacy if dynamo fails) | "dynamo" | "legacy"
  simplify       constant folding + dead-code elimination with onnxscript's optimizer (default true)
  dynamic_batch  make the batch dimension symbolic ("batch") instead of fixed to the example's (default false)
  prelu          "keep" (default) | "relu-bn": write each per-channel PRelu as relu(x) - a * relu(-x), the
                 negations and the slopes as BatchNormalization (scale -1, then -a) and the sum as Add. Same
                 arithmetic (the scales are exact); ONNX Runtime's CPU provider has no NCHWc PRelu and puts
                 a layout reorder out and back around each one, while it turns these BatchNormalizations into
                 NCHWc depthwise convolutions and fuses the Add and Relu, so the graph stays in NCHWc

The whole model is written into the one ``.onnx`` file (no external-data side file).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when an export runs: checking options stays light
    import torch

from fcbench.conversion.base import Exporter, ExportResult
from fcbench.errors import FcbenchError
from fcbench.options import OptionSpec, exporter_options

DEFAULT_OPSET = 18
OPSETS = (9, 23)  # the opsets torch.onnx.export writes
EXPORTERS = ("auto", "dynamo", "legacy")
# what ``--opt onnx.KEY=VALUE`` takes: plain data, checked (by convert and run --check) without importing torch
OPTIONS = {
    "opset": OptionSpec(int, DEFAULT_OPSET, "ONNX opset", min=OPSETS[0], max=OPSETS[1]),
    "exporter": OptionSpec(str, "auto", "dynamo, legacy, or auto (dynamo, falling back to legacy)", choices=EXPORTERS),
    "simplify": OptionSpec(bool, True, "constant folding + dead-code elimination"),
    "dynamic_batch": OptionSpec(bool, False, "a symbolic batch dimension"),
    "prelu": OptionSpec(str, "keep", "keep, or relu-bn: per-channel PRelu as Relu + BatchNormalization + Add "
                                     "(ONNX Runtime keeps that in its NCHWc layout)", choices=("keep", "relu-bn")),
}


def parse_options(options: dict[str, Any]) -> dict[str, Any]:
    return exporter_options("onnx", OPTIONS, options)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, deprecation warnings and registry log lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_dynamo(model, example, out: Path, opset: int, simplify: bool, dynamic_batch: bool) -> None:
    import onnxscript  # noqa: F401  the dynamo exporter needs it; fail early with a clear message
    import torch

    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["output"],
                      opset_version=opset, dynamo=True, external_data=False, optimize=simplify,
                      dynamic_shapes=dynamic_shapes, verbose=False)


def _export_legacy(model, example, out: Path, opset: int, simplify: bool, dynamic_batch: bool) -> None:
    import torch

    dynamic_axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["output"],
                      opset_version=opset, dynamo=False, do_constant_folding=simplify,
                      dynamic_axes=dynamic_axes, verbose=False)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _bn(graph: Any, name: str, scale: Any, src: str, dst: str) -> Any:
    """An eval-mode BatchNormalization multiplying channel c by ``scale[c]``: mean 0, bias 0 and var + eps
    = 0.75 + 0.25 = 1 exactly, so it is the product alone."""
    import numpy as np
    from onnx import helper, numpy_helper

    c = len(scale)
    names = [f"{name}_{k}" for k in ("scale", "bias", "mean", "var")]
    values = [scale, np.zeros(c), np.zeros(c), np.full(c, 0.75)]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float32), n)
                             for n, v in zip(names, values, strict=True))
    return helper.make_node("BatchNormalization", [src, *names], [dst], name=name, epsilon=0.25)


def _prelu_as_relu_bn(model: Any) -> tuple[int, int]:
    """Rewrite, in place, every PRelu whose slope is a per-channel constant (shape [C], [C,1,1] or [1,C,1,1],
    C > 1) as ``Relu(x) + BN_{-a}(Relu(BN_{-1}(x)))``; returns (rewritten, left as PRelu)."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, done, left = [], 0, 0
    for n in graph.node:
        if n.op_type != "PRelu":
            nodes.append(n)
            continue
        slope = inits.get(n.input[1]) if len(n.input) == 2 else None
        dims = list(slope.dims) if slope is not None else []
        c = int(np.prod(dims)) if dims else 0
        if c < 2 or dims not in ([c], [c, 1, 1], [1, c, 1, 1]):
            left += 1
            nodes.append(n)
            continue
        a = numpy_helper.to_array(slope).astype(np.float32).reshape(-1)
        stem, x, y = f"{n.name or n.output[0]}_relubn", n.input[0], n.output[0]
        nodes += [helper.make_node("Relu", [x], [f"{stem}_pos"], name=f"{stem}_relu_pos"),
                  _bn(graph, f"{stem}_neg", -np.ones(c), x, f"{stem}_negx"),
                  helper.make_node("Relu", [f"{stem}_negx"], [f"{stem}_negrelu"], name=f"{stem}_relu_neg"),
                  _bn(graph, f"{stem}_slope", -a, f"{stem}_negrelu", f"{stem}_negpart"),
                  helper.make_node("Add", [f"{stem}_pos", f"{stem}_negpart"], [y], name=f"{stem}_add")]
        done += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for node in graph.node for i in node.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return done, left


def _finish(out: Path, simplify: bool, legacy: bool, prelu: str = "keep") -> dict[str, Any]:
    """Optimise (legacy path), rewrite PRelu when asked, fold any external data into the file, and check the
    model."""
    import onnx

    model = onnx.load(str(out), load_external_data=True)
    changed = False
    rewritten: dict[str, int] = {}
    if prelu == "relu-bn":
        done, left = _prelu_as_relu_bn(model)
        rewritten = {"prelu_rewritten": done, "prelu_left": left}
        changed = done > 0
    simplified = "exporter" if simplify and not legacy else ""
    if simplify and legacy:
        try:
            import onnxscript.optimizer

            model = onnxscript.optimizer.optimize(model)
            changed, simplified = True, "onnxscript.optimizer"
        except ImportError:
            simplified = "unavailable (onnxscript not installed); exporter constant folding only"
    side_files = {init.external_data[i].value for init in model.graph.initializer
                  for i in range(len(init.external_data)) if init.external_data[i].key == "location"}
    if side_files:  # load_external_data pulled the bytes in; write one self-contained file
        for init in model.graph.initializer:
            init.data_location = onnx.TensorProto.DEFAULT
            del init.external_data[:]
        changed = True
    if changed:
        onnx.save_model(model, str(out), save_as_external_data=False)
    for name in side_files:
        (out.parent / name).unlink(missing_ok=True)
    try:
        onnx.checker.check_model(str(out), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise FcbenchError(f"onnx export: the exported model fails onnx.checker: {_one_line(exc)}",
                           exit_code=1) from exc
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset_written": opset, "ir_version": model.ir_version, "simplified_by": simplified,
            "nodes": len(model.graph.node), **rewritten}


class OnnxExporter(Exporter):
    format = "onnx"
    module = "onnx"
    install_hint = "pip install 'fcbench[onnx]'"
    options = OPTIONS

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        import torch

        opts = parse_options(options)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        example = example.detach().to(torch.float32)
        was_training = model.training
        model.eval()
        order = {"auto": ["dynamo", "legacy"], "dynamo": ["dynamo"], "legacy": ["legacy"]}[opts["exporter"]]
        errors: dict[str, str] = {}
        used = ""
        try:
            for name in order:
                fn = _export_dynamo if name == "dynamo" else _export_legacy
                try:
                    with _quiet(), torch.no_grad():
                        fn(model, example, out, opts["opset"], opts["simplify"], opts["dynamic_batch"])
                    used = name
                    break
                except Exception as exc:  # the exporters raise many types; report the first line
                    errors[name] = _one_line(exc)
        finally:
            model.train(was_training)
        if not used:
            detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
            hint = " (install onnxscript: pip install 'fcbench[onnx]')" if "onnxscript" in detail else ""
            raise FcbenchError(f"onnx export failed ({detail}){hint}", exit_code=1)
        info = _finish(out, opts["simplify"], legacy=used == "legacy", prelu=opts["prelu"])
        used_options = dict(opts, exporter=used)
        extra = {"exporter": f"torch.onnx.export(dynamo={used == 'dynamo'})", "torch": torch.__version__, **info}
        if errors:
            extra["exporter_fallback"] = errors
        shape = list(example.shape)
        extra["input_shape"] = ["batch", *shape[1:]] if opts["dynamic_batch"] else shape
        return ExportResult(file=out, input_layout="NCHW", options=used_options, extra=extra)
