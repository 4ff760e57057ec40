"""The quantize verb: a float checkpoint or artifact -> a quantized artifact its runtime runs,
with its manifest, its lineage and its fidelity to the float parent.

A method is a technique plugin with ``verb = "quantize"`` (contract in
:mod:`fcbench.quantization.base`). :func:`quantize` checks the input (an fcbench checkpoint or a
float artifact with its manifest; never one already quantized), opens the calibration images
with the input's preprocessing, lets the method write its file into a staging folder, records a
``quantize(<method>)`` lineage step whose ``parent_file`` is the input (so ``eval --max-drop``
finds the float parent), runs the result in its backend on the fidelity images beside the float
parent in PyTorch (embedding or logit cosine, mean and 1st percentile: the figure that catches an
embedding collapsing under int8), and publishes file and manifest together.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcbench.errors import FcbenchError, first_line, suggest
from fcbench.quantization.base import Calibration, Quantized, QuantMethod, Source, Spec
from fcbench.threads import restores_torch_threads

if TYPE_CHECKING:
    from fcbench.artifact import Manifest
    from fcbench.options import QuantizeConfig
    from fcbench.results.context import RunContext

__all__ = ["Calibration", "QuantMethod", "QuantizeResult", "Quantized", "Source", "Spec", "get_method",
           "method_names", "quantize"]

FIDELITY_IMAGES = 64  # at most this many images for the cosine to the float parent
RANDOM_FIDELITY_IMAGES = 16


def method_names() -> list[str]:
    from fcbench.techniques import names

    return names("quantize")


def get_method(name: str) -> Any:
    """The quantization method ``name``, checked against the contract."""
    from fcbench.techniques import get_technique

    known = method_names()
    if name not in known:
        raise FcbenchError(f"quantize: unknown --method '{name}'{suggest(name, known)}; methods: {', '.join(known)}")
    method = get_technique(name)
    missing = [a for a in ("format", "backend", "quantize") if not getattr(method, a, None)]
    if missing:
        raise FcbenchError(f"quantization method '{name}' ({type(method).__name__}) lacks {', '.join(missing)}; "
                           "see fcbench.quantization.base")
    return method


@dataclass
class QuantizeResult:
    """What ``quantize`` made: the artifact, its manifest, sizes and the fidelity to the float parent."""

    input: Path
    output: Path
    method: str
    format: str
    backend: str
    options: dict[str, Any]
    model: str
    lineage: str
    sha256: str
    parent_sha256: str
    size_before: int  # bytes of the float model in the method's format (or the checkpoint's)
    size_after: int
    fidelity: dict[str, Any]
    calibration: dict[str, Any]
    seconds: float
    kept_float: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)  # --keep-sensitive: every layer's score
    notes: list[str] = field(default_factory=list)
    speed: dict[str, Any] = field(default_factory=dict)  # --bench: p50 of float and quantized, ratio, reasons
    manifest: Manifest | None = field(default=None, repr=False)
    ctx: RunContext | None = field(default=None, repr=False)

    def __fspath__(self) -> str:
        return str(self.output)

    @property
    def size_ratio(self) -> float:
        return self.size_after / max(self.size_before, 1)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("manifest", "ctx")}
        out["input"], out["output"] = str(self.input), str(self.output)
        out["size_ratio"] = self.size_ratio
        out["quantization"] = self.manifest.extra.get("quantization", {}) if self.manifest is not None else {}
        return out

    def to_rows(self, ctx: RunContext | None = None) -> list:
        """One ``compress`` row: the artifact's size in MB, with the fidelity, calibration and options
        in ``extra``."""
        from fcbench.results.context import RunContext

        ctx = ctx or self.ctx or RunContext()
        return [ctx.row(
            "compress", model=self.model, lineage=self.lineage, artifact=str(self.output),
            artifact_sha256=self.sha256, format=self.format, backend=self.backend, metric="size_mb",
            value=self.size_after / 1e6,
            extra={"technique": self.method, "verb": "quantize", "options": self.options,
                   "size_before_mb": self.size_before / 1e6, "parent_sha256": self.parent_sha256,
                   "input": str(self.input), "fidelity": self.fidelity, "calibration": self.calibration,
                   "kept_float": self.kept_float, "seconds": self.seconds,
                   **({"speed": self.speed} if self.speed else {})})]


def _open_input(path: Path) -> tuple[Manifest, Path | None]:
    """(manifest, checkpoint path or None) of the input; bad input raises one line."""
    from fcbench.artifact import load_manifest, manifest_path
    from fcbench.lineage import CHECKPOINT_FORMAT

    if not manifest_path(path).exists():
        raise FcbenchError(f"quantize: {path} has no manifest beside it ({manifest_path(path).name}); quantize "
                           "takes an fcbench checkpoint (train writes OUT/model.pt) or an artifact made by convert")
    manifest = load_manifest(path)  # verifies the sha256
    done = [s for s in manifest.lineage if s.verb == "quantize"]
    if done:
        raise FcbenchError(f"quantize: {path.name} is already quantized ({done[-1].verb}({done[-1].technique}) in its "
                           "lineage); quantize its float parent instead (fcbench inspect or its manifest's lineage "
                           "names it)")
    return manifest, (path if manifest.format == CHECKPOINT_FORMAT else None)


def _float_reference(path: Path, manifest: Manifest, checkpoint: Path | None) -> tuple[Path, str]:
    """The float model the result is compared with, and a note when it is not a checkpoint: the
    float checkpoint the input came from, else the float input artifact itself (a model that never
    had one, e.g. a .tflite converted from Keras), run in the method's backend."""
    from fcbench.lineage import float_parent

    if checkpoint is not None:
        return checkpoint, ""
    parent, why = float_parent(path, manifest)
    if parent is None:
        return path, (f"fidelity measured against the float input {path.name} in the same runtime (no float "
                      f"checkpoint in its lineage: {why})")
    return parent, ""


