"""The eval verb: quality of a checkpoint on a dataset, stored as rows as they are computed.

Protocols: ``verification`` (pair sets: insightface 10-fold accuracy, EER, TAR@FAR, ROC AUC),
``classification`` (top-1/top-5), ``identification`` (closed-set rank-1/rank-5 with the
first image of each class as gallery) and ``detection`` (images with boxes: mAP@0.5, mAP@[.5:.95],
precision and recall at IoU 0.5, AP per class; the raw output of the model or of any runtime is
decoded and NMS'd in numpy, :mod:`fcbench.detection.postprocess`). ``auto`` picks from the data and
the model's task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from fcbench import formats
from fcbench.artifact import Manifest, task_of
from fcbench.errors import FcbenchError, NotApplicable, distinct_reasons
from fcbench.formats import is_artifact
from fcbench.hooks import Hooks, or_default
from fcbench.lineage import float_parent
from fcbench.options import EvalConfig
from fcbench.results.context import RunContext
from fcbench.results.store import Row, options_hash
from fcbench.threads import restores_torch_threads

PROTOCOLS = ("auto", "verification", "classification", "identification", "detection")


def __getattr__(name: str) -> Any:
    """``DEFAULT_BACKEND`` (format -> the runtime an artifact is evaluated with when --backend is not
    given) and ``ARTIFACT_SUFFIXES``, derived from the format registry (fcbench.formats)."""
    if name == "DEFAULT_BACKEND":
        return {f.name: f.default_backend() for f in formats.formats() if f.backend}
    if name == "ARTIFACT_SUFFIXES":
        return tuple(s for f in formats.artifact_formats() for s in f.suffixes)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class EvalReport:
    checkpoint: str
    model: str
    dataset: str
    protocol: str
    metrics: list[tuple[str, float]]
    lineage: str = ""
    details: Any = None  # the metrics result object (ROC arrays etc.)
    backend: str = "pytorch:eager"
    reference: dict[str, float] = field(default_factory=dict)  # PyTorch figures of the float parent
    notes: list[str] = field(default_factory=list)
    trust: dict[str, str] = field(default_factory=dict)  # placement / precision summaries of a runtime eval
    flip: bool = False  # embeddings fused with their mirror image's (the flip test)
    rows: list[Row] = field(default_factory=list)  # one quality row per metric (and the float parent's, when
    # this evaluation ran it)

    def to_rows(self) -> list[Row]:
        return list(self.rows)


def load_for_eval(cfg: EvalConfig) -> tuple[torch.nn.Module, Manifest | None]:
    from fcbench.training.checkpoint import load_checkpoint

    path = Path(cfg.checkpoint)
    if cfg.model:
        from fcbench.models import create
        from fcbench.paths import input_file

        input_file(path, "weights file", verb="eval", hint="--model takes a torch.save state dict (.pt/.pth)")
        model = create(cfg.model, weights=str(path), **cfg.model_options)
        model.eval()
        return model, None
    ckpt = load_checkpoint(path)
    return ckpt.build_model(), ckpt.manifest


@torch.no_grad()
def _forward_all(model, dataset, batch_size: int, workers: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``model`` is a torch module or any callable from a batch tensor to a numpy array. With ``flip``
    each output is fused with that of the mirrored image (:func:`fuse_flip`: sum, then L2-normalised)."""
    from fcbench.metrics.verification import fuse_flip

    def run(x) -> np.ndarray:
        out = model(x)
        return out.float().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)

    outs, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers):
        if isinstance(batch, (list, tuple)):
            x, y = batch
            labels.append(np.asarray(y))
        else:
            x = batch
        out = run(x)
        if flip:  # the data is NCHW here: mirror the width
            out = fuse_flip(out, run(torch.flip(x, dims=[3]))).astype(np.float32)
        outs.append(out)
    return np.concatenate(outs), (np.concatenate(labels) if labels else np.empty(0))


def _protocol_name(protocol: str, flip: bool) -> str:
    """The protocol as rows record it: a flip-test figure is not comparable with a plain one."""
    return f"{protocol}+flip" if flip else protocol


