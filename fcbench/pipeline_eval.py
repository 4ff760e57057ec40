"""``fcbench eval --pipeline DET,EMB --gallery DIR --probe VIDEO|DIR``: detect -> crop/align -> embed -> identify.

Two models, each in its own runtime: a detector (a checkpoint in PyTorch, or the front of a split pair from
``fcbench convert DET --split-at M`` through a runtime's two sessions, as for ``eval --video``) and a face
embedder (a checkpoint in PyTorch, or any converted embedding artifact). ``--backend DET_BACKEND,EMB_BACKEND``
names one runtime per stage (one name serves both; ``pytorch`` keeps a checkpoint eager).

**Gallery** (``--gallery DIR``): one folder per identity, the folder's name the identity, its photos (face
images, as ``imagefolder`` reads them) enrolled by the embedder (one photo a person in the dissertation's
protocol; an identity with several scores its best). A folder named ``distractors`` (:data:`DISTRACTORS`)
is not an identity: its photos (flat or in sub-folders) are face photos of people *not* enrolled, embedded
as they are and used as distractor probes of the open-set metrics (the dissertation used >= 500).
:func:`write_synthetic_gallery` writes such a folder for the synthetic identities.

**Probe** (``--probe``): a video set (``synthetic:video``, ``video:FILE``, ``cdnet:DIR`` or a path
``open_dataset`` recognises, with ``--data-opt``) or a folder of frames (image files, in name order). Every
frame runs through :func:`fcbench.detection.pipeline.identify` (no motion gate) and is timed per stage
(``preprocess``, ``front``, ``back``, ``decode``, ``align``, ``embed``, ``match``; ``gate`` is 0 here).
Where the probe has ground truth with identities (``synthetic:video``'s faces: identity ``k`` is the
gallery folder named ``k``), the faces found become probes (:func:`~fcbench.detection.pipeline.probe_set`,
IoU >= 0.5): a face whose identity has no gallery folder is a distractor, as is every photo of
``distractors``. Then:

* ``dir@fpir=1e-01``: open-set identification, DIR at FPIR = 0.1 (TAR at FAR = 10 %);
* ``fnmr@fmr=1e-04``: FNMR at FMR = 1e-4 over every probe x gallery comparison.

A metric the data cannot support (too few distractors for the FPIR, too few impostor comparisons for the
FMR, no ground truth, no detected face on a true one) is reported **n/a with the metric's own reason**
(``result.unavailable``), and the run goes on: the per-frame times are still measured. No row is stored
for a metric that is n/a.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.detection.pipeline import IDENTIFY_STAGES, ArrayFn, Detector, Embedder, Gallery, IdentifyRun, identify
from fcbench.errors import FcbenchError
from fcbench.threads import restores_torch_threads

PROTOCOL = "identification+pipeline"
DISTRACTORS = "distractors"  # the gallery's sub-folder of distractor photos (not an identity)
FPIR = 0.1
FMR = 1e-4
STAGES = tuple(s for s in IDENTIFY_STAGES if s != "gate")  # no motion gate here: its time is always 0
DISTRACTOR_LABEL = "~distractor"  # the label of every distractor photo: never a gallery folder's name


# ----------------------------------------------------------------------------------------------- gallery


@dataclass
class GalleryPhotos:
    """What a gallery folder holds: enrolled photos with their identity (folder name) and distractor photos."""

    root: Path
    photos: list[np.ndarray]
    labels: list[str]
    distractors: list[np.ndarray]

    @property
    def identities(self) -> int:
        return len(set(self.labels))


def read_gallery(folder: str | Path) -> GalleryPhotos:
    """Read ``folder`` (see the module docstring); an empty, missing or unreadable one is one line."""
    from fcbench.data.base import read_image_file
    from fcbench.data.imagefolder import _class_dirs, _images_under

    root = Path(folder)
    if not root.is_dir():
        raise FcbenchError(f"eval --pipeline: gallery {root} is not a folder; give a folder with one sub-folder per "
                           f"identity holding its photo(s) (and optionally {DISTRACTORS}/)")
    try:
        dirs = _class_dirs(root)
    except OSError as exc:
        raise FcbenchError(f"eval --pipeline: gallery {root} cannot be read ({exc.strerror or exc})") from exc
    photos, labels, distractors = [], [], []
    for d in dirs:
        files = _images_under(d)
        images = [read_image_file(f) for f in files]  # an unreadable image is one line naming it
        if d.name == DISTRACTORS:
            distractors.extend(images)
        else:
            photos.extend(images)
            labels.extend([d.name] * len(images))
    if not photos:
        raise FcbenchError(f"eval --pipeline: gallery {root} enrols nobody: no identity folder with a photo "
                           "(.jpg .jpeg .png .bmp) in it; put each person's photo(s) in DIR/<identity>/")
    return GalleryPhotos(root=root, photos=photos, labels=labels, distractors=distractors)


def write_synthetic_gallery(folder: str | Path, enrolled: int = 6, distractors: int = 500, photos: int = 1,
                            seed: int = 0, latent_dim: int = 32, size: int = 64) -> Path:
    """A gallery folder for ``synthetic:video`` (same ``seed`` and ``latent_dim``): identities ``0 ..
    enrolled-1`` of ``synthetic:faces`` with ``photos`` photos each in ``FOLDER/<k>/``, and ``distractors``
    faces of other identities (never in any video: identity 2**30 + j) in ``FOLDER/distractors/``, as
    ``size`` x ``size`` PNGs. Returns the folder. A video with ``identities`` > ``enrolled`` shows people
    who are not enrolled: distractors too."""
    from PIL import Image

    from fcbench.data import open_dataset
    from fcbench.data.preprocess import Preprocessing

    if enrolled < 1 or distractors < 0 or photos < 1:
        raise FcbenchError("write_synthetic_gallery: enrolled and photos must be >= 1, distractors >= 0")
    root = Path(folder)
    pre = Preprocessing(size=(size, size))
    faces = open_dataset("synthetic:faces", preprocessing=pre, num_classes=max(2, enrolled),
                         samples_per_class=photos, seed=seed, latent_dim=latent_dim, split="test")
    for i in range(enrolled * photos):
        d = root / str(faces.label(i))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.rgb(i)).save(d / f"{i % photos}.png")
    if distractors:
        others = faces.with_identities([(1 << 30) + j for j in range(distractors)], samples_per_class=1)
        d = root / DISTRACTORS
        d.mkdir(parents=True, exist_ok=True)
        for j in range(distractors):
            Image.fromarray(others.rgb(j)).save(d / f"{j:05d}.png")
    return root


# ------------------------------------------------------------------------------------------------ probe


@dataclass
class Probe:
    """The probe frames (RGB uint8 HWC, in play order) and, where the data has them, each frame's faces:
    normalised boxes and identities (as strings, the gallery's folder names)."""

    source: str
    frames: Callable[[], Any]  # a fresh iterator over the frames
    count: int
    truth_boxes: list[np.ndarray] | None = None
    truth_ids: list[np.ndarray] | None = None


def open_probe(spec: str, options: Mapping[str, Any] | None = None) -> Probe:
    """``spec``: a folder of frames (image files), or a video set ``open_dataset`` opens (its ``--data-opt``
    ``options``). Ground truth faces come from data whose boxes have identities (``identities(i)``) and a
    ``face`` class."""
    from fcbench.data import open_dataset
    from fcbench.data.base import read_image_file
    from fcbench.data.detection import DetectionImages
    from fcbench.data.imagefolder import _is_image
    from fcbench.data.preprocess import Preprocessing

    p = Path(spec)
    if p.is_dir() and not options and any(_is_image(f.name) for f in p.iterdir() if f.is_file()):
        files = sorted(f for f in p.iterdir() if f.is_file() and _is_image(f.name))
        return Probe(source=str(p), frames=lambda: (read_image_file(f) for f in files), count=len(files))
    ds = open_dataset(spec, preprocessing=Preprocessing(size=(64, 64)), **dict(options or {}))
    if not isinstance(ds, DetectionImages):
        raise FcbenchError(f"eval --pipeline: probe '{getattr(ds, 'source', spec)}' is not a video or frames; give a "
                           "video set (synthetic:video, video:FILE, cdnet:DIR) or a folder of frames")
    order = [i for s in ds.sequences() for i in s] or list(range(len(ds)))
    if not order:
        raise FcbenchError(f"eval --pipeline: probe '{ds.source}' has no frames")
    boxes = ids = None
    names = [str(n) for n in (ds.class_names or [])]
    if hasattr(ds, "identities") and "face" in names:
        face = names.index("face")
        boxes, ids = [], []
        for i in order:
            t = ds.normalised_target(i)
            who = np.asarray(ds.identities(i))
            keep = (t["labels"].numpy() == face) & (who >= 0)
            boxes.append(t["boxes"].numpy()[keep])
            ids.append(np.asarray([str(int(k)) for k in who[keep]]))
    return Probe(source=str(ds.source), frames=lambda: (ds.rgb(i) for i in order), count=len(order),
                 truth_boxes=boxes, truth_ids=ids)


# ------------------------------------------------------------------------------------------------ stages


@dataclass
class Stage:
    """One model of the pipeline, however it was loaded: what it is, where it runs."""

    model: str
    artifact: str
    sha256: str
    format: str
    backend: str  # plugin
    variant: str
    label: str  # plugin:variant or the profile, as shown
    lineage: str
    input_shape: str
    runtime_options: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None

    def info(self) -> dict[str, Any]:
        return {"model": self.model, "artifact": self.artifact, "format": self.format, "backend": self.label}


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _is_pt(path: str) -> bool:
    from fcbench.formats import is_artifact

    return not is_artifact(path)


def load_detector(path: str, backend: str | None, threads: int | None, infer_manifest: bool = False
                  ) -> tuple[Detector, Stage, list[str]]:
    """The detector ``path`` (a checkpoint, eager; or a split pair's front in ``backend``) as a
    :class:`Detector` keeping only its ``face`` class (every class of a one-class detector), with its
    :class:`Stage`; the class names."""
    from fcbench.artifact import task_of
    from fcbench.benchmark.run import BenchConfig, load_artifact
    from fcbench.detection.gating import GateOptions
    from fcbench.options import EvalConfig
    from fcbench.video_eval import _eager, _runtime

    cfg = EvalConfig(checkpoints=[path], backends=[backend] if backend else [], threads=threads,
                     infer_manifest=infer_manifest)
    cfg = replace(cfg, checkpoint=path, backend=backend)
    if not Path(path).exists():
        raise FcbenchError(f"eval --pipeline: detector {path} does not exist; check the path")
    if _is_pt(path):
        if backend and not backend.startswith("pytorch"):
            raise FcbenchError(f"eval --pipeline: detector {Path(path).name} is a checkpoint and runs in PyTorch; "
                               f"--backend {backend} runs converted artifacts (convert it with --split-at M and "
                               "give the front), or name pytorch for it")
        from fcbench.evaluation import load_for_eval

        model, _ = load_for_eval(cfg)
        if getattr(model, "fcbench_task", None) != "detection" or not hasattr(model, "split_at"):
            raise FcbenchError(f"eval --pipeline: {Path(path).name} is {_a(getattr(model, 'fcbench_task', 'model'))} "
                               "model, not a detector: its output is no detections; give the detector first "
                               "(--pipeline DET,EMB)")
        d = _eager(cfg, GateOptions(), verb="eval --pipeline")
    else:
        _, manifest = load_artifact(Path(path), BenchConfig(artifacts=[path], infer_manifest=infer_manifest))
        if task_of(manifest.output_kind) != "detection":
            raise FcbenchError(f"eval --pipeline: {Path(path).name} gives {manifest.output_kind}, not detections: it "
                               "is no detector; give the detector first (--pipeline DET,EMB)")
        d, _ = _runtime(cfg, {}, verb="eval --pipeline")
    names = [str(n) for n in (d.detection.get("class_names") or [])]
    if "face" in names:
        face = names.index("face")
    elif int(d.detection.get("num_classes", 1)) == 1:
        face = None
    else:
        d.close()
        raise FcbenchError(f"eval --pipeline: detector {Path(path).name} has no 'face' class (classes: "
                           f"{', '.join(names)}); give a face detector (or one with a class named face)")
    decode = d.decode

    def faces_only(raw: Any) -> Any:
        out = decode(raw)
        if face is None:
            return out
        keep = np.asarray(out[2]).reshape(-1) == face
        return tuple(None if o is None else np.asarray(o)[keep] for o in out)

    pre = replace(d.preprocessing, layout="NCHW")
    stage = Stage(model=d.model, artifact=d.artifact, sha256=d.sha256, format=d.format, backend=d.backend,
                  variant=d.variant, label=d.label, lineage=d.lineage, input_shape=d.input_shape,
                  runtime_options=d.runtime_options, close=d.close)
    return Detector(front=d.front, back=d.back, decode=faces_only, preprocess=pre.apply), stage, names


def load_embedder(path: str, backend: str | None, threads: int | None, infer_manifest: bool = False
                  ) -> tuple[Embedder, Stage]:
    """The face embedder ``path`` (a checkpoint, eager; or an embedding artifact in ``backend``, default the
    format's own runtime) as an :class:`Embedder` taking crops of its input size, with its :class:`Stage`."""
    import torch

    from fcbench import formats
    from fcbench.artifact import task_of
    from fcbench.benchmark.run import BenchConfig, load_artifact
    from fcbench.evaluation import _RuntimeModel, load_for_eval
    from fcbench.options import EvalConfig

    p = Path(path)
    if not p.exists():
        raise FcbenchError(f"eval --pipeline: embedder {path} does not exist; check the path")
    if _is_pt(path):
        if backend and not backend.startswith("pytorch"):
            raise FcbenchError(f"eval --pipeline: embedder {p.name} is a checkpoint and runs in PyTorch; --backend "
                               f"{backend} runs converted artifacts (convert it first), or name pytorch for it")
        model, manifest = load_for_eval(replace(EvalConfig(checkpoints=[path]), checkpoint=path))
        name = getattr(model, "fcbench_name", type(model).__name__)
        if getattr(model, "fcbench_task", None) != "embedding":
            raise FcbenchError(f"eval --pipeline: {p.name} ({name}) is {_a(getattr(model, 'fcbench_task', 'model'))} "
                               "model, not a face embedder; give the embedder second (--pipeline DET,EMB)")
        pre = replace(model.preprocessing, layout="NCHW")
        model.eval()

        def embed(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.as_tensor(np.asarray(x, np.float32))).float().numpy()

        h, w = pre.size
        stage = Stage(model=name, artifact=path, sha256=manifest.sha256 if manifest else "", format="fcbench-ckpt",
                      backend="pytorch", variant="eager", label="pytorch:eager",
                      lineage=manifest.lineage_summary() if manifest else "", input_shape=f"1x3x{h}x{w}")
        return Embedder(embed=embed, preprocess=pre.apply, size=(int(h), int(w))), stage
    p, manifest = load_artifact(p, BenchConfig(artifacts=[path], infer_manifest=infer_manifest))
    if task_of(manifest.output_kind) != "embedding":
        raise FcbenchError(f"eval --pipeline: {p.name} gives {manifest.output_kind}, not embeddings: it is no face "
                           "embedder; give the embedder second (--pipeline DET,EMB)")
    h, w = (int(s) for s in manifest.preprocessing.size)
    shape = [int(d) for d in manifest.inputs[0].shape]
    layout = manifest.inputs[0].layout
    want = [3, h, w] if layout == "NCHW" else [h, w, 3]
    if len(shape) != 4 or shape[1:] != want:
        raise FcbenchError(f"eval --pipeline: embedder {p.name} takes input {'x'.join(map(str, shape))} ({layout}) "
                           f"but the face crops are {h}x{w} RGB ({'x'.join(map(str, ['N', *want]))}); convert the "
                           "embedder again from its checkpoint")
    label = backend or formats.default_backend(manifest)
    if label is None:
        raise FcbenchError(f"eval --pipeline: no default backend for format {manifest.format}; pass --backend")
    runtime = _RuntimeModel(p, manifest, label, threads)

    def embed_rt(x: np.ndarray) -> np.ndarray:
        return runtime(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))

    pre = replace(manifest.preprocessing, layout="NCHW")  # _RuntimeModel transposes for an NHWC artifact
    stage = Stage(model=manifest.model.get("name", p.stem), artifact=str(p), sha256=manifest.sha256,
                  format=manifest.format, backend=runtime.plugin, variant=runtime.variant, label=runtime.label,
                  lineage=manifest.lineage_summary(), input_shape="x".join(map(str, shape)),
                  runtime_options=runtime.options, close=runtime.close)
    return Embedder(embed=embed_rt, preprocess=pre.apply, size=(h, w)), stage


