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


def _finish(out: Path, simplify: bool, legacy: bool) -> dict[str, Any]:
    """Optimise (legacy path), fold any external data into the file, and check the model."""
    import onnx

    model = onnx.load(str(out), load_external_data=True)
    changed = False
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
            "nodes": len(model.graph.node)}


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
        info = _finish(out, opts["simplify"], legacy=used == "legacy")
        used_options = dict(opts, exporter=used)
        extra = {"exporter": f"torch.onnx.export(dynamo={used == 'dynamo'})", "torch": torch.__version__, **info}
        if errors:
            extra["exporter_fallback"] = errors
        shape = list(example.shape)
        extra["input_shape"] = ["batch", *shape[1:]] if opts["dynamic_batch"] else shape
        return ExportResult(file=out, input_layout="NCHW", options=used_options, extra=extra)
