"""The convert verb: one checkpoint -> one artifact per format, each with its manifest and
a numerical parity check against PyTorch on the same prepared input.

What a format is (its suffix, companion files, exporter, the backend and thresholds of its parity
check) comes from the format registry, :mod:`fcbench.formats`; an exporter is imported only when
its format is converted to, so a missing converter disables its format only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fcbench import formats as format_registry
from fcbench.artifact import (
    Manifest,
    Step,
    TensorSpec,
    file_sha256,
    manifest_path,
    publish,
    sha256_file,
    staging,
    verify,
)
from fcbench.conversion.base import Exporter, ExportResult
from fcbench.errors import FcbenchError, suggest
from fcbench.formats import PARITY_MAX_REL_DIFF, PARITY_MIN_COSINE, Format


def __getattr__(name: str) -> Any:
    if name == "EXPORTERS":  # format -> "module:Class", derived from the registry (convert's own order)
        return {f.name: f.exporter for f in format_registry.exportable()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class ConvertOutcome:
    format: str
    status: str  # ok | parity-failed | failed | skipped
    file: Path | None = None
    reason: str = ""
    parity: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None


def _exportable(fmt: str) -> Format:
    """The registered format ``fmt``, which convert must be able to make."""
    made = format_registry.exportable()
    if fmt not in [f.name for f in made]:
        if fmt in format_registry.names():
            format_registry.get(fmt).exporter_class()  # raises: not made by convert (or a broken plugin)
        choices = [f.name for f in made]
        raise FcbenchError(f"unknown format '{fmt}'{suggest(fmt, choices)}; formats: {', '.join(choices)}")
    return format_registry.get(fmt)


def exporter_class(fmt: str) -> type[Exporter]:
    return _exportable(fmt).exporter_class()


def parse_formats(text: str | list[str]) -> list[str]:
    items = text if isinstance(text, list) else [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise FcbenchError("convert: --to names no format, so there is nothing to do; pass one or more of "
                           f"{', '.join(f.name for f in format_registry.exportable())} (comma-separated), or all")
    if items == ["all"]:
        return [f.name for f in format_registry.exportable()]
    for f in items:
        _exportable(f)  # raises with the closest format named
    return items


def parity(reference: np.ndarray, output: np.ndarray, min_cosine: float = PARITY_MIN_COSINE,
           max_rel_diff: float = PARITY_MAX_REL_DIFF) -> dict[str, Any]:
    """Max abs difference and cosine of two outputs, and whether they pass."""
    ref = np.asarray(reference, np.float64).ravel()
    out = np.asarray(output, np.float64).ravel()
    if ref.shape != out.shape:
        return {"ok": False, "reason": f"output shape {list(np.shape(output))} != PyTorch {list(np.shape(reference))}"}
    diff = float(np.max(np.abs(ref - out)))
    cos = float(ref @ out / (np.linalg.norm(ref) * np.linalg.norm(out) + 1e-30))
    scale = float(np.max(np.abs(ref))) or 1.0
    ok = cos >= min_cosine and diff <= max_rel_diff * scale
    return {"ok": ok, "max_abs_diff": diff, "cosine": cos, "reference_max_abs": scale,
            "min_cosine": min_cosine, "max_rel_diff": max_rel_diff}


def _parity_check(file: Path, manifest: Manifest, fmt: Format, reference: np.ndarray,
                  x_nchw: np.ndarray) -> dict[str, Any]:
    from fcbench.backends import get_backend

    plugin, _, variant = fmt.default_backend(manifest).partition(":")
    if not plugin:
        return {"ok": None, "reason": f"parity not checked: format {fmt.name} names no backend to run it"}
    backend = get_backend(plugin)
    ok, reason = backend.available()
    if not ok:
        return {"ok": None, "reason": f"parity not checked: {reason}"}
    verify(file, manifest, cache=False)  # the parity check runs the very files the manifest vouches for
    x = x_nchw if manifest.inputs[0].layout == "NCHW" else x_nchw.transpose(0, 2, 3, 1).copy()
    variant = variant or backend.default_variant
    session = backend.load(file, manifest, variant, None, dict(fmt.parity_options))
    try:
        out = session.run(x)
    finally:
        session.close()
    result = parity(reference, out, fmt.parity_min_cosine, fmt.parity_max_rel_diff)
    result["backend"] = f"{backend.name}:{variant}"
    return result


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` where possible (artifacts and checkpoint move together), else absolute."""
    import os

    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive
        return str(Path(path).resolve())