# ------------------------------------------------------------------------------------------------ core


@dataclass
class PipelineFigures:
    """What :func:`identify_and_score` measured."""

    run: IdentifyRun
    gallery_labels: np.ndarray
    probes: int  # probes scored: faces found on ground-truth faces plus distractor photos
    mated: int  # of which enrolled
    distractors: int  # of which not enrolled (distractor photos and faces of people not enrolled)
    distractor_photos: int
    metrics: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it is n/a

    @property
    def stage_ms(self) -> dict[str, float]:
        r = self.run
        return {s: float(r.times[s].mean() * 1e3) if r.frames else 0.0 for s in STAGES}

    @property
    def frame_ms(self) -> np.ndarray:
        return np.sum([self.run.times[s] for s in STAGES], axis=0) * 1e3 if self.run.frames else np.zeros(0)


def identify_and_score(detector: Detector, embedder: Embedder, photos: GalleryPhotos, probe: Probe,
                       min_score: float = 0.5, warmup: int = 1, fpir: float = FPIR, fmr: float = FMR
                       ) -> PipelineFigures:
    """Enrol the gallery, run every probe frame through :func:`identify` (``warmup`` untimed frames first),
    and score the open-set metrics where the probe has ground truth; see the module docstring."""
    import fcbench.metrics.identification as ident
    from fcbench.detection.pipeline import probe_set

    def embed_photos(images: list[np.ndarray]) -> np.ndarray:
        out = []
        for k in range(0, len(images), 64):
            batch = np.stack([np.asarray(embedder.preprocess(im)) for im in images[k:k + 64]])
            out.append(np.asarray(embedder.embed(batch), dtype=np.float32))
        return np.concatenate(out)

    labels = np.asarray(photos.labels)
    gallery = Gallery(embed_photos(photos.photos), labels)
    if warmup:
        first = next(iter(probe.frames()), None)
        if first is not None:
            for _ in range(int(warmup)):
                identify([first], detector, embedder, gallery, min_score=min_score)
    run = identify(probe.frames(), detector, embedder, gallery, min_score=min_score)
    figures = PipelineFigures(run=run, gallery_labels=labels, probes=0, mated=0, distractors=0,
                              distractor_photos=len(photos.distractors))
    if probe.truth_boxes is None:
        why = f"the probe '{probe.source}' has no ground-truth faces with identities"
        figures.unavailable = {f"dir@fpir={ident.far_label(fpir)}": why, f"fnmr@fmr={ident.far_label(fmr)}": why}
        return figures
    embs, ids = [], []
    try:
        e, who = probe_set(run, probe.truth_boxes, probe.truth_ids)
        embs.append(e)
        ids.extend(str(w) for w in who)
    except FcbenchError as exc:  # no face found on a true one: the distractor photos alone score nothing mated
        why = str(exc)
        figures.unavailable = {f"dir@fpir={ident.far_label(fpir)}": why, f"fnmr@fmr={ident.far_label(fmr)}": why}
    if photos.distractors:
        embs.append(embed_photos(photos.distractors))
        ids.extend([DISTRACTOR_LABEL] * len(photos.distractors))
    pl = np.asarray(ids)
    enrolled = set(photos.labels)
    figures.probes = len(pl)
    figures.mated = int(sum(i in enrolled for i in ids))
    figures.distractors = figures.probes - figures.mated
    if figures.unavailable:
        return figures
    scores = ident.similarity_matrix(np.concatenate(embs), gallery.embeddings)
    for name, fn in ((f"dir@fpir={ident.far_label(fpir)}", lambda: ident.dir_at_fpir(scores, labels, pl, fpir)),
                     (f"fnmr@fmr={ident.far_label(fmr)}", lambda: ident.fnmr_at_fmr_matrix(scores, labels, pl, fmr))):
        try:
            figures.metrics.update({k: float(v) for k, v in fn().to_rows()})
        except FcbenchError as exc:
            figures.unavailable[name] = str(exc)
    return figures