def _check_flip(cfg: EvalConfig, protocol: str) -> None:
    if cfg.flip and protocol == "classification":
        raise FcbenchError("eval: --flip fuses face embeddings (verification, identification); a classifier's "
                           "top-1 has no flip test: drop --flip")
    if cfg.flip and protocol == "detection":
        raise FcbenchError("eval: --flip fuses face embeddings (verification, identification); a detector's "
                           "mAP has no flip test: drop --flip")


class _RuntimeModel:
    """An artifact loaded in a backend, called like the eager model: batch tensor in, outputs out.
    The artifact's fixed batch (usually 1) is honoured by running the batch in slices."""

    def __init__(self, path: Path, manifest: Manifest, backend_label: str, threads: int | None) -> None:
        from fcbench.backends import expand, why_not

        (spec,) = expand([backend_label])
        plugin, why = why_not(spec, path, manifest)
        if why:
            raise NotApplicable(f"eval: {spec.label} cannot run {path.name}: {why}; pick another --backend")
        self.label = spec.label
        self.plugin, self.variant = spec.plugin, spec.variant
        self.profile = spec.label if spec.profile else ""
        self.options = dict(spec.options)
        self.manifest = manifest
        self.layout = manifest.inputs[0].layout
        self.batch = _fixed_batch(manifest)  # None: the artifact takes any batch
        self.name = path.name
        self.session = plugin.load(path, manifest, spec.variant, threads, dict(spec.options))
        self.precision = getattr(self.session, "inference_precision", None)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.session.run(x))
        except FcbenchError:
            raise
        except Exception as exc:  # a third-party runtime's own exception: its message, as a failed run
            msg = (str(exc).strip().splitlines() or [""])[0][:300]
            raise FcbenchError(f"eval: {self.label} failed while running {self.name}: {type(exc).__name__}: {msg}",
                               exit_code=1) from exc

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        arr = x.numpy().astype(np.float32, copy=False)
        if self.layout == "NHWC":  # the data comes as NCHW (see _evaluate_artifact)
            arr = arr.transpose(0, 2, 3, 1)
        step = self.batch or len(arr)
        out = []
        for i in range(0, len(arr), step):
            chunk = np.ascontiguousarray(arr[i:i + step])
            if len(chunk) < step:  # pad the last slice to the artifact's fixed batch
                pad = np.repeat(chunk[-1:], step - len(chunk), axis=0)
                out.append(self._run(np.concatenate([chunk, pad]))[:len(chunk)])
            else:
                out.append(self._run(chunk))
        return np.concatenate(out).reshape(len(arr), -1)

    def close(self) -> None:
        self.session.close()


def _fixed_batch(manifest: Manifest) -> int | None:
    """The batch the artifact was exported with (``inputs[0].shape[0]``); None when the exporter left it
    dynamic (``extra.input_shape[0]`` symbolic or negative)."""
    exported = manifest.extra.get("input_shape") or [None]
    if isinstance(exported[0], str) or (isinstance(exported[0], int) and exported[0] < 0):
        return None
    return max(1, int(manifest.inputs[0].shape[0]))


def _check_input_size(dataset, manifest: Manifest, path: Path) -> None:
    """Bad input, before anything runs: the data's images must have the artifact's input size."""
    if len(dataset) == 0:
        return
    item = dataset[0]
    x = item[0] if isinstance(item, (list, tuple)) else item
    got = [int(d) for d in x.shape]  # CHW: the data is opened with layout NCHW
    shape = list(manifest.inputs[0].shape)
    want = shape[1:] if manifest.inputs[0].layout == "NCHW" else [shape[3], shape[1], shape[2]]
    if len(got) != 3 or len(shape) != 4 or any(w > 0 and w != g for w, g in zip(want, got, strict=True)):
        raise FcbenchError(
            f"eval: {dataset.source} gives images of {'x'.join(map(str, got))} (CxHxW) but {path.name} takes "
            f"{'x'.join(map(str, want))} (input {'x'.join(map(str, shape))} {manifest.inputs[0].layout}); "
            f"the manifest's preprocessing resizes to {'x'.join(map(str, manifest.preprocessing.size))}: "
            "fix the manifest or use data of the artifact's input size")