def load_calibration(spec: str, options: dict[str, Any], manifest: Manifest, size: int) -> tuple[Calibration, int]:
    """Up to ``size`` images of ``spec`` prepared with the manifest's preprocessing (evenly spaced
    over the set, so every class is represented), and how many the set holds."""
    from fcbench.data import open_dataset

    pre = replace(manifest.preprocessing, layout="NCHW")
    dataset = open_dataset(spec, preprocessing=pre, **options)
    total = len(dataset)
    if total == 0:
        raise FcbenchError(f"quantize: --calib-data {spec} holds no images")
    n = min(size, total)
    idx = np.unique(np.linspace(0, total - 1, n).round().astype(int))
    images, labels = [], []
    for i in idx:
        item = dataset[int(i)]
        x = item[0] if isinstance(item, (list, tuple)) else item
        images.append(np.asarray(x, dtype=np.float32))
        if isinstance(item, (list, tuple)) and len(item) > 1:
            labels.append(int(item[1]))
    arr = np.stack(images)
    spec_in = manifest.inputs[0]
    want = list(spec_in.shape[1:]) if spec_in.layout == "NCHW" else [spec_in.shape[3], *spec_in.shape[1:3]]
    got = list(arr.shape[1:])
    if any(w > 0 and w != g for w, g in zip(want, got, strict=True)):
        raise FcbenchError(
            f"quantize: --calib-data {spec} gives images of {'x'.join(map(str, got))} (CxHxW) but the model takes "
            f"{'x'.join(map(str, want))}; its preprocessing resizes to "
            f"{'x'.join(map(str, manifest.preprocessing.size))}: use calibration data of the model's input size")
    return Calibration(arr, str(getattr(dataset, "source", spec)), np.asarray(labels) if labels else None), total


