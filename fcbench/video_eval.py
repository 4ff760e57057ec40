"""``fcbench eval DET --video``: a detector on video without and with motion gating, measured end to end.

The detector is split at the gating layer ``m`` into a *front* (image -> layer ``m``'s feature map) and a
*back* (feature map -> raw detector output): a checkpoint through ``model.split_at(m)`` in PyTorch, or a
split pair of artifacts (``fcbench convert DET --split-at M`` writes ``model.front.onnx`` and
``model.back.onnx``) through a runtime's two sessions. Every video of the data is run twice through
:func:`fcbench.detection.pipeline.run_video`: every frame through front, back and decode (*ungated*), then with
a :class:`~fcbench.detection.gating.MotionGate` (*gated*: the back and decode run only on frames with motion,
boxes that did not move are dropped). Both runs are scored with the detection protocol (VOC mAP@0.5, COCO
mAP, ...) on the frames the data scores (``evaluated(i)``; a CDNet frame outside its temporal ROI still
runs, so the gate warms up on it), and timed per frame and stage. The result says what gating did to the
quality and how much time it saved, frames skipped included.

:func:`compare_gating` is the measuring core on plain numpy callables, so a hand-made detector (or any
runtime) can be measured the same way; :func:`evaluate_video` wires a checkpoint or a split pair to it
and builds the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.detection.gating import GateOptions
from fcbench.detection.pipeline import VIDEO_STAGES, ArrayFn, VideoRun, run_video
from fcbench.errors import FcbenchError, suggest
from fcbench.threads import restores_torch_threads

GATE_KEYS = tuple(f for f in GateOptions.__dataclass_fields__)  # layer, lam, alpha, alpha_moving
PROTOCOL = "detection+video"  # the rows' protocol without the gate; with it: PROTOCOL + "+gate"
SPLIT_PARTS = ("front", "back")


def gate_options(values: Mapping[str, Any] | None) -> GateOptions:
    """``--gate`` KEY=VALUE pairs (layer, lam, alpha, alpha_moving; missing ones keep the dissertation's
    defaults) as checked :class:`GateOptions`; an unknown key or a value out of range is one line."""
    values = dict(values or {})
    for key in values:
        if key not in GATE_KEYS:
            raise FcbenchError(f"--gate: unknown key '{key}'{suggest(key, GATE_KEYS)}; keys: {', '.join(GATE_KEYS)}")
    return GateOptions(**values)


def gate_dict(options: GateOptions) -> dict[str, Any]:
    return asdict(options)


@dataclass
class ModeFigures:
    """One way of running the videos (ungated or gated): its detection metrics and its per-frame times."""

    metrics: dict[str, float]
    frames: int
    skipped: int
    frame_ms: np.ndarray  # every frame's milliseconds, all stages together, in play order
    stage_ms: dict[str, float]  # mean milliseconds per frame of each stage (a stage that did not run: 0)
    head_ran: np.ndarray  # bool per frame, in play order (videos one after another): the back ran
    detections: list[tuple] = field(default_factory=list)  # (boxes, scores, labels) of each scored frame, in order
    details: Any = None  # the DetectionResult

    @property
    def skipped_fraction(self) -> float:
        return self.skipped / self.frames if self.frames else 0.0

    @property
    def ms_per_frame(self) -> float:
        return float(self.frame_ms.mean()) if len(self.frame_ms) else 0.0


@dataclass
class GatingComparison:
    """What :func:`compare_gating` measured: the ungated and the gated run of the same videos."""

    ungated: ModeFigures
    gated: ModeFigures
    gate: GateOptions
    sequences: int
    scored_frames: int

    @property
    def ms_saved_per_frame(self) -> float:
        return self.ungated.ms_per_frame - self.gated.ms_per_frame

    @property
    def time_saved_fraction(self) -> float:
        u = self.ungated.ms_per_frame
        return self.ms_saved_per_frame / u if u > 0 else 0.0


def _is_video(dataset: Any) -> bool:
    from fcbench.data.detection import DetectionImages

    return isinstance(dataset, DetectionImages) and any(len(s) > 1 for s in dataset.sequences())


def check_video_data(dataset: Any) -> None:
    """Refuse (one line) data that is not a video with boxes: still images, pairs, classes."""
    from fcbench.data.detection import DetectionImages

    source = getattr(dataset, "source", type(dataset).__name__)
    if not isinstance(dataset, DetectionImages):
        raise FcbenchError(f"eval --video: '{source}' is not detection data (frames with boxes); give a video set: "
                           "synthetic:video, video:FILE (with FILE.boxes.csv) or cdnet:DIR")
    if not _is_video(dataset):
        raise FcbenchError(f"eval --video: '{source}' holds still images (no sequence of frames), and motion gating "
                           "compares each frame with the video's earlier ones; give a video set: synthetic:video, "
                           "video:FILE or cdnet:DIR")


def _summary(runs: list[VideoRun], dets: list[tuple], gts: list[tuple], num_classes: int,
             class_names: list[str] | None) -> ModeFigures:
    from fcbench.metrics.detection import detection_metrics

    result = detection_metrics(dets, gts, num_classes, class_names)
    frames = sum(r.frames for r in runs)
    frame_ms = np.concatenate([r.frame_times() * 1e3 for r in runs]) if runs else np.zeros(0)
    stage_ms = {s: float(np.concatenate([r.times[s] for r in runs]).mean() * 1e3) if frames else 0.0
                for s in VIDEO_STAGES}
    return ModeFigures(metrics={k: float(v) for k, v in result.to_rows()}, frames=frames,
                       skipped=sum(r.skipped for r in runs), frame_ms=frame_ms, stage_ms=stage_ms,
                       head_ran=np.concatenate([r.run_head for r in runs]) if runs else np.zeros(0, bool),
                       detections=list(dets), details=result)


def compare_gating(front: ArrayFn, back: ArrayFn, decode: ArrayFn, dataset: Any, gate: GateOptions | Mapping | None,
                   inputs: Callable[[int], np.ndarray] | None = None, num_classes: int | None = None,
                   class_names: list[str] | None = None, warmup: int = 2,
                   progress: Callable[[int, int], None] | None = None) -> GatingComparison:
    """Every video of ``dataset`` (its ``sequences()``) through ``front``/``back``/``decode`` without a gate and
    with a :class:`MotionGate` of ``gate``; both scored on the frames ``dataset.evaluated(i)`` and timed.

    ``inputs(i)`` makes the front's input for frame ``i`` (default: ``dataset[i]``'s tensor as ``[1, C, H, W]``
    float32); making it is not timed. ``warmup`` untimed passes of front and back on the first frame come
    first (a runtime's first calls are slow). Which mode runs a video first alternates from video to video.
    ``decode`` returns normalised boxes, scores and labels."""
    from fcbench.detection.gating import MotionGate

    check_video_data(dataset)
    options = gate if isinstance(gate, GateOptions) else gate_options(gate)
    k = int(num_classes if num_classes is not None else dataset.num_classes)
    names = list(class_names) if class_names is not None else list(dataset.class_names)

    def default_input(i: int) -> np.ndarray:
        return dataset[i][0].numpy()[None].astype(np.float32, copy=False)

    make = inputs or default_input
    seqs = [s for s in dataset.sequences() if s]
    if warmup and seqs:
        x = make(seqs[0][0])
        for _ in range(int(warmup)):
            back(front(x))
    truths: dict[int, tuple] = {}
    per_mode: dict[str, tuple[list[VideoRun], list[tuple]]] = {"ungated": ([], []), "gated": ([], [])}
    total = 2 * sum(len(s) for s in seqs)
    done = 0

    def frames_of(seq: list[int]) -> Iterator[np.ndarray]:
        nonlocal done
        for i in seq:
            yield make(i)
            done += 1
            if progress is not None:
                progress(done, total)

    for seq in seqs:
        scored = [n for n, i in enumerate(seq) if dataset.evaluated(i)]
        for i in (seq[n] for n in scored):
            if i not in truths:
                t = dataset.normalised_target(i)
                truths[i] = (t["boxes"].numpy(), t["labels"].numpy(), dataset.difficult(i))
        order = ("ungated", "gated") if len(per_mode["gated"][0]) % 2 == 0 else ("gated", "ungated")
        for mode in order:  # which mode runs first alternates video by video: a machine that slows down or
            # warms up mid-run weighs on both alike
            run = run_video(front, back, decode, frames_of(seq),
                            gate=MotionGate(**gate_dict(options)) if mode == "gated" else None)
            runs, dets = per_mode[mode]
            runs.append(run)
            dets.extend((run.detections[n].boxes, run.detections[n].scores, run.detections[n].labels) for n in scored)
    gts = [truths[i] for seq in seqs for i in seq if dataset.evaluated(i)]
    figures = {m: _summary(runs, dets, gts, k, names) for m, (runs, dets) in per_mode.items()}
    return GatingComparison(ungated=figures["ungated"], gated=figures["gated"], gate=options, sequences=len(seqs),
                            scored_frames=len(gts))


# --------------------------------------------------------------------------------- the eval --video verb


@dataclass
class VideoEvalResult:
    """What ``fcbench eval DET --video`` measured (see the module docstring); ``to_rows()`` gives a quality
    row per metric and mode (protocol ``detection+video``, and ``detection+video+gate`` with
    ``extra.gating`` and ``extra.frames_skipped``) and a speed row per mode (per-frame milliseconds)."""

    checkpoint: str
    model: str
    dataset: str
    backend: str
    comparison: GatingComparison
    artifacts: list[str] = field(default_factory=list)  # the front and back files of a split pair
    notes: list[str] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)

    def to_rows(self) -> list[Any]:
        return list(self.rows)

    @property
    def gate(self) -> GateOptions:
        return self.comparison.gate

    def table(self) -> list[dict[str, Any]]:
        """One line per mode: quality, frames skipped and milliseconds per frame (all stages and each)."""
        c = self.comparison
        out = []
        for mode, fig in (("ungated", c.ungated), ("gated", c.gated)):
            g = c.gate
            out.append({
                "gate": "off" if mode == "ungated" else f"m={g.layer} lam={g.lam:g} alpha={g.alpha:g}"
                + ("" if g.alpha_moving == 1.0 else f" alpha_moving={g.alpha_moving:g}"),
                "map50": fig.metrics.get("map50"), "map": fig.metrics.get("map"),
                "recall50": fig.metrics.get("recall50"), "precision50": fig.metrics.get("precision50"),
                "frames": fig.frames, "skipped": fig.skipped, "skipped_%": 100.0 * fig.skipped_fraction,
                "ms/frame": fig.ms_per_frame, **{f"ms {s}": fig.stage_ms[s] for s in VIDEO_STAGES}})
        return out

    def summary(self) -> dict[str, Any]:
        c = self.comparison
        return {"checkpoint": self.checkpoint, "model": self.model, "dataset": self.dataset, "backend": self.backend,
                "artifacts": self.artifacts, "gate": gate_dict(c.gate), "sequences": c.sequences,
                "frames": c.gated.frames, "scored_frames": c.scored_frames, "frames_skipped": c.gated.skipped,
                "skipped_fraction": c.gated.skipped_fraction,
                "ungated": {"metrics": c.ungated.metrics, "ms_per_frame": c.ungated.ms_per_frame,
                            "ms_per_stage": c.ungated.stage_ms},
                "gated": {"metrics": c.gated.metrics, "ms_per_frame": c.gated.ms_per_frame,
                          "ms_per_stage": c.gated.stage_ms},
                "ms_saved_per_frame": c.ms_saved_per_frame, "time_saved_fraction": c.time_saved_fraction,
                "notes": self.notes}


@dataclass
class _Detector:
    """A detector split for gating, however it was loaded."""

    front: ArrayFn
    back: ArrayFn
    decode: ArrayFn
    model: str
    lineage: str
    artifact: str
    sha256: str
    format: str
    backend: str  # plugin
    variant: str
    profile: str
    label: str  # plugin:variant or the profile, as shown
    runtime_options: dict[str, Any]
    input_shape: str
    layout: str
    detection: dict[str, Any]
    preprocessing: Any
    artifacts: list[str]
    close: Callable[[], None] = lambda: None


def _eager(cfg: Any, gate: GateOptions, verb: str = "eval --video") -> _Detector:
    from fcbench.artifact import task_of
    from fcbench.detection.anchors import decode_config
    from fcbench.detection.pipeline import numpy_callable
    from fcbench.detection.postprocess import decoder
    from fcbench.evaluation import load_for_eval

    model, manifest = load_for_eval(cfg)
    name = getattr(model, "fcbench_name", type(model).__name__)
    if getattr(model, "fcbench_task", None) != "detection" or not hasattr(model, "split_at"):
        raise FcbenchError(f"{verb} needs a detector that splits for motion gating (ssd-mobilenetv2); "
                           f"'{name}' is a {getattr(model, 'fcbench_task', 'model')} model")
    if manifest is not None and task_of(manifest.output_kind) != "detection":
        raise FcbenchError(f"{verb}: {cfg.checkpoint} is not a detector")
    front, back = model.split_at(gate.layer)  # a layer the backbone has not: one line with the valid range
    det = decode_config(model.fcbench_options, getattr(model, "class_names", None))
    h, w = model.preprocessing.size
    return _Detector(front=numpy_callable(front), back=numpy_callable(back), decode=decoder(det), model=name,
                     lineage=manifest.lineage_summary() if manifest else "", artifact=str(cfg.checkpoint),
                     sha256=manifest.sha256 if manifest else "", format="fcbench-ckpt", backend="pytorch",
                     variant="eager", profile="", label="pytorch:eager", runtime_options={},
                     input_shape=f"1x3x{h}x{w}", layout="NCHW", detection=det, preprocessing=model.preprocessing,
                     artifacts=[str(cfg.checkpoint)])


def split_pair(path: Path, manifest: Any, infer_manifest: bool = False, verb: str = "eval --video"
               ) -> tuple[tuple[Path, Any], tuple[Path, Any]]:
    """The ((front, manifest), (back, manifest)) of the split pair ``path`` belongs to (either half may be
    given), each verified; a whole detector or a pair whose halves do not fit is one line."""
    from fcbench.benchmark.run import BenchConfig, load_artifact

    split = manifest.extra.get("split")
    if not isinstance(split, Mapping) or split.get("part") not in SPLIT_PARTS:
        raise FcbenchError(f"{verb} through a runtime runs a detector split in two at the gating layer, and "
                           f"{path.name} is a whole one; convert the checkpoint with --split-at M (it writes "
                           f"MODEL.front{path.suffix} and MODEL.back{path.suffix}) and give the front")
    other = path.parent / str(split.get("pair", ""))
    if not split.get("pair") or not other.is_file():
        raise FcbenchError(f"{verb}: {path.name} is the {split['part']} of a split pair, but its other half "
                           f"{other.name} is not beside it; keep the two files (and manifests) together")
    other, other_manifest = load_artifact(other, BenchConfig(artifacts=[str(other)], infer_manifest=infer_manifest))
    halves = {split["part"]: (path, manifest)}
    o_split = other_manifest.extra.get("split") or {}
    halves[str(o_split.get("part"))] = (other, other_manifest)
    if set(halves) != set(SPLIT_PARTS):
        raise FcbenchError(f"{verb}: {path.name} and {other.name} are not a front and a back (their manifests "
                           f"say {split['part']} and {o_split.get('part')}); convert the checkpoint again with "
                           "--split-at")
    (fp, fm), (bp, bm) = halves["front"], halves["back"]
    check_pair(fp, fm, bp, bm, verb)
    return (fp, fm), (bp, bm)


def check_pair(front: Path, fm: Any, back: Path, bm: Any, verb: str = "eval --video") -> None:
    """The front's output (its manifest's ``extra.split.feature_shape``) must be the back's input, and both
    halves must be cut at one layer of one model."""
    fs, bs = fm.extra.get("split") or {}, bm.extra.get("split") or {}
    out_shape = [int(d) for d in fs.get("feature_shape") or []]
    in_shape = [int(d) for d in bm.inputs[0].shape]
    if out_shape != in_shape:
        raise FcbenchError(f"{verb}: the split pair does not fit: {front.name} gives a feature map of "
                           f"{'x'.join(map(str, out_shape)) or 'unknown shape'} but {back.name} takes "
                           f"{'x'.join(map(str, in_shape))}; convert both halves from one checkpoint with one "
                           "--split-at")
    if fs.get("layer") != bs.get("layer") or fs.get("source_sha256") != bs.get("source_sha256"):
        raise FcbenchError(f"{verb}: {front.name} (layer {fs.get('layer')}) and {back.name} (layer "
                           f"{bs.get('layer')}) were not cut from one checkpoint at one layer; convert again with "
                           "one --split-at")


def _runtime(cfg: Any, gate_values: Mapping[str, Any], verb: str = "eval --video") -> tuple[_Detector, GateOptions]:
    from fcbench import formats
    from fcbench.backends import expand, why_not
    from fcbench.benchmark.run import BenchConfig, load_artifact
    from fcbench.detection.postprocess import decode_config, decoder
    from fcbench.errors import NotApplicable

    path = Path(cfg.checkpoint)
    if not path.exists():
        raise FcbenchError(f"eval: artifact {path} does not exist; check the path")
    path, manifest = load_artifact(path, BenchConfig(artifacts=[str(path)], infer_manifest=cfg.infer_manifest))
    (fp, fm), (bp, bm) = split_pair(path, manifest, cfg.infer_manifest, verb)
    layer = int(fm.extra["split"]["layer"])
    if "layer" in gate_values and int(gate_values["layer"]) != layer:
        raise FcbenchError(f"--gate layer={gate_values['layer']}: the pair {fp.name} + {bp.name} is split at layer "
                           f"{layer}; drop layer= or convert the checkpoint again with --split-at "
                           f"{gate_values['layer']}")
    gate = gate_options({**gate_values, "layer": layer})
    for p, m in ((fp, fm), (bp, bm)):
        if m.inputs[0].layout != "NCHW":
            raise FcbenchError(f"{verb}: {p.name} takes {m.inputs[0].layout} input; split pairs run in NCHW "
                               "(onnx, openvino): convert with --to onnx or openvino")
    try:
        det = decode_config(bm.extra)
    except ValueError as exc:
        raise FcbenchError(f"{verb}: {bp.name}: {exc}; convert the detector's checkpoint again") from exc
    label = cfg.backend or formats.default_backend(fm)
    if label is None:
        raise FcbenchError(f"eval: no default backend for format {fm.format}; pass --backend")
    (spec,) = expand([label])
    sessions = []
    for p, m in ((fp, fm), (bp, bm)):
        plugin, why = why_not(spec, p, m)
        if why:
            raise NotApplicable(f"eval: {spec.label} cannot run {p.name}: {why}; pick another --backend")
        try:
            sessions.append(plugin.load(p, m, spec.variant, cfg.threads, dict(spec.options)))
        except BaseException:
            for s in sessions:
                s.close()
            raise

    def call(session: Any, name: str) -> ArrayFn:
        def run(x: Any) -> np.ndarray:
            try:
                return np.asarray(session.run(np.ascontiguousarray(x, dtype=np.float32)))
            except FcbenchError:
                raise
            except Exception as exc:  # the runtime's own exception, as a failed run
                msg = (str(exc).strip().splitlines() or [""])[0][:300]
                raise FcbenchError(f"eval: {spec.label} failed while running {name}: {type(exc).__name__}: {msg}",
                                   exit_code=1) from exc
        return run

    def close() -> None:
        for s in sessions:
            s.close()

    return _Detector(front=call(sessions[0], fp.name), back=call(sessions[1], bp.name), decode=decoder(det),
                     model=fm.model.get("name", fp.stem), lineage=fm.lineage_summary(), artifact=str(fp),
                     sha256=fm.sha256, format=fm.format, backend=spec.plugin, variant=spec.variant,
                     profile=spec.label if spec.profile else "", label=spec.label, runtime_options=dict(spec.options),
                     input_shape="x".join(map(str, fm.inputs[0].shape)), layout="NCHW", detection=det,
                     preprocessing=fm.preprocessing, artifacts=[str(fp), str(bp)], close=close), gate


def check_video_config(cfg: Any) -> None:
    """What ``--video`` does not combine with, refused before any work."""
    if len(cfg.checkpoints) != 1 or len(cfg.backends) > 1:
        raise FcbenchError("eval --video measures one detector (a checkpoint, or the front of a split pair) with one "
                           "backend; give one of each")
    for on, what in ((cfg.max_drop is not None, "--max-drop"), (cfg.roc is not None, "--roc"), (cfg.flip, "--flip"),
                     (bool(cfg.device), "--device"), (bool(cfg.model), "--model")):
        if on:
            raise FcbenchError(f"eval --video does not take {what}; drop it")
    if cfg.protocol not in ("auto", "detection"):
        raise FcbenchError(f"eval --video scores detections; --protocol {cfg.protocol} does not apply: drop it")


@restores_torch_threads
def evaluate_video(cfg: Any, ctx: Any = None, hooks: Any = None) -> VideoEvalResult:
    """``fcbench eval DET --video``: see the module docstring. ``cfg`` is an :class:`~fcbench.options.EvalConfig`
    with ``video`` set; ``cfg.gate`` holds the gate's options (layer, lam, alpha, alpha_moving)."""
    from dataclasses import replace

    import torch

    from fcbench.data import open_dataset
    from fcbench.evaluation import _plugin_of
    from fcbench.formats import is_artifact
    from fcbench.hooks import or_default
    from fcbench.results.context import RunContext
    from fcbench.results.store import options_hash

    check_video_config(cfg)
    cfg = replace(cfg, checkpoint=cfg.checkpoints[0], backend=(cfg.backends or [None])[0])
    hooks = or_default(hooks)
    ctx = ctx or RunContext()
    gate_values = dict(cfg.gate or {})
    gate = gate_options(gate_values)  # every value checked before a model is loaded
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    runtime = is_artifact(cfg.checkpoint) or bool(cfg.backend and _plugin_of(cfg.backend) != "pytorch")
    if runtime:
        if not is_artifact(cfg.checkpoint):
            raise FcbenchError(f"eval --video --backend {cfg.backend} runs a split pair of artifacts; convert "
                               f"{cfg.checkpoint} with --split-at {gate.layer} and give the front")
        det, gate = _runtime(cfg, gate_values)
    else:
        det = _eager(cfg, gate)
    try:
        pre = replace(det.preprocessing, layout="NCHW")
        dataset = open_dataset(cfg.data, preprocessing=pre, **cfg.data_options)
        check_video_data(dataset)
        k = int(det.detection["num_classes"])
        if k != int(dataset.num_classes):
            raise FcbenchError(f"eval: the detector has {k} classes ({', '.join(det.detection['class_names'][:5])}) "
                               f"but '{dataset.source}' has {dataset.num_classes} "
                               f"({', '.join(map(str, dataset.class_names[:5]))}); evaluate on the data it was "
                               "trained for")
        comparison = compare_gating(det.front, det.back, det.decode, dataset, gate, num_classes=k,
                                    class_names=det.detection.get("class_names"),
                                    progress=lambda d, t: hooks.progress("eval --video", d, t, ""))
    finally:
        det.close()
    result = VideoEvalResult(checkpoint=str(cfg.checkpoint), model=det.model, dataset=str(dataset.source),
                             backend=det.label, comparison=comparison, artifacts=det.artifacts)
    threads = cfg.threads or torch.get_num_threads()
    for mode, fig in (("ungated", comparison.ungated), ("gated", comparison.gated)):
        gated = mode == "gated"
        hashed = {**det.runtime_options, "video": mode, **({"gate": gate_dict(comparison.gate)} if gated else {})}
        extra: dict[str, Any] = {
            "gating": gate_dict(comparison.gate) if gated else None, "frames": fig.frames,
            "frames_skipped": fig.skipped, "skipped_fraction": fig.skipped_fraction,
            "scored_frames": comparison.scored_frames, "sequences": comparison.sequences,
            "ms_per_frame": fig.ms_per_frame, "ms_per_stage": fig.stage_ms,
            **({"label": cfg.label} if cfg.label else {}),
            **({"split_artifacts": det.artifacts} if runtime else {})}
        if gated:
            extra.update(ms_saved_per_frame=comparison.ms_saved_per_frame,
                         time_saved_fraction=comparison.time_saved_fraction)
        common = dict(model=det.model, lineage=det.lineage, artifact=det.artifact, artifact_sha256=det.sha256,
                      format=det.format, backend=det.backend, variant=det.variant, profile=det.profile,
                      options_hash=options_hash(hashed), threads=threads, batch=1, input_shape=det.input_shape,
                      dataset=result.dataset, protocol=PROTOCOL + ("+gate" if gated else ""))
        for metric, value in fig.metrics.items():
            row_extra = dict(extra)
            if gated and metric in comparison.ungated.metrics:
                row_extra.update(ungated_value=comparison.ungated.metrics[metric],
                                 delta=value - comparison.ungated.metrics[metric])
            result.rows.append(ctx.row("quality", metric=metric, value=float(value), extra=row_extra, **common))
        ms = fig.frame_ms
        result.rows.append(ctx.row(
            "speed", metric="ms_per_frame", runs=int(len(ms)), warmup=2, samples_ms=[float(v) for v in ms],
            mean_ms=float(ms.mean()) if len(ms) else None, std_ms=float(ms.std()) if len(ms) else None,
            min_ms=float(ms.min()) if len(ms) else None,
            **({f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)} if len(ms) else {}),
            extra={**extra, "status": "ok", "video": True}, **common))
    return result