# ------------------------------------------------------------------------------------------- the eval verb


@dataclass
class PipelineEvalResult:
    """What ``fcbench eval --pipeline`` measured; ``to_rows()``: a quality row per metric (protocol
    ``identification+pipeline``) and speed rows: ``ms_per_frame`` (all stages) and ``ms_<stage>`` per stage."""

    detector: Stage
    embedder: Stage
    gallery: str
    probe: str
    figures: PipelineFigures
    identities: int
    notes: list[str] = field(default_factory=list)
    rows: list[Any] = field(default_factory=list)

    def to_rows(self) -> list[Any]:
        return list(self.rows)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.figures.metrics)

    @property
    def unavailable(self) -> dict[str, str]:
        return dict(self.figures.unavailable)

    @property
    def backends(self) -> str:
        return f"{self.detector.label} + {self.embedder.label}"

    def matches(self) -> list[list[tuple[Any, float]]]:
        """Per frame: (gallery identity, cosine similarity) of each face found, by detection score."""
        return [[(m.label, m.similarity) for m in sorted(f, key=lambda m: -m.score)] for f in self.figures.run.matches]

    def summary(self) -> dict[str, Any]:
        f = self.figures
        ms = f.frame_ms
        return {"detector": self.detector.info(), "embedder": self.embedder.info(), "gallery": self.gallery,
                "probe": self.probe, "identities": self.identities, "distractor_photos": f.distractor_photos,
                "frames": f.run.frames, "faces": int(sum(len(m) for m in f.run.matches)), "probes": f.probes,
                "mated": f.mated, "distractors": f.distractors, "metrics": f.metrics,
                "unavailable": f.unavailable,
                "similarities": [sorted((round(m.similarity, 6) for m in frame), reverse=True)
                                 for frame in f.run.matches],
                "ms_per_frame": float(ms.mean()) if len(ms) else 0.0,
                "ms_per_stage": f.stage_ms, "notes": self.notes}

    def table(self) -> list[dict[str, Any]]:
        """One line per stage and one for the whole frame: mean milliseconds per frame."""
        f = self.figures
        rows = [{"stage": s, "runs in": (self.detector.label if s in ("front", "back")
                                          else self.embedder.label if s == "embed" else "numpy"),
                 "ms/frame": v} for s, v in f.stage_ms.items()]
        ms = f.frame_ms
        rows.append({"stage": "frame", "runs in": self.backends, "ms/frame": float(ms.mean()) if len(ms) else 0.0})
        return rows