_REFERENCES: dict[tuple, dict[str, float]] = {}
HEADLINE = {"verification": "accuracy", "classification": "top1", "identification": "rank1", "detection": "map50"}


def headline_drop(report: EvalReport) -> tuple[str, float | None]:
    """(metric, percentage points the artifact is below its float parent), None without a parent."""
    metric = HEADLINE[report.protocol]
    values = dict(report.metrics)
    if metric not in report.reference or metric not in values:
        return metric, None
    return metric, 100.0 * (report.reference[metric] - values[metric])




def _reference(report: EvalReport, parent: Path, cfg: EvalConfig, protocol: str, ctx: RunContext) -> None:
    """``report.reference``: the float parent's figures in PyTorch on the same data (once per run)."""
    key = (str(parent.resolve()), repr(cfg.data), repr(sorted(cfg.data_options.items())), protocol,
           cfg.nfolds, cfg.flip, ctx.run_id)
    if key not in _REFERENCES:  # one PyTorch evaluation of a parent per run, however many cells share it
        ref = evaluate(EvalConfig(checkpoint=str(parent), data=cfg.data, data_options=cfg.data_options,
                                  protocol=protocol, batch_size=cfg.batch_size, nfolds=cfg.nfolds,
                                  workers=cfg.workers, threads=cfg.threads, flip=cfg.flip), ctx)
        _REFERENCES[key] = dict(ref.metrics)
        report.rows.extend(ref.rows)  # the parent's figures are stored once, with the cell that needed them
    report.reference = dict(_REFERENCES[key])


@restores_torch_threads
def evaluate(cfg: EvalConfig, ctx: RunContext | None = None) -> EvalReport:
    from fcbench.data import open_dataset

    if cfg.protocol not in PROTOCOLS:
        raise FcbenchError(f"eval: protocol must be one of {', '.join(PROTOCOLS)}, got '{cfg.protocol}'")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = ctx or RunContext()
    if is_artifact(cfg.checkpoint) or (cfg.backend and _plugin_of(cfg.backend) != "pytorch"):
        if cfg.model:
            raise FcbenchError(f"eval: --model is for a plain state_dict (.pt/.pth); {cfg.checkpoint} is evaluated "
                               "as an artifact with its manifest: drop --model")
        return _evaluate_artifact(cfg, ctx)
    model, manifest = load_for_eval(cfg)
    dataset = open_dataset(cfg.data, preprocessing=model.preprocessing, **cfg.data_options)
    protocol = _pick_protocol(cfg, dataset, model.fcbench_task, model.fcbench_name)
    _check_flip(cfg, protocol)
    report = EvalReport(checkpoint=str(cfg.checkpoint), model=model.fcbench_name, dataset=str(dataset.source),
                        protocol=protocol, metrics=[],
                        lineage=manifest.lineage_summary() if manifest else "", flip=cfg.flip)
    result = _metrics(model, dataset, protocol, cfg)
    report.details = result
    parent = float_parent(Path(cfg.checkpoint), manifest)[0] if cfg.max_drop is not None and manifest else None
    if parent is not None:  # a pruned (or otherwise changed) checkpoint checked against what it was made from
        _reference(report, parent, cfg, protocol, ctx)
    h, w = model.preprocessing.size
    for name, value in result.to_rows():
        report.metrics.append((name, float(value)))
        report.rows.append(ctx.row(
            "quality", model=model.fcbench_name, lineage=report.lineage, artifact=str(cfg.checkpoint),
            artifact_sha256=manifest.sha256 if manifest else "", format="fcbench-ckpt", backend="pytorch",
            variant="eager", threads=torch.get_num_threads(), batch=cfg.batch_size,
            input_shape=f"1x3x{h}x{w}", metric=name, value=float(value), dataset=report.dataset,
            protocol=_protocol_name(protocol, cfg.flip), extra={
                **({"label": cfg.label} if cfg.label else {}), **_roc_extra(name, result),
                **({"pytorch_value": report.reference[name], "delta": float(value) - report.reference[name]}
                   if name in report.reference else {})},
        ))
    return report