def convert(
    checkpoint: str | Path, formats: list[str], out_dir: str | Path | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    on_outcome: Callable[[ConvertOutcome], None] | None = None,
    split_at: int | None = None,
) -> list[ConvertOutcome]:
    """Export ``checkpoint`` to each format; every outcome is reported, none aborts the rest. With
    ``split_at`` (a detector, for motion gating) each format gets two artifacts instead, the front and the
    back of the model cut at that backbone layer (:func:`convert_split`)."""
    import torch

    from fcbench.benchmark.run import prepared_input
    from fcbench.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt.manifest is None:
        raise FcbenchError(f"{checkpoint}: no manifest beside it; convert needs an fcbench checkpoint with one")
    if split_at is not None:
        return convert_split(checkpoint, ckpt, formats, split_at, out_dir, options, on_outcome)
    stem = Path(checkpoint).stem
    out = prepare_out(out_dir, Path(checkpoint).parent, [stem + _exportable(f).suffix for f in formats])
    model = ckpt.build_model()
    x = prepared_input(ckpt.manifest, batch=1)
    example = torch.from_numpy(x)
    with torch.inference_mode():
        reference = model(example).float().numpy()
    outcomes = []
    for fmt in formats:
        opts = (options or {}).get(fmt, {})
        outcome = _convert_one(fmt, model, example, reference, x, ckpt.manifest, out / stem, opts,
                               parent_file=Path(checkpoint))
        outcomes.append(outcome)
        if on_outcome:
            on_outcome(outcome)
    return outcomes


SPLIT_PARTS = ("front", "back")


def split_names(stem: str, suffix: str) -> dict[str, str]:
    """The file names of a split pair: ``model.front.onnx`` and ``model.back.onnx``."""
    return {part: f"{stem}.{part}{suffix}" for part in SPLIT_PARTS}


def convert_split(checkpoint: str | Path, ckpt: Any, formats: list[str], split_at: int,
                  out_dir: str | Path | None = None, options: dict[str, dict[str, Any]] | None = None,
                  on_outcome: Callable[[ConvertOutcome], None] | None = None) -> list[ConvertOutcome]:
    """A detector cut at backbone layer ``split_at`` into two artifacts per format, each with its manifest and
    its own parity check: ``MODEL.front.FMT`` (image -> layer ``split_at``'s feature map) and ``MODEL.back.FMT``
    (feature map -> the raw detector output). Two files, not one graph with two outputs, because motion
    gating's saving is *not running* the back: a runtime runs a whole graph. Each manifest's ``extra.split``
    says which half it is, the layer, the other half's file name, the feature map's shape and the checkpoint's
    sha256 (so ``eval --video`` can check that a pair fits). The outcomes come front, back per format."""
    import torch

    from fcbench.benchmark.run import prepared_input

    model = ckpt.build_model()
    name = ckpt.manifest.model.get("name", "the model")
    if not callable(getattr(model, "split_at", None)):
        raise FcbenchError(f"convert --split-at cuts a detector in two for motion gating; '{name}' has no split "
                           "(ssd-mobilenetv2 has): drop --split-at")
    if isinstance(split_at, bool) or not isinstance(split_at, int):
        raise FcbenchError(f"convert --split-at must be a backbone layer index, got {split_at!r}")
    front, back = model.split_at(split_at)  # a layer it has not: one line naming the valid range
    front.eval()
    back.eval()
    stem = Path(checkpoint).stem
    names = {f: split_names(stem, _exportable(f).suffix) for f in formats}
    out = prepare_out(out_dir, Path(checkpoint).parent, [n for pair in names.values() for n in pair.values()])
    x = prepared_input(ckpt.manifest, batch=1)
    example = torch.from_numpy(x)
    with torch.inference_mode():
        feature = front(example).float()
        reference_back = back(feature).float().numpy()
    feature_np = feature.numpy()
    shape = [int(d) for d in feature_np.shape]
    outcomes = []
    for fmt in formats:
        opts = (options or {}).get(fmt, {})
        pair = names[fmt]
        for part, module, ex, ref, arr in (("front", front, example, feature_np, x),
                                           ("back", back, torch.from_numpy(feature_np.copy()), reference_back,
                                            feature_np)):
            other = pair["back" if part == "front" else "front"]
            split = {"part": part, "layer": int(split_at), "pair": other, "feature_shape": shape,
                     "source_sha256": ckpt.manifest.sha256}
            parent = replace(ckpt.manifest, extra={**ckpt.manifest.extra, "split": split})
            if part == "back":
                parent = replace(parent, inputs=[TensorSpec(name="input", shape=shape, dtype="float32",
                                                            layout="NCHW")])
            outcome = _convert_one(fmt, module, ex, ref, arr, parent, out / f"{stem}.{part}", opts,
                                   parent_file=Path(checkpoint))
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    return outcomes