def check_pipeline_config(cfg: Any) -> None:
    """What ``--pipeline`` needs and does not combine with, refused before any work."""
    if len(cfg.pipeline) != 2:
        raise FcbenchError(f"--pipeline takes two models, DET,EMB (a detector and a face embedder); got "
                           f"{len(cfg.pipeline)}: {','.join(cfg.pipeline)}")
    if cfg.checkpoints:
        raise FcbenchError("eval --pipeline names its models in --pipeline DET,EMB; drop the positional "
                           f"{' '.join(cfg.checkpoints)}")
    if not cfg.gallery or not cfg.probe:
        raise FcbenchError("eval --pipeline needs --gallery DIR (one folder per identity) and --probe VIDEO|DIR")
    if len(cfg.backends) > 2:
        raise FcbenchError("eval --pipeline: --backend takes one runtime per stage (DET_BACKEND,EMB_BACKEND) or one "
                           "for both")
    for on, what in ((cfg.video, "--video"), (bool(cfg.gate), "--gate"), (cfg.max_drop is not None, "--max-drop"),
                     (cfg.roc is not None, "--roc"), (cfg.flip, "--flip"), (bool(cfg.device), "--device"),
                     (bool(cfg.model), "--model")):
        if on:
            raise FcbenchError(f"eval --pipeline does not take {what}; drop it")
    if cfg.protocol not in ("auto", "identification"):
        raise FcbenchError(f"eval --pipeline scores open-set identification; --protocol {cfg.protocol} does not apply")