def _roc_extra(metric: str, result: Any) -> dict[str, Any]:
    """A verification's compact ROC, kept in the ``auc`` row's extra (``roc``: far and tar lists) for reports."""
    from fcbench.metrics.verification import VerificationResult, compact_roc

    if metric != "auc" or not isinstance(result, VerificationResult):
        return {}
    return {"roc": compact_roc(result)}


def _plugin_of(backend: str) -> str:
    """The plugin a --backend names (a profile or plugin:variant); unknown ones fail with a suggestion."""
    from fcbench.backends import resolve

    return resolve(backend).plugin


def _pick_protocol(cfg: EvalConfig, dataset, task: str, name: str) -> str:
    from fcbench.data.detection import DetectionImages

    is_pairs = hasattr(dataset, "issame")
    has_boxes = isinstance(dataset, DetectionImages)
    protocol = cfg.protocol
    if protocol == "auto":
        protocol = "detection" if task == "detection" or has_boxes else (
            "verification" if is_pairs else ("classification" if task == "classification" else "identification"))
    if (protocol == "detection") != (task == "detection"):
        raise FcbenchError(f"eval: model '{name}' is a detector; use --protocol detection (or auto)"
                           if task == "detection" else
                           f"eval: the detection protocol needs a detector, and model '{name}' is not one; "
                           "use --protocol auto")
    if protocol == "detection" and not has_boxes:
        raise FcbenchError(f"eval: detector '{name}' needs images with boxes (e.g. synthetic:video, COCO JSON, "
                           f"Pascal VOC); '{dataset.source}' has none")
    if protocol != "detection" and has_boxes:
        raise FcbenchError(f"eval: '{dataset.source}' holds images with boxes, for a detector; model '{name}' "
                           f"is not one")
    if protocol == "verification" and not is_pairs:
        raise FcbenchError(
            f"eval: verification needs a pair set (e.g. an insightface .bin); '{dataset.source}' has none")
    if protocol != "verification" and is_pairs:
        raise FcbenchError(f"eval: {protocol} needs labelled images; '{dataset.source}' is a verification pair set")
    if protocol == "classification" and task != "classification":
        raise FcbenchError(f"eval: model '{name}' outputs embeddings; use --protocol identification")
    return protocol


def _metrics(model, dataset, protocol: str, cfg: EvalConfig):
    from fcbench.data import gallery_probe_split
    from fcbench.metrics.classification import classification_metrics
    from fcbench.metrics.identification import identification_metrics
    from fcbench.metrics.verification import verification_metrics

    if protocol == "detection":
        return _detection_metrics(model, dataset, cfg)
    if protocol == "verification":
        emb, _ = _forward_all(model, dataset, cfg.batch_size, cfg.workers, cfg.flip)
        return verification_metrics(emb[0::2], emb[1::2], np.asarray(dataset.issame), nfolds=cfg.nfolds)
    if protocol == "classification":
        logits, labels = _forward_all(model, dataset, cfg.batch_size, cfg.workers)
        return classification_metrics(logits, labels)
    gallery_idx, probe_idx = gallery_probe_split(dataset)
    g, gl = _forward_all(model, Subset(dataset, gallery_idx), cfg.batch_size, cfg.workers, cfg.flip)
    p, pl = _forward_all(model, Subset(dataset, probe_idx), cfg.batch_size, cfg.workers, cfg.flip)
    return identification_metrics(g, gl, p, pl)


def _detection_config(model) -> dict[str, Any]:
    """The decode config of a detector: a runtime's from its manifest, an eager model's from its options."""
    manifest = getattr(model, "manifest", None)
    if manifest is not None:
        from fcbench.detection.postprocess import decode_config

        try:
            return decode_config(manifest.extra)
        except ValueError as exc:
            raise FcbenchError(f"eval: {getattr(model, 'name', 'the artifact')}: {exc}; convert the detector's "
                               "checkpoint again with this fcbench") from exc
    from fcbench.detection.anchors import decode_config as from_options

    return from_options(model.fcbench_options, getattr(model, "class_names", None))