def prepare_out(out_dir: str | Path | None, default: Path, names: list[str]) -> Path:
    """The output folder (``--out``, else ``default``), created if missing and proven writable, with
    none of the files convert will write there (``names``, their companions and manifests) being a
    folder or other non-file. Raises FcbenchError (one line, exit 2) before anything is converted."""
    out = Path(out_dir) if out_dir else default
    flag = "--out " if out_dir else ""
    if out.exists() and not out.is_dir():
        raise FcbenchError(f"convert: {flag}{out} is a file, not a folder; name a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FcbenchError(f"{flag}{out}: cannot create the folder ({exc.strerror or type(exc).__name__}); "
                           "name a folder you can write to") from exc
    for name in names:
        form = format_registry.by_suffix(name)
        target = out / name
        for path in (target, *(out / c for c in (form.companions(target) if form else [])), manifest_path(target)):
            if path.exists() and not path.is_file():
                raise FcbenchError(f"{path}: is a folder (or not a regular file), and convert writes a file "
                                   "there; remove it or pick another --out")
    with staging(out):  # raises, naming the folder, when nothing can be written there
        pass
    return out


def _convert_one(fmt: str, model, example, reference: np.ndarray, x: np.ndarray, parent: Manifest, stem: Path,
                 opts: dict[str, Any], parent_file: Path | None = None) -> ConvertOutcome:
    """Export into a staging folder beside the target, check parity there, then :func:`publish`: a
    conversion that fails at any step leaves the folder as it was (no half-written file, no .tmp)."""
    form = _exportable(fmt)
    cls = form.exporter_class()
    ok, reason = cls.available()
    if not ok:
        return ConvertOutcome(fmt, "skipped", reason=reason)
    target = stem.with_name(stem.name + form.suffix)
    with staging(target.parent) as stage:
        try:
            result: ExportResult = cls().export(model, example, stage / target.name, dict(opts))
        except FcbenchError as exc:
            if exc.exit_code == 2:  # a bad option is the user's to fix, not a conversion failure
                raise
            return ConvertOutcome(fmt, "failed", reason=str(exc) + _explain_failure(fmt, model, example))
        file = result.file
        companions = form.present_companions(file)
        shape = list(parent.inputs[0].shape)
        if result.input_layout != parent.inputs[0].layout:
            shape = [shape[0], shape[2], shape[3], shape[1]] if result.input_layout == "NHWC" else shape
        manifest = replace(
            parent, format=fmt, file=file.name, sha256=file_sha256(file, cache=False),
            size=file.stat().st_size + sum((file.parent / c).stat().st_size for c in companions),
            inputs=[TensorSpec(name="input", shape=shape, dtype="float32", layout=result.input_layout)],
            lineage=[*parent.lineage, Step("convert", technique=fmt, options={
                **result.options, **({"parent_file": _relative(parent_file, target.parent)} if parent_file else {})},
                parent_sha256=parent.sha256)],
            extra={**parent.extra, **result.extra, "companion_files": companions,
                   "companion_sha256": {c: file_sha256(file.parent / c, cache=False) for c in companions}},
        )
        try:
            check = _parity_check(file, manifest, form, reference, x)
        except FcbenchError as exc:
            check = {"ok": False, "reason": f"artifact does not run in {form.default_backend(manifest)}: {exc}"}
        manifest.extra["parity"] = check
        file = publish(file, manifest, target.parent)
    status = "ok" if check.get("ok") in (True, None) else "parity-failed"
    return ConvertOutcome(fmt, status, file=file, reason=check.get("reason", ""), parity=check, manifest=manifest)



KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_keras_source(path: str | Path) -> bool:
    """A Keras file or a SavedModel folder (the TFLiteConverter path), not a PyTorch checkpoint."""
    p = Path(path)
    return p.suffix.lower() in KERAS_SUFFIXES or (p.is_dir() and (p / "saved_model.pb").exists())