@dataclass
class PipelineBenchResult:
    """``eval --pipeline`` over several backend combinations (``--backend all``, or ``all`` for one stage): one
    :class:`PipelineEvalResult` per (detector backend, embedder backend) pair that ran, and why the others
    did not; ``to_rows()`` all of their rows."""

    results: list[PipelineEvalResult]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (detector backend, embedder backend, why)

    @property
    def rows(self) -> list[Any]:
        return [r for res in self.results for r in res.rows]

    @property
    def notes(self) -> list[str]:
        return [f"{d} + {e}: skipped: {why}" for d, e, why in self.skipped]

    def to_rows(self) -> list[Any]:
        return self.rows

    def table(self) -> list[dict[str, Any]]:
        """One line per combination: the backends, ms per frame in all and per stage, the metrics."""
        out = []
        for res in self.results:
            s = res.summary()
            out.append({"detector": res.detector.label, "embedder": res.embedder.label, "ms/frame": s["ms_per_frame"],
                        **{f"ms {k}": v for k, v in s["ms_per_stage"].items()},
                        **{k: s["metrics"].get(k) for k in (f"dir@fpir={_far(FPIR)}", f"fnmr@fmr={_far(FMR)}")}})
        return out

    def summary(self) -> dict[str, Any]:
        return {"combinations": [r.summary() for r in self.results],
                "skipped": [{"detector": d, "embedder": e, "why": w} for d, e, w in self.skipped]}


