"""TFLite (LiteRT) artifacts: PyTorch models through litert-torch, Keras models through TensorFlow.

``TfliteExporter`` converts the eval-mode fp32 PyTorch model with litert-torch. By default the
``.tflite`` keeps the NCHW input of the PyTorch model, so every backend is fed the same tensor
(litert-torch inserts the layout transposes itself, they show up as TRANSPOSE ops). Option
``nhwc=True`` wraps the model with ``litert_torch.to_channel_last_io`` so the artifact takes
NHWC input, the layout TFLite kernels use natively; the manifest then says ``NHWC``.

``convert_keras`` is for users who bring Keras models (``.keras``, ``.h5`` or a SavedModel
folder). It runs ``tf.lite.TFLiteConverter``; Keras models take NHWC input. By default it keeps
the model float (``optimize=none``): a conversion reproduces its source, and its parity is
enforced. The other modes stay for explicit use; the maintained lossy route is a quantize step
on the float result (``fcbench quantize X.tflite --method tflite-dynamic``, ai-edge-quantizer).

Optimize modes of ``convert_keras`` and what they really do in TensorFlow 2.21
(``tensorflow/lite/python/lite.py``, class ``Optimize``):

- ``none``: no optimization, float32 weights and activations.
- ``default``: ``tf.lite.Optimize.DEFAULT``; without a representative dataset this is
  dynamic-range quantization: weights of tensors with at least 1024 elements are stored as
  int8, activations stay float32 (kernels quantize them on the fly where they support it).
- ``size``: ``Optimize.OPTIMIZE_FOR_SIZE``, deprecated; "does the same as DEFAULT" (TF logs a
  deprecation warning). Output is byte-identical to ``default``.
- ``latency``: ``Optimize.OPTIMIZE_FOR_LATENCY``, deprecated alias of DEFAULT as well.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when an export runs: checking options stays light
    import torch

from fcbench.conversion.base import Exporter, ExportResult
from fcbench.errors import FcbenchError, first_line, suggest
from fcbench.options import OptionSpec, exporter_options
from fcbench.results.context import package_version

# what ``--opt tflite.KEY=VALUE`` takes (plain data, checked without importing torch or litert-torch)
TFLITE_OPTIONS = {
    "nhwc": OptionSpec(bool, False, "the artifact takes NHWC input"),
    "strict_export": OptionSpec(Any, False, "litert-torch's torch.export strictness: true, false or auto",
                                choices=(True, False, "auto")),
}
OPTIMIZE_MODES = ("latency", "size", "default", "none")
# a Keras model's conversion (TFLiteConverter) takes these instead
KERAS_OPTIONS = {
    "optimize": OptionSpec(str, "none", "TFLiteConverter optimizations (lossy unless none; for int8 weights "
                           "prefer fcbench quantize X.tflite --method tflite-dynamic)", choices=OPTIMIZE_MODES),
    "allow_select_tf_ops": OptionSpec(bool, False, "allow TensorFlow ops the builtin kernels lack"),
}
# what each optimize mode passes to TFLiteConverter.optimizations, and what it amounts to in TF 2.21
_OPTIMIZE_FLAGS = {"latency": "OPTIMIZE_FOR_LATENCY", "size": "OPTIMIZE_FOR_SIZE", "default": "DEFAULT", "none": None}
_OPTIMIZE_EFFECT = {
    "none": "no optimization: float32 weights and activations",
    "default": "Optimize.DEFAULT: dynamic-range quantization (int8 weights for tensors of >= 1024 elements, "
               "float32 activations)",
    "size": "Optimize.OPTIMIZE_FOR_SIZE is a deprecated alias of DEFAULT in TF 2.21: dynamic-range quantization",
    "latency": "Optimize.OPTIMIZE_FOR_LATENCY is a deprecated alias of DEFAULT in TF 2.21: dynamic-range "
               "quantization",
}

_OP_PATTERNS = (
    re.compile(r"Lowering not found: (\S+)"),
    re.compile(r"failed to legalize operation '([^']+)'"),
    re.compile(r"'([\w.]+)' op is neither a custom op nor a flex op"),
    re.compile(r"[Uu]nsupported ops?[^:]*: ([\w.:, ]+)"),
)


def unsupported_op(message: str) -> str:
    """The op a converter names as unsupported, or ''."""
    for pattern in _OP_PATTERNS:
        m = pattern.search(message)
        if m:
            return m.group(1).strip().rstrip(".,")
    return ""


def _conversion_error(what: str, exc: BaseException) -> FcbenchError:
    op = unsupported_op(str(exc))
    if op:
        return FcbenchError(f"{what}: conversion failed, unsupported op {op}", exit_code=1)
    return FcbenchError(f"{what}: conversion failed: {type(exc).__name__}: {first_line(exc)[:300]}", exit_code=1)


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def tflite_op_counts(path: Path) -> dict[str, int]:
    """Op types of a .tflite file and how often each occurs (as the interpreter lists them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return dict(sorted(Counter(d["op_name"] for d in interp._get_ops_details()).items()))


def _tflite_io(path: Path) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def spec(d: dict[str, Any]) -> dict[str, Any]:
        return {"name": d["name"], "shape": [int(s) for s in d["shape_signature"]], "dtype": d["dtype"].__name__}

    return {"inputs": [spec(d) for d in interp.get_input_details()],
            "outputs": [spec(d) for d in interp.get_output_details()]}


class TfliteExporter(Exporter):
    """PyTorch -> .tflite with litert-torch.

    Options: ``nhwc`` (bool, default False): make the artifact take NHWC input;
    ``strict_export`` (bool or "auto", default False): passed to litert-torch's torch.export step.
    """

    format = "tflite"
    module = "litert_torch"
    install_hint = "pip install 'fcbench[tflite]'"
    options = TFLITE_OPTIONS

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        import torch

        opts = exporter_options("tflite", TFLITE_OPTIONS, options)
        nhwc, strict = opts["nhwc"], opts["strict_export"]
        if example.ndim != 4:
            raise FcbenchError(f"tflite: expected a 4-D NCHW example input, got shape {list(example.shape)}")
        try:
            import litert_torch
        except ImportError as exc:
            raise FcbenchError(f"tflite: litert-torch cannot be imported ({exc}); install it with: "
                               f"{self.install_hint}", exit_code=1) from exc
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        module = model.eval()
        sample = example.float()
        if nhwc:
            module = litert_torch.to_channel_last_io(module, args=[0]).eval()
            sample = sample.permute(0, 2, 3, 1).contiguous()
        try:
            with _env("LITERT_TORCH_SHOW_PROGRESS", os.environ.get("FCBENCH_LITERT_PROGRESS", "n")), torch.no_grad():
                edge = litert_torch.convert(module, (sample,), strict_export=strict)
                edge.export(str(out))
        except FcbenchError:
            raise
        except Exception as exc:  # the converter raises RuntimeError, ValueError, MLIR errors, ...
            raise _conversion_error("tflite (litert-torch)", exc) from exc
        extra: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # informative only
            extra["tflite_ops"] = tflite_op_counts(out)
        return ExportResult(
            file=out, input_layout="NHWC" if nhwc else "NCHW",
            options={"nhwc": nhwc, "strict_export": strict, "converter": "litert-torch",
                     "litert_torch": package_version("litert-torch") or "unknown"},
            extra=extra,
        )


def _keras_source(path: Path) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "saved_model"
        raise FcbenchError(f"{path}: a folder but not a SavedModel (no saved_model.pb inside)")
    if path.suffix == ".keras":
        return "keras"
    if path.suffix in (".h5", ".hdf5"):
        return "h5"
    raise FcbenchError(f"{path}: not a Keras model; expected a .keras or .h5 file or a SavedModel folder")


def convert_keras(path: str | Path, out: str | Path, optimize: str = "none", *,
                  allow_select_tf_ops: bool = False) -> ExportResult:
    """Keras (``.keras``, ``.h5``) or SavedModel -> ``.tflite`` with ``tf.lite.TFLiteConverter``.

    ``optimize``: ``none`` (the default: float32, faithful) | ``latency`` | ``size`` | ``default``.
    In TF 2.21 ``latency`` and
    ``size`` are deprecated aliases of ``default`` (``Optimize.DEFAULT``), which without a
    representative dataset means dynamic-range quantization: int8 weights (tensors of at least
    1024 elements), float32 activations. Only ``none`` keeps the model float32; for quantized
    weights prefer ``fcbench quantize X.tflite --method tflite-dynamic`` on the float result.
    ``allow_select_tf_ops``: also allow TensorFlow ops (Flex); the result then needs the Flex
    delegate at run time, which ai-edge-litert does not ship. Input layout is NHWC.
    """
    path, out = Path(path), Path(out)
    if optimize not in OPTIMIZE_MODES:
        raise FcbenchError(f"keras: unknown optimize mode '{optimize}'{suggest(optimize, OPTIMIZE_MODES)}; "
                           f"modes: {', '.join(OPTIMIZE_MODES)}")
    if not path.exists():
        raise FcbenchError(f"{path}: no such file or folder")
    source = _keras_source(path)
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise FcbenchError(f"keras: tensorflow cannot be imported ({exc}); install it with: "
                           "pip install 'fcbench[tensorflow]'", exit_code=1) from exc

    quiet = io.StringIO()  # keras' export prints the saved endpoints to stdout
    flag = _OPTIMIZE_FLAGS[optimize]
    try:
        with contextlib.redirect_stdout(quiet):
            if source == "saved_model":
                converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
            else:
                import keras

                try:
                    kmodel = keras.models.load_model(str(path), compile=False)
                except Exception as exc:
                    raise FcbenchError(f"{path}: not a loadable Keras model ({type(exc).__name__}: "
                                       f"{first_line(exc)[:200]})") from exc
                converter = tf.lite.TFLiteConverter.from_keras_model(kmodel)
            if flag:
                converter.optimizations = [getattr(tf.lite.Optimize, flag)]
            if allow_select_tf_ops:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
            data = converter.convert()
    except FcbenchError:
        raise
    except OSError as exc:
        raise FcbenchError(f"{path}: cannot be read as {source} ({first_line(exc)[:200]})") from exc
    except Exception as exc:
        raise _conversion_error(f"keras ({path.name})", exc) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_file = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp_file, out)
    extra: dict[str, Any] = {"source": str(path), "source_format": source}
    with contextlib.suppress(Exception):  # informative only
        extra.update(_tflite_io(out))
        extra["tflite_ops"] = tflite_op_counts(out)
    return ExportResult(
        file=out, input_layout="NHWC",
        options={"optimize": optimize, "tf_optimizations": [flag] if flag else [],
                 "effect": _OPTIMIZE_EFFECT[optimize], "allow_select_tf_ops": allow_select_tf_ops,
                 "converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__},
        extra=extra,
    )