@torch.no_grad()
def _detection_metrics(model, dataset, cfg: EvalConfig):
    """Every image through ``model`` (eager or a runtime), its raw output decoded and NMS'd in numpy,
    scored against the data's boxes (normalised xyxy)."""
    from fcbench.data.detection import collate
    from fcbench.detection.anchors import anchors_for
    from fcbench.detection.postprocess import decode_batch
    from fcbench.metrics.detection import detection_metrics

    det = _detection_config(model)
    if int(det["num_classes"]) != int(dataset.num_classes):
        raise FcbenchError(f"eval: the detector has {det['num_classes']} classes ({', '.join(det['class_names'][:5])})"
                           f" but '{dataset.source}' has {dataset.num_classes} "
                           f"({', '.join(map(str, dataset.class_names[:5]))}); evaluate on the data it was trained for")
    anchors = anchors_for(det["anchors"])
    scored = [i for i in range(len(dataset)) if dataset.evaluated(i)]  # e.g. CDNet frames outside the ROI are not
    dets, gts = [], []
    for start in range(0, len(scored), cfg.batch_size):
        idx = scored[start:start + cfg.batch_size]
        x, targets = collate([dataset[i] for i in idx])
        out = model(x)
        raw = out.float().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
        dets.extend(decode_batch(raw, det, anchors))
        gts.extend((t["boxes"].numpy(), t["labels"].numpy(), dataset.difficult(i))
                   for i, t in zip(idx, targets, strict=True))
    return detection_metrics(dets, gts, int(det["num_classes"]), det.get("class_names"))


def _evaluate_artifact(cfg: EvalConfig, ctx: RunContext) -> EvalReport:
    """Quality measured through a runtime: the artifact runs in its backend on every image; the
    float parent (from the lineage) runs in PyTorch on the same data for the differences."""
    from dataclasses import replace as dc_replace

    from fcbench.benchmark.run import BenchConfig, load_artifact
    from fcbench.data import open_dataset

    path = Path(cfg.checkpoint)
    if not path.exists():
        raise FcbenchError(f"eval: artifact {path} does not exist; check the path (convert writes it beside the "
                           "checkpoint, or in --out)")
    notes: list[str] = []
    path, manifest = load_artifact(path, BenchConfig(artifacts=[str(path)], infer_manifest=cfg.infer_manifest),
                                   lambda p, a: notes.append("assumed " + "; ".join(a)))
    split = manifest.extra.get("split")
    if isinstance(split, dict) and split.get("part"):
        raise FcbenchError(f"eval: {path.name} is the {split['part']} of a detector split at layer "
                           f"{split.get('layer')} for motion gating; evaluate the pair with --video (give the front)")
    label = cfg.backend or formats.default_backend(manifest)
    if label is None:
        raise FcbenchError(f"eval: no default backend for format {manifest.format}; pass --backend")
    task = task_of(manifest.output_kind)
    name = manifest.model.get("name", path.stem)
    pre = dc_replace(manifest.preprocessing, layout="NCHW")  # the runtime wrapper transposes for NHWC inputs
    dataset = open_dataset(cfg.data, preprocessing=pre, **cfg.data_options)
    protocol = _pick_protocol(cfg, dataset, task, name)
    _check_flip(cfg, protocol)
    _check_input_size(dataset, manifest, path)
    parent, why = float_parent(path, manifest)
    if cfg.device:  # on a device of the inventory: one pass records the inputs, the device runs them, one scores
        from dataclasses import replace as ctx_replace

        from fcbench.devices.remote_eval import DeviceRuntimeModel

        runtime = DeviceRuntimeModel(path, manifest, label, cfg.threads, cfg.device)
        try:
            _metrics(runtime, dataset, protocol, cfg)
            if parent is not None and task == "embedding":
                _cosine_to_parent(runtime, parent, dataset)
            runtime.run_on_device()
        except BaseException:
            runtime.close()
            raise
        info = dict(runtime.raw.get("machine") or runtime.info)
        if runtime.info.get("emulated"):  # e.g. qemu-user (the driver's info() tells; the worker cannot)
            info["emulated"] = runtime.info["emulated"]
        from fcbench.devices.fingerprint import fingerprint

        ctx = ctx_replace(ctx, device=cfg.device, device_info=info, device_fingerprint=fingerprint(info))
        notes.append(f"ran on device {cfg.device} ({runtime.profile_.where()}): {runtime.images()} inputs")
    else:
        runtime = _RuntimeModel(path, manifest, label, cfg.threads)
    try:
        result = _metrics(runtime, dataset, protocol, cfg)
        from fcbench.benchmark.placement import placement_summary, precision_summary

        nodes = runtime.session.placement()
        trust = {"placement": placement_summary(nodes), "precision": precision_summary(nodes)}
        cosine = _cosine_to_parent(runtime, parent, dataset) if parent is not None and task == "embedding" else []
    finally:
        runtime.close()
    report = EvalReport(checkpoint=str(path), model=name, dataset=str(dataset.source), protocol=protocol,
                        metrics=[(k, float(v)) for k, v in result.to_rows()] + cosine,
                        lineage=manifest.lineage_summary(),
                        flip=cfg.flip,
                        details=result, backend=runtime.label, notes=notes, trust=trust)
    if parent is None:
        report.notes.append(f"no PyTorch reference: {why}")
    else:
        _reference(report, parent, cfg, protocol, ctx)
    h, w = manifest.preprocessing.size
    for metric, value in report.metrics:
        extra: dict[str, Any] = {}
        if metric in report.reference:
            extra = {"pytorch_value": report.reference[metric], "delta": value - report.reference[metric]}
        extra.update(trust)  # where it ran and in which precision, as for a bench cell
        if cfg.label:
            extra["label"] = cfg.label
        if runtime.precision:
            extra["inference_precision"] = runtime.precision
        extra.update(_roc_extra(metric, result))
        report.rows.append(ctx.row(
            "quality", model=name, lineage=report.lineage, artifact=str(path), artifact_sha256=manifest.sha256,
            format=manifest.format, backend=runtime.plugin, variant=runtime.variant, profile=runtime.profile,
            options_hash=options_hash(runtime.options),
            threads=cfg.threads or torch.get_num_threads(), batch=runtime.batch or cfg.batch_size,
            input_shape="x".join(map(str, manifest.inputs[0].shape)), metric=metric, value=value,
            dataset=report.dataset, protocol=_protocol_name(protocol, cfg.flip), extra=extra,
        ))
    return report