def _far(value: float) -> str:
    from fcbench.metrics.identification import far_label

    return far_label(value)


def stage_backends(path: str, named: str | None, infer_manifest: bool = False) -> list[str | None]:
    """The runtimes one stage runs in: ``named`` (None: the default), or with ``all`` every installed
    backend and variant that can run the artifact here (a checkpoint: PyTorch only)."""
    from fcbench.backends import expand, why_not
    from fcbench.benchmark.run import BenchConfig, load_artifact

    if named != "all":
        return [named]
    if _is_pt(path):
        return [None]
    if not Path(path).exists():
        raise FcbenchError(f"eval --pipeline: {path} does not exist; check the path")
    p, manifest = load_artifact(Path(path), BenchConfig(artifacts=[path], infer_manifest=infer_manifest))
    ok = [spec.label for spec in expand(["all"]) if not why_not(spec, p, manifest)[1]]
    if not ok:
        raise FcbenchError(f"eval --pipeline: no installed backend runs {p.name} ({manifest.format}) here")
    return list(ok)


@restores_torch_threads
def evaluate_pipeline(cfg: Any, ctx: Any = None, hooks: Any = None) -> PipelineEvalResult | PipelineBenchResult:
    """``fcbench eval --pipeline DET,EMB --gallery DIR --probe VIDEO|DIR``: see the module docstring. ``cfg`` is an
    :class:`~fcbench.options.EvalConfig` with ``pipeline``, ``gallery`` and ``probe`` set. With ``all`` for a
    stage's backend: a :class:`PipelineBenchResult`, one run per backend combination (a combination a
    backend cannot run is skipped with its reason)."""
    import torch

    from fcbench.errors import NotApplicable
    from fcbench.results.context import RunContext

    check_pipeline_config(cfg)
    ctx = ctx or RunContext()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    det_path, emb_path = cfg.pipeline
    backends = list(cfg.backends) or [None]
    det_backend, emb_backend = (backends * 2)[:2] if len(backends) == 1 else backends
    photos = read_gallery(cfg.gallery)
    probe = open_probe(cfg.probe, cfg.data_options)
    if "all" not in (det_backend, emb_backend):
        return _run_one(cfg, ctx, det_backend, emb_backend, photos, probe)
    combos = [(d, e) for d in stage_backends(det_path, det_backend, cfg.infer_manifest)
              for e in stage_backends(emb_path, emb_backend, cfg.infer_manifest)]
    bench = PipelineBenchResult(results=[])
    for d, e in combos:
        try:
            bench.results.append(_run_one(cfg, ctx, d, e, photos, probe))
        except NotApplicable as exc:
            bench.skipped.append((d or "pytorch:eager", e or "pytorch:eager", str(exc)))
    if not bench.results:
        raise FcbenchError("eval --pipeline: no backend combination ran: " + "; ".join(bench.notes))
    return bench


