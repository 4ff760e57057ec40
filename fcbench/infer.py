"""A manifest for a file fcbench did not make: read what the file itself says, assume the rest,
and say exactly what was assumed.

What a file tells: its format (by its suffix, checked against its magic bytes: the format
registry, :mod:`fcbench.formats`), the input shape and dtype where the format stores them (ONNX,
TFLite, OpenVINO IR: the format's ``input_reader``) and so the layout. What it cannot tell and is
assumed: preprocessing (``face``: RGB scaled to [-1, 1]; ``imagenet``; ``cifar``; picked by input
size unless the user names a preset), the output kind, and for formats that do not store it
(``.ptl``, ``.pte``) the input shape (1x3x112x112 unless given). Each assumption is one sentence in
the returned list; bench prints them and stores them with the row.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fcbench.artifact import Manifest, Step, TensorSpec, sha256_file
from fcbench.data.preprocess import CIFAR, FACE, IMAGENET, Preprocessing
from fcbench.errors import FcbenchError, first_line, suggest
from fcbench.formats import CHECKPOINT, artifact_formats, by_suffix

PRESETS: dict[str, Preprocessing] = {"face": FACE, "imagenet": IMAGENET, "cifar": CIFAR}
DEFAULT_SHAPE = [1, 3, 112, 112]


def onnx_input(path: Path) -> tuple[list[int], str]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others
        raise FcbenchError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise FcbenchError(f"{path}: the ONNX graph has no inputs")
    t = inputs[0].type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name


def tflite_input(path: Path) -> tuple[list[int], str]:
    from ai_edge_litert.interpreter import Interpreter

    try:
        d = Interpreter(model_path=str(path)).get_input_details()[0]
    except (ValueError, RuntimeError) as exc:
        raise FcbenchError(f"{path}: not a loadable TFLite model ({first_line(exc)[:200]})") from exc
    return [int(s) for s in d["shape_signature"]], d["dtype"].__name__


def openvino_input(path: Path) -> tuple[list[int], str]:
    import openvino as ov

    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as exc:
        raise FcbenchError(f"{path}: not a readable OpenVINO IR ({first_line(exc)[:200]})") from exc
    inp = model.inputs[0]
    shape = [d.get_length() if d.is_static else -1 for d in inp.get_partial_shape()]
    return shape, inp.get_element_type().to_dtype().name


def infer_manifest(path: str | Path, preprocessing: str | None = None,
                   input_shape: list[int] | None = None) -> tuple[Manifest, list[str]]:
    """(manifest, assumptions) for an artifact without a manifest. Nothing is written."""
    path = Path(path)
    if not path.is_file():
        raise FcbenchError(f"{path}: no such file")
    form = by_suffix(path)
    if form is None or form.name == CHECKPOINT:
        raise FcbenchError(f"{path}: cannot tell the format from the suffix '{path.suffix}'; "
                           f"known: {', '.join(s for f in artifact_formats() for s in f.suffixes)}")
    fmt = form.name
    if not form.recognise(path):
        raise FcbenchError(f"{path}: the file is not {fmt} (its first bytes do not match the format)")
    if preprocessing is not None and preprocessing not in PRESETS:
        raise FcbenchError(f"unknown preprocessing preset '{preprocessing}'{suggest(preprocessing, PRESETS)}; "
                           f"presets: {', '.join(PRESETS)}")
    assumed: list[str] = []
    dtype = "float32"
    if input_shape:
        shape = list(input_shape)
    elif (declared := form.read_input(path)) is not None:
        shape, dtype = declared
    else:
        shape = list(DEFAULT_SHAPE)
        assumed.append(f"input shape {'x'.join(map(str, shape))} (a {fmt} file does not store it; "
                       "give --input-shape if it differs)")
    if len(shape) != 4:
        raise FcbenchError(f"{path}: input has shape {shape}; fcbench benches image models with one 4-d input")
    if shape[0] < 1:
        shape[0] = 1
        assumed.append("batch 1 for the dynamic batch dimension")
    layout = "NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    if min(h, w) < 1:
        raise FcbenchError(f"{path}: input height/width are dynamic ({shape}); give --input-shape")
    if preprocessing is None:
        preprocessing = "face" if (h, w) == (112, 112) else ("cifar" if (h, w) == (32, 32) else "imagenet")
        assumed.append(f"preprocessing '{preprocessing}' (picked by input size {h}x{w}; "
                       "--preprocessing face|imagenet|cifar to choose)")
    pre = replace(PRESETS[preprocessing], size=(h, w), layout=layout)
    output_kind = "embedding" if preprocessing == "face" else "logits"
    assumed.append(f"output kind '{output_kind}'")
    manifest = Manifest(
        format=fmt, file=path.name, sha256=sha256_file(path), size=path.stat().st_size,
        model={"name": path.stem, "options": {}}, inputs=[TensorSpec("input", shape, dtype, layout)],
        preprocessing=pre, output_kind=output_kind, output_size=0,
        lineage=[Step("import", technique=fmt, options={"inferred": True})],
        extra={"manifest_inferred": assumed},
    )
    if companions := form.present_companions(path):
        manifest.extra["companion_files"] = companions
    return manifest, assumed