COSINE_IMAGES = 64


def _cosine_to_parent(runtime: _RuntimeModel, parent: Path, dataset) -> list[tuple[str, float]]:
    """Embedding cosine of the artifact (in its runtime) to its float parent (in PyTorch) on the first
    images of the data: mean and 1st percentile, the figures that catch an embedding collapsing."""
    from fcbench.quantization import cosine_rows
    from fcbench.training.checkpoint import load_checkpoint

    n = min(COSINE_IMAGES, len(dataset))
    if n == 0:
        return []
    xs = []
    for i in range(n):
        item = dataset[i]
        xs.append(item[0] if isinstance(item, (list, tuple)) else item)
    x = torch.stack(xs)
    model = load_checkpoint(parent).build_model().eval()
    with torch.inference_mode():
        ref = model(x).float().numpy()
    cos = cosine_rows(ref, runtime(x))
    return [("cosine_to_parent_mean", float(cos.mean())), ("cosine_to_parent_p1", float(np.percentile(cos, 1)))]


@dataclass
class EvalResult:
    """What ``fcbench eval`` measured: one report per evaluation that ran, and for several artifacts x
    backends the matrix of the headline metric beside the float parent's (a cell per pair, failed or
    skipped ones with their reason). ``failures()`` lists what should make a CI job fail (a failed cell,
    a ``max_drop`` budget exceeded)."""

    reports: list[EvalReport] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    matrix: bool = False
    verdict: str = ""  # the --max-drop verdict of a single evaluation
    failed: list[str] = field(default_factory=list)
    roc_file: str | None = None

    def to_rows(self) -> list[Row]:
        return [row for r in self.reports for row in r.rows]

    def failures(self) -> list[str]:
        return list(self.failed)

    @property
    def report(self) -> EvalReport:
        """The one report of a single evaluation."""
        if len(self.reports) != 1:
            raise FcbenchError(f"eval: {len(self.reports)} evaluations ran; read .reports")
        return self.reports[0]

    @property
    def metrics(self) -> list[tuple[str, float]]:
        return self.report.metrics