def _random_images(manifest: Manifest, n: int, seed: int) -> Calibration:
    from fcbench.benchmark.run import prepared_input

    xs = [prepared_input(replace(manifest, inputs=[replace(manifest.inputs[0], layout="NCHW",
                                                           shape=_nchw(manifest.inputs[0]))]), 1, seed + i)[0]
          for i in range(n)]
    return Calibration(np.stack(xs).astype(np.float32), f"{n} synthetic gradient images (no --calib-data)")


def _nchw(spec) -> list[int]:
    return list(spec.shape) if spec.layout == "NCHW" else [spec.shape[0], spec.shape[3], spec.shape[1], spec.shape[2]]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-12)


_REFERENCE: dict[tuple, np.ndarray] = {}  # the last float reference's outputs: --keep-sensitive asks per layer


def _reference_outputs(reference_ckpt: Path, images: Calibration, backend: str, threads: int | None) -> np.ndarray:
    """The float reference's outputs on ``images`` (PyTorch for a checkpoint, ``backend`` for a float artifact),
    kept for the next call with the same file, images, backend and threads."""
    import hashlib

    import torch

    from fcbench.artifact import read_manifest
    from fcbench.evaluation import _RuntimeModel
    from fcbench.lineage import CHECKPOINT_FORMAT
    from fcbench.training.checkpoint import load_checkpoint

    st = reference_ckpt.stat()
    key = (str(reference_ckpt.resolve()), st.st_mtime_ns, st.st_size, backend, threads,
           hashlib.sha256(np.ascontiguousarray(images.images).tobytes()).hexdigest())
    if key in _REFERENCE:
        return _REFERENCE[key]
    x = torch.from_numpy(images.images)
    ref_manifest = read_manifest(reference_ckpt)
    if ref_manifest.format != CHECKPOINT_FORMAT:
        floating = _RuntimeModel(reference_ckpt, ref_manifest, backend, threads)
        try:
            ref = floating(x)
        finally:
            floating.close()
    else:
        model = load_checkpoint(reference_ckpt).build_model().eval()
        with torch.inference_mode():
            ref = torch.cat([model(x[i:i + 16]) for i in range(0, len(x), 16)]).float().numpy()
    _REFERENCE.clear()
    _REFERENCE[key] = ref
    return ref


def fidelity(artifact: Path, manifest: Manifest, reference_ckpt: Path, images: Calibration, backend: str,
             threads: int | None) -> dict[str, Any]:
    """The quantized artifact in ``backend`` beside the float checkpoint in PyTorch on ``images``:
    per-image cosine of the outputs (mean, 1st percentile, min), max abs difference and, for
    classifiers, how often the top class agrees. A float artifact as ``reference_ckpt`` (one with
    no checkpoint behind it) runs in ``backend`` too. The reference's outputs are computed once for a
    run of calls on the same images (``--keep-sensitive`` scores one layer per call)."""
    import torch

    from fcbench.evaluation import _RuntimeModel

    x = torch.from_numpy(images.images)
    ref = _reference_outputs(reference_ckpt, images, backend, threads)
    runtime = _RuntimeModel(artifact, manifest, backend, threads)
    try:
        out = runtime(x)
    finally:
        runtime.close()
    cos = cosine_rows(ref, out)
    result = {"images": len(cos), "on": images.source, "backend": runtime.label,
              "cosine_mean": float(cos.mean()), "cosine_p1": float(np.percentile(cos, 1)),
              "cosine_min": float(cos.min()), "max_abs_diff": float(np.abs(ref.reshape(out.shape) - out).max())}
    if manifest.output_kind == "logits":
        result["top1_agreement"] = float((ref.reshape(out.shape).argmax(1) == out.argmax(1)).mean())
    return result