def _run_one(cfg: Any, ctx: Any, det_backend: str | None, emb_backend: str | None, photos: GalleryPhotos,
             probe: Probe) -> PipelineEvalResult:
    import torch

    from fcbench.results.store import options_hash

    det_path, emb_path = cfg.pipeline
    detector, dstage, _ = load_detector(det_path, det_backend, cfg.threads, cfg.infer_manifest)
    try:
        embedder, estage = load_embedder(emb_path, emb_backend, cfg.threads, cfg.infer_manifest)
        try:
            figures = identify_and_score(detector, embedder, photos, probe, min_score=cfg.min_score)
        finally:
            estage.close()
    finally:
        dstage.close()
    result = PipelineEvalResult(detector=dstage, embedder=estage, gallery=str(photos.root), probe=probe.source,
                                figures=figures, identities=photos.identities)
    threads = cfg.threads or torch.get_num_threads()
    extra: dict[str, Any] = {
        "gallery": str(photos.root), "gallery_identities": photos.identities, "gallery_photos": len(photos.photos),
        "distractor_photos": len(photos.distractors), "probes": figures.probes, "mated": figures.mated,
        "distractors": figures.distractors, "frames": figures.run.frames, "min_score": cfg.min_score,
        "faces": int(sum(len(m) for m in figures.run.matches)),
        "backends": {"detector": dstage.label, "embedder": estage.label},
        "embedder": {"model": estage.model, "artifact": estage.artifact, "sha256": estage.sha256,
                     "format": estage.format, "lineage": estage.lineage, "input_shape": estage.input_shape},
        "ms_per_stage": figures.stage_ms, "unavailable": figures.unavailable,
        **({"label": cfg.label} if cfg.label else {})}
    common = dict(model=f"{dstage.model}+{estage.model}", lineage=dstage.lineage, artifact=dstage.artifact,
                  artifact_sha256=dstage.sha256, format=f"{dstage.format}+{estage.format}",
                  backend=f"{dstage.backend}+{estage.backend}", variant=f"{dstage.variant}+{estage.variant}",
                  profile="", threads=threads, batch=1, input_shape=dstage.input_shape, dataset=probe.source,
                  protocol=PROTOCOL,
                  options_hash=options_hash({"min_score": cfg.min_score, "detector": dstage.runtime_options,
                                             "embedder": estage.runtime_options,
                                             "embedder_artifact": estage.sha256 or estage.artifact}))
    for metric, value in figures.metrics.items():
        result.rows.append(ctx.row("quality", metric=metric, value=float(value), extra=dict(extra), **common))
    series = {"ms_per_frame": figures.frame_ms, **{f"ms_{s}": figures.run.times[s] * 1e3 for s in STAGES}}
    for metric, ms in series.items():
        ms = np.asarray(ms, dtype=np.float64)
        result.rows.append(ctx.row(
            "speed", metric=metric, runs=int(len(ms)), warmup=1, samples_ms=[float(v) for v in ms],
            mean_ms=float(ms.mean()) if len(ms) else None, std_ms=float(ms.std()) if len(ms) else None,
            min_ms=float(ms.min()) if len(ms) else None,
            **({f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)} if len(ms) else {}),
            extra={**extra, "status": "ok", "pipeline": True, "stage": metric[3:] if metric != "ms_per_frame"
                   else "frame"}, **common))
    return result


__all__ = ["PROTOCOL", "DISTRACTORS", "PipelineEvalResult", "PipelineBenchResult", "evaluate_pipeline",
           "identify_and_score", "read_gallery", "write_synthetic_gallery", "open_probe", "load_detector",
           "load_embedder", "stage_backends", "ArrayFn"]