def over_budget(drop: float, max_drop: float) -> bool:
    """Whether ``drop`` points exceed ``max_drop``, as the printed figures read: a drop computed as
    100 * (0.92 - 0.91) is 1.0000000000000009 in binary floating point and is within a budget of 1."""
    return drop > max_drop + 1e-9


def drop_verdict(report: EvalReport, max_drop: float) -> tuple[bool, str]:
    """(failed, sentence) for a ``max_drop`` budget in percentage points of the headline metric."""
    metric, drop = headline_drop(report)
    if drop is None:
        raise FcbenchError(f"--max-drop needs the artifact's float parent to compare with: "
                           f"{'; '.join(report.notes) or 'none found'}")
    return over_budget(drop, max_drop), f"{metric} {drop:+.2f} points below the float parent (budget {max_drop:g})"


def evaluate_all(cfg: EvalConfig, ctx: RunContext | None = None, hooks: Hooks | None = None) -> Any:
    """The eval verb: every checkpoint x backend of ``cfg``. One pair gives every metric (and the ROC file
    when ``cfg.roc``); several give a matrix of the headline metric where a failing cell says why and the
    rest go on. Each evaluation's rows go to ``hooks.on_rows`` when it finishes. With ``cfg.video`` (one
    detector on video data, without and with motion gating) the result is a
    :class:`fcbench.video_eval.VideoEvalResult` instead of an :class:`EvalResult`."""
    from dataclasses import replace

    from fcbench.artifact import artifacts_only
    from fcbench.render.rows import short_names

    cfg.validate()
    if cfg.pipeline or cfg.video:
        if cfg.pipeline:  # detect -> embed -> identify (fcbench/pipeline_eval.py)
            from fcbench.pipeline_eval import evaluate_pipeline as evaluate_special
        else:  # a detector on video, without and with motion gating (fcbench/video_eval.py)
            from fcbench.video_eval import evaluate_video as evaluate_special

        result = evaluate_special(cfg, ctx, hooks)
        hooks = or_default(hooks)
        for note in result.notes:
            hooks.log(note)
        hooks.rows(result.rows)
        hooks.event("eval", result)
        return result
    if cfg.roc is not None:  # before any work: a ROC that cannot be written fails the run before it starts
        from fcbench.paths import output_file

        output_file(cfg.roc, "--roc", make_parent=False, example="roc.csv")
    ctx = ctx or RunContext()
    hooks = or_default(hooks)
    checkpoints = artifacts_only(cfg.checkpoints, hooks.log)
    if cfg.max_drop is not None:
        _check_float_parents(checkpoints, cfg)
    backends: list[str | None] = list(cfg.backends) or [None]
    result = EvalResult()
    if len(checkpoints) == 1 and len(backends) == 1:
        report = evaluate(replace(cfg, checkpoint=checkpoints[0], backend=backends[0]), ctx)
        result.reports.append(report)
        for note in report.notes:
            hooks.log(f"{Path(report.checkpoint).name}: {note}")
        if cfg.roc is not None:  # the ROC is part of the work asked for: written before the rows are stored
            from fcbench.metrics.verification import write_roc_csv

            if report.protocol != "verification":
                raise FcbenchError(f"--roc needs a verification set (pairs); {cfg.data} was evaluated as "
                                   f"{report.protocol}; drop --roc or give pairs (nothing was stored)")
            try:
                result.roc_file = str(write_roc_csv(report.details, cfg.roc))
            except OSError as exc:
                raise FcbenchError(f"--roc {cfg.roc} cannot be written ({exc.strerror or exc}); pick another path "
                                   "(nothing was stored)") from exc
        hooks.rows(report.rows)
        hooks.event("eval", report)
        if result.roc_file:
            hooks.log(f"ROC ({len(report.details.fpr)} points) written to {result.roc_file}")
        if cfg.max_drop is not None:
            failed, result.verdict = drop_verdict(report, cfg.max_drop)
            if failed:
                result.failed.append(f"{Path(report.checkpoint).name}: {result.verdict}")
        return result
    result.matrix = True
    _some_cell_can_run(checkpoints, backends, cfg)
    names = short_names(checkpoints)
    for c in checkpoints:
        for b in backends if is_artifact(c) else [None]:
            cell: dict[str, Any] = {"artifact": names[c], "backend": b or "default"}
            try:
                report = evaluate(replace(cfg, checkpoint=c, backend=b), ctx)
            except NotApplicable as exc:
                cell.update(status="skipped", reason=str(exc))
            except FcbenchError as exc:
                cell.update(status="failed", reason=str(exc))
                result.failed.append(f"{cell['artifact']} on {cell['backend']}: {exc}")
            else:
                result.reports.append(report)
                hooks.rows(report.rows)
                _fill_cell(cell, report, cfg.max_drop)
                if cell["status"] == "failed":
                    result.failed.append(f"{cell['artifact']} on {cell['backend']}: {cell['reason']}")
            result.cells.append(cell)
            hooks.event("eval-cell", cell)
    if result.cells and all(c["status"] == "skipped" for c in result.cells):
        raise FcbenchError("eval: nothing ran, every cell was skipped: "
                           + distinct_reasons(c["reason"].removeprefix("eval: ") for c in result.cells))
    return result