def _keras_reference(source: Path, x_nhwc: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    if source.is_dir():
        fn = tf.saved_model.load(str(source)).signatures["serving_default"]
        out = fn(tf.constant(x_nhwc))
        return np.asarray(next(iter(out.values())))
    import keras

    return np.asarray(keras.models.load_model(str(source), compile=False)(x_nhwc, training=False))


def convert_keras_source(
    source: str | Path, formats: list[str], out_dir: str | Path | None = None,
    options: dict[str, dict[str, Any]] | None = None, preprocessing: str | None = None,
) -> tuple[ConvertOutcome, list[str]]:
    """Keras/SavedModel -> .tflite through tf.lite.TFLiteConverter (the only format this path makes).

    The manifest is inferred from the .tflite (input shape, NHWC) and the assumptions are
    returned; parity is checked against the Keras model on the same prepared input and enforced
    (the default ``tflite.optimize=none`` keeps the model float). With an optimize mode asked for
    explicitly, which quantizes weights, the figures are recorded and shown but not enforced.
    """
    source = Path(source)
    if formats != ["tflite"]:
        raise FcbenchError(f"{source}: a Keras model converts to tflite only (--to tflite), not {', '.join(formats)}")
    opts = dict((options or {}).get("tflite", {}))
    unknown = set(opts) - {"optimize", "allow_select_tf_ops"}
    if unknown:
        raise FcbenchError(f"--opt tflite.{sorted(unknown)[0]}: Keras conversion takes tflite.optimize "
                           "(latency, size, default, none) and tflite.allow_select_tf_ops")
    name = (source.stem if source.is_file() else source.name) + format_registry.get("tflite").suffix
    out = prepare_out(out_dir, source.parent, [name])
    with staging(out) as stage:
        return _convert_keras_staged(source, stage / name, out, opts, preprocessing)


def _convert_keras_staged(source: Path, target: Path, out: Path, opts: dict[str, Any],
                          preprocessing: str | None) -> tuple[ConvertOutcome, list[str]]:
    from fcbench.conversion.tflite import convert_keras
    from fcbench.infer import infer_manifest

    optimize = str(opts.get("optimize", "none"))  # faithful by default; lossy modes only when asked
    try:
        result = convert_keras(source, target, optimize, allow_select_tf_ops=bool(opts.get("allow_select_tf_ops")))
    except FcbenchError as exc:
        if exc.exit_code == 2:  # bad input: not a Keras model, unknown mode, missing file
            raise
        return ConvertOutcome("tflite", "failed", reason=str(exc)), []
    manifest, assumed = infer_manifest(result.file, preprocessing)
    manifest = replace(
        manifest, model={"name": source.stem if source.is_file() else source.name, "options": {}},
        lineage=[Step("convert", technique="tflite", options=result.options, parent_sha256=(
            sha256_file(source) if source.is_file() else ""))],
        extra={**manifest.extra, **result.extra, "companion_files": [], "companion_sha256": {}},
    )
    from fcbench.lineage import relative_path

    manifest.lineage[0].options["parent_file"] = relative_path(source, out)  # as every step records it
    from fcbench.benchmark.run import prepared_input

    x = prepared_input(manifest, batch=1)
    check: dict[str, Any]
    try:
        reference = _keras_reference(source, x)
        check = _parity_check(result.file, manifest, format_registry.get("tflite"), reference,
                              x.transpose(0, 3, 1, 2) if manifest.inputs[0].layout == "NHWC" else x)
    except FcbenchError as exc:
        check = {"ok": False, "reason": f"artifact does not run in tflite: {exc}"}
    except Exception as exc:  # the Keras model itself failed to run: report, do not hide
        check = {"ok": None, "reason": f"parity not checked: the Keras model did not run ({type(exc).__name__})"}
    if optimize != "none" and check.get("ok") is False and "max_abs_diff" in check:
        check["ok"] = None
        check["reason"] = (f"optimize={optimize} quantizes weights (dynamic range): parity shown, not enforced "
                           f"(cosine {check['cosine']:.4f}); the faithful route: convert with the default "
                           "(none), then fcbench quantize X.tflite --method tflite-dynamic")
    manifest.extra["parity"] = check
    file = publish(result.file, manifest, out)
    status = "ok" if check.get("ok") in (True, None) else "parity-failed"
    return ConvertOutcome("tflite", status, file=file, reason=check.get("reason", ""), parity=check,
                          manifest=manifest), assumed


def check_checkpoint(checkpoint: str | Path, formats: list[str]):
    """``convert --check``: build the checkpoint's model and preflight every format; writes nothing."""
    import torch

    from fcbench.benchmark.run import prepared_input
    from fcbench.conversion.preflight import preflight
    from fcbench.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if ckpt.manifest is None:
        raise FcbenchError(f"{checkpoint}: no manifest beside it; convert needs an fcbench checkpoint with one")
    model = ckpt.build_model()
    return preflight(model, torch.from_numpy(prepared_input(ckpt.manifest, batch=1)), formats)


def _explain_failure(fmt: str, model, example) -> str:
    """For a failed conversion: every op the format will not take, as the preflight finds them."""
    from fcbench.conversion.preflight import preflight

    try:
        (check,) = preflight(model, example, [fmt])
    except FcbenchError:
        return ""
    if not check.blockers:
        return ""
    return "; ops it will not take: " + ", ".join(f"{b.op} ({b.module})" for b in check.blockers)
