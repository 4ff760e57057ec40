"""PyTorch -> OpenVINO IR (``.xml`` + ``.bin``) with ``openvino.convert_model`` and ``save_model``.

Options:
  compress_to_fp16  store weights as f16 in the .bin (default false: f32 weights, as trained)
  source            "torch" (default: OpenVINO's PyTorch frontend on the module) | "onnx" (export to
                    ONNX with fcbench's ONNX exporter first, then convert that file)
  dynamic_batch     leave the batch dimension dynamic (default false: fixed to the example's)
  opset             ONNX opset when source = "onnx" (default as the ONNX exporter)

The IR's input is named "input" and its output "output", as in fcbench's ONNX files. What the
runtime computes in (f32 or bf16/f16) is a compile-time choice of the OpenVINO backend, not of
the IR: ``compress_to_fp16`` only changes how weights are stored.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when an export runs: checking options stays light
    import torch

from fcbench.conversion.base import Exporter, ExportResult
from fcbench.conversion.onnx import OPSETS
from fcbench.errors import FcbenchError
from fcbench.options import OptionSpec, exporter_options

SOURCES = ("torch", "onnx")
# what ``--opt openvino.KEY=VALUE`` takes (plain data, checked without importing torch or OpenVINO)
OPTIONS = {
    "compress_to_fp16": OptionSpec(bool, False, "store weights as f16"),
    "source": OptionSpec(str, "torch", "torch (OpenVINO's PyTorch frontend) or onnx (through fcbench's ONNX export)",
                         choices=SOURCES),
    "dynamic_batch": OptionSpec(bool, False, "leave the batch dimension dynamic"),
    "opset": OptionSpec(int, None, "ONNX opset with source = onnx", min=OPSETS[0], max=OPSETS[1]),
}


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[0] if lines else type(exc).__name__)[:300]


class OpenVinoExporter(Exporter):
    format = "openvino"
    module = "openvino"
    install_hint = "pip install 'fcbench[openvino]'"
    options = OPTIONS

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        import torch

        opts = exporter_options("openvino", OPTIONS, options)
        compress, dynamic_batch, source = opts["compress_to_fp16"], opts["dynamic_batch"], opts["source"]
        if "opset" in opts and source != "onnx":
            raise FcbenchError("openvino export: option 'opset' only applies with source = 'onnx'")

        import openvino as ov

        out = Path(out)
        if out.suffix != ".xml":
            raise FcbenchError(f"openvino export: output must end in .xml (the .bin is written beside it), got {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        example = example.detach().to(torch.float32)
        shape = list(example.shape)
        ov_shape = [-1, *shape[1:]] if dynamic_batch else shape
        extra: dict[str, Any] = {"openvino": ov.get_version()}
        was_training = model.training
        model.eval()
        try:
            if source == "torch":
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
                    warnings.simplefilter("ignore")
                    ov_model = ov.convert_model(model, example_input=example, input=[ov.PartialShape(ov_shape)])
                extra["frontend"] = "pytorch"
            else:
                from fcbench.conversion.onnx import OnnxExporter

                onnx_opts = {"dynamic_batch": dynamic_batch}
                if "opset" in opts:
                    onnx_opts["opset"] = opts["opset"]
                with tempfile.TemporaryDirectory() as tmp:
                    res = OnnxExporter().export(model, example, Path(tmp) / "model.onnx", onnx_opts)
                    ov_model = ov.convert_model(str(res.file))
                extra["frontend"] = "onnx"
                extra["onnx"] = {"opset": res.options["opset"], "exporter": res.options["exporter"]}
        except FcbenchError:
            raise
        except Exception as exc:  # the frontends raise RuntimeError/OpConversionFailure/...
            raise FcbenchError(f"openvino export: convert_model failed: {_one_line(exc)}", exit_code=1) from exc
        finally:
            model.train(was_training)

        if len(ov_model.inputs) != 1:
            raise FcbenchError(f"openvino export: expected one model input, got {len(ov_model.inputs)}", exit_code=1)
        ov_model.inputs[0].get_tensor().set_names({"input"})
        ov_model.outputs[0].get_tensor().set_names({"output"})
        ov.save_model(ov_model, str(out), compress_to_fp16=compress)
        bin_file = out.with_suffix(".bin")
        if not bin_file.exists():
            raise FcbenchError(f"openvino export: save_model wrote no {bin_file.name}", exit_code=1)
        extra["companion_files"] = [bin_file.name]
        extra["input_shape"] = ["batch", *shape[1:]] if dynamic_batch else shape
        extra["weights"] = "f16" if compress else "f32"
        used = {"compress_to_fp16": compress, "source": source, "dynamic_batch": dynamic_batch}
        if source == "onnx":
            used["opset"] = extra["onnx"]["opset"]
        return ExportResult(file=out, input_layout="NCHW", options=used, extra=extra)