def _check_float_parents(checkpoints: list[str], cfg: EvalConfig) -> None:
    """``--max-drop`` compares each artifact (or a checkpoint made from another, e.g. pruned) with its float
    parent: before any evaluation, every one must have a float parent that is there to run."""
    from fcbench.artifact import load_manifest, manifest_path
    from fcbench.benchmark.run import BenchConfig, load_artifact
    from fcbench.lineage import float_parent

    for c in checkpoints:
        if not is_artifact(c):  # a checkpoint made from another (pruned, ...) is compared with that one
            path = Path(c)
            if not manifest_path(path).exists():
                raise FcbenchError(f"--max-drop compares an artifact or a pruned checkpoint with its float parent; "
                                   f"{c} has no fcbench manifest naming one")
            manifest = load_manifest(path)
        else:
            path, manifest = load_artifact(c, BenchConfig(artifacts=[c], infer_manifest=cfg.infer_manifest))
        parent, why = float_parent(path, manifest)
        if parent is None:
            raise FcbenchError(f"--max-drop needs the float parent of {path.name} to compare with: {why}; "
                               "evaluate an artifact converted by fcbench convert, or a checkpoint made by fcbench "
                               "prune or compress, beside its parent checkpoint")


def _some_cell_can_run(checkpoints: list[str], backends: list[str | None], cfg: EvalConfig) -> None:
    """Before anything runs: when no artifact x backend cell of the matrix can run here (every backend
    named cannot load or run its artifact), say why (exit 2) instead of a matrix of skipped cells. A cell
    that fails for another reason (a missing file) is left to the matrix, which reports it."""
    from fcbench.backends import expand, why_not
    from fcbench.benchmark.run import BenchConfig, load_artifact

    reasons = []
    for c in checkpoints:
        if not is_artifact(c):
            return  # a checkpoint runs in PyTorch
        try:
            path, manifest = load_artifact(c, BenchConfig(artifacts=[c], infer_manifest=cfg.infer_manifest))
            for b in backends:
                (spec,) = expand([b or formats.default_backend(manifest) or ""])
                why = why_not(spec, path, manifest)[1]
                if not why:
                    return
                reasons.append(f"{spec.label} cannot run {path.name}: {why}")
        except FcbenchError:
            return
    raise FcbenchError("eval: nothing to run, every cell would be skipped: "
                       + distinct_reasons(reasons)
                       + "; pick a --backend that loads these artifacts here (fcbench plugins --kind backend)")


def _fill_cell(cell: dict[str, Any], report: EvalReport, max_drop: float | None) -> None:
    metric = HEADLINE[report.protocol]
    cell.update(backend=report.backend, status="ok", metric=metric, value=dict(report.metrics)[metric],
                pytorch=report.reference.get(metric), **report.trust)
    _, drop = headline_drop(report)
    cell["delta"] = None if drop is None else -drop / 100.0
    if max_drop is None:
        return
    if drop is None:
        cell.update(status="failed", reason="no float parent to compare with: " + "; ".join(report.notes))
    elif over_budget(drop, max_drop):
        cell.update(status="failed", reason=f"{drop:.2f} points below the float parent (budget {max_drop:g})")