@restores_torch_threads
def quantize(cfg: QuantizeConfig, ctx: RunContext | None = None, hooks: Any = None) -> QuantizeResult:
    """Quantize ``cfg.input`` with ``cfg.method``; see the module doc. Bad input raises one line (exit 2)
    before anything is written; a method that fails raises one line (exit 1) and leaves nothing behind."""
    from fcbench import formats
    from fcbench.artifact import Step, publish, sha256_file, staging
    from fcbench.hooks import or_default
    from fcbench.lineage import relative_path
    from fcbench.paths import input_file, output_file
    from fcbench.results.context import RunContext
    from fcbench.techniques import parse_options
    from fcbench.techniques.base import TechniqueContext, options_dict

    hooks = or_default(hooks)
    cfg.validate()
    method = get_method(cfg.method)
    ok, why = method.available() if callable(getattr(method, "available", None)) else (True, "")
    if not ok:
        raise FcbenchError(f"quantize: --method {cfg.method} is not available here: {why}")
    opts = parse_options(method, cfg.options)
    src = input_file(cfg.input, "input", verb="quantize", suffixes=(".pt", ".onnx", ".xml", ".tflite"),
                     hint="give an fcbench checkpoint or an artifact made by convert")
    manifest, checkpoint = _open_input(src)
    if method.source == "checkpoint" and checkpoint is None:
        raise FcbenchError(f"quantize: --method {cfg.method} quantizes an fcbench checkpoint (.pt), and {src.name} is "
                           f"a {manifest.format} artifact; give the checkpoint it was converted from")
    if method.source not in ("checkpoint", manifest.format) and checkpoint is None:
        raise FcbenchError(f"quantize: --method {cfg.method} quantizes {method.source} models, and {src.name} is "
                           f"{manifest.format}; give the fcbench checkpoint or a {method.source} file")
    form = formats.get(method.format)
    out = Path(cfg.out) if cfg.out else src.with_name(f"{src.stem}-{cfg.method}{form.suffix}")
    if not form.matches(out):
        raise FcbenchError(f"quantize: --out {out} must end in {form.suffix} ({cfg.method} writes {method.format})")
    if out.resolve() == src.resolve():
        raise FcbenchError(f"quantize: --out {out} is the input; pass another --out (the input is the result's "
                           "parent and must stay as it is)")
    output_file(out, "quantize: --out")
    if (cfg.keep_float or cfg.keep_sensitive) and not method.keeps_float:
        keepers = [n for n in method_names() if getattr(get_method(n), "keeps_float", False)]
        raise FcbenchError(f"quantize: --method {cfg.method} cannot leave layers in float (--keep-float, "
                           f"--keep-sensitive); methods that can: {', '.join(keepers) or 'none installed'}")
    if cfg.per_channel is not None and method.per_channel_default is None:
        raise FcbenchError(f"quantize: --method {cfg.method} has no per-channel choice; drop --per-channel")
    for label in filter(None, (cfg.backend, cfg.bench)):
        _check_backend(label, method, cfg.method)
    reference, reference_note = _float_reference(src, manifest, checkpoint)
    # calibration: checked before any work
    calib: Calibration | None = None
    available = 0
    if method.calibration == "required" and not cfg.calib_data:
        raise FcbenchError(f"quantize: --method {cfg.method} calibrates activation ranges and needs images: pass "
                           f"--calib-data (a dataset of the model's input, at least {method.min_calibration} images)")
    if cfg.calib_data and method.calibration != "none":
        calib, available = load_calibration(cfg.calib_data, cfg.calib_options, manifest, cfg.calib_size)
        if len(calib) < method.min_calibration:
            raise FcbenchError(f"quantize: --calib-data {cfg.calib_data} gives {len(calib)} images (it holds "
                               f"{available}, --calib-size {cfg.calib_size}); {cfg.method} needs at least "
                               f"{method.min_calibration}")
    elif cfg.calib_data:
        raise FcbenchError(f"quantize: --method {cfg.method} takes no calibration data; drop --calib-data")
    images = calib if calib is not None else _random_images(manifest, RANDOM_FIDELITY_IMAGES, cfg.seed)
    if calib is not None and len(calib) > FIDELITY_IMAGES:
        images = Calibration(calib.images[:: max(1, len(calib) // FIDELITY_IMAGES)][:FIDELITY_IMAGES], calib.source)
    context = TechniqueContext(threads=cfg.threads, seed=cfg.seed, progress=lambda msg, frac: hooks.log(msg))
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    parent_sha = sha256_file(src)
    notes: list[str] = [reference_note] if reference_note else []
    t0 = time.perf_counter()
    with staging(out.parent) as stage:
        source = Source(src, manifest, stage, checkpoint)
        spec = Spec(per_channel=cfg.per_channel if cfg.per_channel is not None else method.per_channel_default,
                    keep_float=list(cfg.keep_float), calibration=calib, max_drop=cfg.max_drop,
                    eval_data=cfg.eval_data, eval_options=dict(cfg.eval_options))
        sensitivity: list[dict[str, Any]] = []
        if cfg.keep_sensitive:
            from fcbench.quantization.sensitivity import most_sensitive

            sensitivity = most_sensitive(method, source, opts, spec, images, reference, context, cfg, hooks)
            chosen = [s["layer"] for s in sensitivity[: cfg.keep_sensitive]]
            spec.keep_float = list(dict.fromkeys([*spec.keep_float, *chosen]))
        target = stage / out.name
        try:
            made: Quantized = method.quantize(source, opts, spec, target, context)
        except FcbenchError:
            raise
        except Exception as exc:  # the method's (or its library's) own failure: one line, exit 1
            raise FcbenchError(f"quantize: {cfg.method} failed on {src.name}: {type(exc).__name__}: "
                               f"{first_line(exc)[:300]}", exit_code=1) from exc
        file = made.file
        if not file.is_file():
            raise FcbenchError(f"quantize: {cfg.method} wrote no file at {file}", exit_code=1)
        float_file = source.converted(method.format)
        size_before = _size(float_file, form) if float_file else src.stat().st_size
        step_options = {**options_dict(opts), **made.options, "keep_float": spec.keep_float,
                        **({"calibration": {"data": cfg.calib_data, "images": len(calib), "source": calib.source}}
                           if calib is not None else {}),
                        "parent_file": relative_path(src, out.parent)}
        new = artifact_manifest(manifest, made, method.format, lineage=[
            *manifest.lineage, Step("quantize", technique=cfg.method, options=step_options, parent_sha256=parent_sha)])
        new.extra["quantization"] = {"method": cfg.method, **made.extra}
        try:
            fid = fidelity(file, new, reference, images, cfg.backend or method.backend, cfg.threads)
        except FcbenchError as exc:
            raise FcbenchError(f"quantize: {cfg.method} wrote {out.name}, but it does not run in "
                               f"{cfg.backend or method.backend}: {exc}", exit_code=1) from exc
        new.extra["fidelity"] = fid
        if calib is None:
            notes.append("fidelity measured on synthetic images: pass --calib-data for figures on real ones")
        speed: dict[str, Any] = {}
        if cfg.bench:
            speed = bench_pair(source, method.format, file, new, cfg)
            new.extra["speed"] = speed
            notes += [f"not faster: {r}" for r in speed.get("why_not_faster", [])]
        published = publish(file, new, out.parent)
    seconds = time.perf_counter() - t0
    result = QuantizeResult(
        input=src, output=published, method=cfg.method, format=method.format, backend=cfg.backend or method.backend,
        options=step_options, model=str(manifest.model.get("name", "")), lineage=new.lineage_summary(),
        sha256=new.sha256, parent_sha256=parent_sha, size_before=size_before, size_after=new.size,
        fidelity=fid, calibration={"data": cfg.calib_data, "images": len(calib), "available": available,
                                   "source": calib.source} if calib is not None else {},
        seconds=seconds, kept_float=spec.keep_float, sensitivity=sensitivity, notes=notes, speed=speed, manifest=new,
        ctx=ctx or RunContext())
    hooks.rows(result.to_rows())
    return result


def artifact_manifest(manifest: Manifest, made: Quantized, fmt: str, lineage: list | None = None) -> Manifest:
    """The manifest of the file a method made from the input whose manifest is ``manifest``."""
    from fcbench import formats
    from fcbench.artifact import TensorSpec, file_sha256

    file = made.file
    companions = formats.get(fmt).present_companions(file)
    shape = _nchw(manifest.inputs[0])
    if made.input_layout == "NHWC":
        shape = [shape[0], shape[2], shape[3], shape[1]]
    return replace(
        manifest, format=fmt, file=file.name, sha256=file_sha256(file, cache=False),
        size=file.stat().st_size + sum((file.parent / c).stat().st_size for c in companions),
        inputs=[TensorSpec(name="input", shape=shape, dtype="float32", layout=made.input_layout)],
        lineage=list(manifest.lineage if lineage is None else lineage),
        extra={**{k: v for k, v in manifest.extra.items() if k not in ("parity", "companion_files", "companion_sha256",
                                                                       "quantization", "fidelity")},
               "companion_files": companions,
               "companion_sha256": {c: file_sha256(file.parent / c, cache=False) for c in companions}},
    )


def bench_pair(source: Source, fmt: str, file: Path, manifest: Manifest, cfg: QuantizeConfig) -> dict[str, Any]:
    """``quantize --bench``: the float model in the method's format and the quantized one (both still in
    the staging folder) timed one after the other by fcbench's bench on ``cfg.bench``; when the quantized
    one is not faster, the reasons :func:`fcbench.quantization.why.explain` can read."""
    from fcbench.artifact import Step, write_manifest
    from fcbench.backends import expand
    from fcbench.benchmark.run import bench
    from fcbench.options import BenchConfig
    from fcbench.quantization.why import why_not_faster

    float_file = source.converted(fmt) or source.float_artifact(fmt)
    if float_file != source.path:  # converted for the method: give it a manifest so bench can load it
        made = Quantized(float_file, input_layout=source.layouts.get(fmt, "NCHW"))
        write_manifest(artifact_manifest(source.manifest, made, fmt, lineage=[
            *source.manifest.lineage, Step("convert", technique=fmt, parent_sha256=source.manifest.sha256)]),
            float_file)
    write_manifest(manifest, file)
    (spec,) = expand([cfg.bench])
    threads = cfg.threads or os.cpu_count() or 1  # as bench: all cores unless --threads
    result = bench(BenchConfig(artifacts=[str(float_file), str(file)], backends=[cfg.bench], threads=threads,
                               warmup=10, runs=20, min_seconds=cfg.bench_seconds))
    cells = list(result)
    bad = [c for c in cells if c.status != "ok" or c.stats is None]
    if bad:
        raise FcbenchError(f"quantize --bench: {Path(bad[0].artifact).name} on {bad[0].backend}: "
                           f"{bad[0].status}: {bad[0].reason}", exit_code=1)
    parent_ms, ms = cells[0].stats.p50_ms, cells[1].stats.p50_ms
    why = why_not_faster(file, float_file, cfg.bench, ms, parent_ms, threads)
    return {"backend": spec.label, "threads": threads, "float_p50_ms": parent_ms, "p50_ms": ms,
            "speedup": parent_ms / ms if ms else None, "why_not_faster": why}


def _check_backend(label: str, method: Any, name: str) -> None:
    """``label`` (--backend or --bench) must load what ``method`` writes; else name the methods it can run."""
    from fcbench.backends import expand, get_backend

    (spec,) = expand([label])
    formats = get_backend(spec.plugin).formats
    if method.format not in formats:
        runs = [n for n in method_names() if getattr(get_method(n), "format", "") in formats]
        raise FcbenchError(f"quantize: {spec.label} cannot run what {name} writes ({method.format}); methods whose "
                           f"output it runs: {', '.join(runs) or 'none installed'}")


def _size(file: Path, form) -> int:
    return file.stat().st_size + sum((file.parent / c).stat().st_size for c in form.present_companions(file))
