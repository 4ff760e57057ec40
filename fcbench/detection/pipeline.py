"""Run a (motion-gated) detector over a video, and the detect -> crop/align -> embed -> identify pipeline.

Everything here takes plain callables on numpy arrays, so the same code runs a torch module (wrap it with
:func:`numpy_callable`), an ONNX Runtime / OpenVINO / TFLite session's ``run``, or anything else, and the
caller (``fcbench eval --video``, ``--pipeline``) wires artifacts and runtimes to it.

**The gated video runner** (:func:`run_video`). The detector is split in two at the gating layer ``m``:
``front(frame) -> feature map`` (the backbone up to ``m``) and ``back(feature map) -> raw output`` (the
rest of the backbone and the head); ``decode(raw) -> (boxes, scores, labels[, landmarks])`` turns the raw
output into normalised ``x1, y1, x2, y2`` boxes (anchors, box decoding and NMS: whatever the runtime did not
do inside the graph). Two callables rather than one model with two outputs, because the point of gating is
*not running* the back: a single graph computes both. Each frame runs ``front``; with a
:class:`~fcbench.detection.gating.MotionGate` the gate decides whether ``back`` and ``decode`` run and
filters the boxes of frames that do; a skipped frame has no detections (the gate's docstring says why).
Without a gate every frame runs front, back and decode. Times are taken per frame and per stage
(``front``, ``gate`` (the decision and the box filter), ``back``, ``decode``) with ``clock``, so the saving
is measured, not estimated; a stage that did not run costs 0.

**Identification** (:func:`identify`). Per frame: ``detector.preprocess`` makes the detector's input from
the RGB frame, the (optionally gated) detector gives boxes, each face is cut out by
:func:`~fcbench.detection.align.align` when the detector gives 5 landmarks, else by
:func:`~fcbench.detection.align.crop` around its box, the crops of a frame are embedded in one batch, and
each embedding is matched by cosine similarity against the gallery: the best identity (its best image)
is the answer when its similarity reaches ``gallery.threshold``, else the face is unknown (``label`` None).
Stages timed: ``preprocess``, ``front``, ``gate``, ``back``, ``decode``, ``align``, ``embed``, ``match``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fcbench.detection.align import ARCFACE_SIZE, align, crop
from fcbench.detection.gating import MotionGate
from fcbench.errors import FcbenchError

VIDEO_STAGES = ("front", "gate", "back", "decode")
IDENTIFY_STAGES = ("preprocess", "front", "gate", "back", "decode", "align", "embed", "match")

ArrayFn = Callable[[Any], Any]


@dataclass
class FrameDetections:
    """One frame's detections: normalised ``[N, 4]`` boxes (x1 y1 x2 y2), ``[N]`` scores and labels, and
    ``[N, 5, 2]`` normalised landmarks when the detector gives them."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> FrameDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def select(self, mask: np.ndarray) -> FrameDetections:
        return FrameDetections(self.boxes[mask], self.scores[mask], self.labels[mask],
                               None if self.landmarks is None else self.landmarks[mask])


def _decoded(out: Any) -> FrameDetections:
    """Check what ``decode`` returned: (boxes, scores, labels) or (boxes, scores, labels, landmarks)."""
    if not isinstance(out, (tuple, list)) or len(out) not in (3, 4):
        got = type(out).__name__ + (f" of {len(out)}" if hasattr(out, "__len__") else "")
        raise FcbenchError("detector: decode must return (boxes, scores, labels) or (boxes, scores, labels, "
                           f"landmarks), got {got}")
    boxes = np.asarray(out[0], dtype=np.float32)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    scores = np.asarray(out[1], dtype=np.float32).reshape(-1)
    labels = np.asarray(out[2]).astype(np.int64).reshape(-1)
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape[0] != n or labels.shape[0] != n:
        raise FcbenchError(f"detector: decode returned boxes {boxes.shape}, scores {scores.shape}, labels "
                           f"{labels.shape}; need [N, 4] normalised x1 y1 x2 y2 boxes and [N] scores and labels")
    if not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))):
        raise FcbenchError("detector: decode returned NaN or inf boxes or scores; check the detector's output "
                           "and its box decoding")
    landmarks = None
    if len(out) == 4 and out[3] is not None:
        landmarks = np.asarray(out[3], dtype=np.float32)
        if landmarks.size == 0:
            landmarks = landmarks.reshape(0, 5, 2)
        if landmarks.shape != (n, 5, 2):
            raise FcbenchError(f"detector: decode returned landmarks of shape {landmarks.shape} for {n} boxes; "
                               "need [N, 5, 2] normalised (x, y)")
    return FrameDetections(boxes, scores, labels, landmarks)


class _GatedDetector:
    """front -> gate -> back -> decode -> box filter for one frame at a time, timing each stage."""

    def __init__(self, front: ArrayFn, back: ArrayFn, decode: ArrayFn, gate: MotionGate | None,
                 clock: Callable[[], float]) -> None:
        for name, fn in (("front", front), ("back", back), ("decode", decode)):
            if not callable(fn):
                raise FcbenchError(f"detector: {name} must be callable, got {type(fn).__name__}")
        if gate is not None and not isinstance(gate, MotionGate):
            raise FcbenchError(f"detector: gate must be a MotionGate or None, got {type(gate).__name__}")
        self.front, self.back, self.decode, self.gate, self.clock = front, back, decode, gate, clock
        if gate is not None:
            gate.reset()

    def __call__(self, x: Any, times: dict[str, float]) -> tuple[FrameDetections, bool, float]:
        t0 = self.clock()
        feature = self.front(x)
        t1 = self.clock()
        times["front"] = t1 - t0
        decision = None
        if self.gate is not None:
            decision = self.gate.step(feature)
            t2 = self.clock()
            times["gate"] = t2 - t1
            if not decision.run_head:
                times["back"] = times["decode"] = 0.0
                return FrameDetections.empty(), False, decision.max_diff
            t1 = t2
        else:
            times["gate"] = 0.0
        raw = self.back(feature)
        t3 = self.clock()
        dets = _decoded(self.decode(raw))
        t4 = self.clock()
        times["back"], times["decode"] = t3 - t1, t4 - t3
        if decision is None:
            return dets, True, float("nan")
        dets = dets.select(self.gate.keep(dets.boxes, decision.diff_map))
        times["gate"] += self.clock() - t4
        return dets, True, decision.max_diff


@dataclass
class VideoRun:
    """What :func:`run_video` measured: per-frame detections, whether the head ran, the gate's ``max Diff``
    (NaN without a gate) and seconds per stage per frame (``times[stage][frame]``)."""

    detections: list[FrameDetections]
    run_head: np.ndarray
    max_diff: np.ndarray
    times: dict[str, np.ndarray]
    gated: bool = False

    @property
    def frames(self) -> int:
        return len(self.detections)

    @property
    def skipped(self) -> int:
        return int((~self.run_head).sum())

    @property
    def skipped_fraction(self) -> float:
        return self.skipped / self.frames if self.frames else 0.0

    def frame_times(self) -> np.ndarray:
        """Seconds per frame, all stages together."""
        return np.sum([self.times[s] for s in self.times], axis=0) if self.frames else np.zeros(0)

    def summary(self) -> dict[str, float]:
        """Frames, frames skipped (count and fraction) and mean milliseconds per frame, in all and per stage."""
        out: dict[str, float] = {"frames": float(self.frames), "skipped": float(self.skipped),
                                 "skipped_fraction": self.skipped_fraction,
                                 "ms_per_frame": float(self.frame_times().mean() * 1e3) if self.frames else 0.0}
        for stage, t in self.times.items():
            out[f"ms_{stage}"] = float(t.mean() * 1e3) if self.frames else 0.0
        return out


def run_video(front: ArrayFn, back: ArrayFn, decode: ArrayFn, frames: Iterable[Any], gate: MotionGate | None = None,
              clock: Callable[[], float] = time.perf_counter) -> VideoRun:
    """Detect in each frame of one video, in play order; see the module docstring.

    ``frames`` yields the front's input for each frame (e.g. a ``[1, 3, H, W]`` float32 array). ``gate`` is
    reset first: one call is one video. ``clock`` returns seconds (``time.perf_counter``; a test may count).
    """
    det = _GatedDetector(front, back, decode, gate, clock)
    detections: list[FrameDetections] = []
    ran: list[bool] = []
    diffs: list[float] = []
    times: dict[str, list[float]] = {s: [] for s in VIDEO_STAGES}
    for x in frames:
        t: dict[str, float] = {}
        d, r, m = det(x, t)
        detections.append(d)
        ran.append(r)
        diffs.append(m)
        for s in VIDEO_STAGES:
            times[s].append(t[s])
    return VideoRun(detections=detections, run_head=np.asarray(ran, dtype=bool),
                    max_diff=np.asarray(diffs, dtype=np.float64),
                    times={s: np.asarray(v, dtype=np.float64) for s, v in times.items()}, gated=gate is not None)


def numpy_callable(module: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A torch module as a numpy-in, numpy-out callable (eval mode, no autograd), for :func:`run_video`."""
    import torch

    module.eval()

    def run(x: Any) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.as_tensor(np.asarray(x)))
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out

    return run


# ----------------------------------------------------------------------------- detect -> embed -> identify


@dataclass
class Detector:
    """A detector split for gating: ``preprocess(rgb HWC uint8) -> front's input for one frame`` (no batch
    axis: :func:`identify` adds it), ``front``, ``back`` and ``decode`` as for :func:`run_video`."""

    front: ArrayFn
    back: ArrayFn
    decode: ArrayFn
    preprocess: Callable[[np.ndarray], np.ndarray]


@dataclass
class Embedder:
    """``embed([N, ...] batch) -> [N, D]`` embeddings of faces of ``size`` = (height, width);
    ``preprocess(crop HWC uint8) -> one input`` (e.g. ``Preprocessing(size=size).apply``)."""

    embed: ArrayFn
    preprocess: Callable[[np.ndarray], np.ndarray]
    size: tuple[int, int] = ARCFACE_SIZE


@dataclass
class Gallery:
    """Enrolled faces: ``embeddings [G, D]`` with their identity ``labels [G]`` (one photo per person in the
    dissertation's protocol; several are allowed, an identity scores its best photo). A face is identified
    when its best cosine similarity reaches ``threshold`` (e.g. the one :func:`~fcbench.metrics.identification.
    dir_at_fpir` chose), else it is unknown."""

    embeddings: np.ndarray
    labels: np.ndarray
    threshold: float = -1.0

    def __post_init__(self) -> None:
        from fcbench.metrics.verification import _check_finite

        e = np.asarray(self.embeddings)
        if e.ndim != 2 or 0 in e.shape:
            raise FcbenchError(f"gallery: embeddings must be a non-empty [G, D] array, got shape {e.shape}")
        _check_finite(e, "gallery: embeddings")
        labels = np.asarray(self.labels)
        if labels.shape != (e.shape[0],):
            raise FcbenchError(f"gallery: {e.shape[0]} embeddings but labels of shape {labels.shape}")
        norms = np.linalg.norm(e.astype(np.float64), axis=1, keepdims=True)
        self._unit = e.astype(np.float64) / np.where(norms == 0, 1.0, norms)
        self.labels = labels

    @property
    def dim(self) -> int:
        return int(self._unit.shape[1])

    def match(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each row of ``emb``: (index of the best gallery photo, its cosine similarity)."""
        e = np.asarray(emb, dtype=np.float64)
        norms = np.linalg.norm(e, axis=1, keepdims=True)
        sims = (e / np.where(norms == 0, 1.0, norms)) @ self._unit.T
        best = sims.argmax(axis=1)
        return best, sims[np.arange(len(best)), best]


@dataclass
class Match:
    """One face found in a frame: its normalised box and detection score, the gallery identity (None when
    unknown) and the cosine similarity of its best gallery photo."""

    box: np.ndarray
    score: float
    label: Any
    similarity: float
    aligned: bool  # cut out by 5 landmarks (else by the box)
    embedding: np.ndarray | None = None  # the face's embedding, for open-set metrics (probe_set)


@dataclass
class IdentifyRun:
    """What :func:`identify` found and measured: matches per frame, whether the head ran, seconds per stage per
    frame."""

    matches: list[list[Match]]
    run_head: np.ndarray
    times: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.matches)

    def frame_times(self) -> np.ndarray:
        return np.sum([self.times[s] for s in self.times], axis=0) if self.frames else np.zeros(0)

    def summary(self) -> dict[str, float]:
        """Frames, faces, frames skipped and mean milliseconds per frame, in all and per stage."""
        n = self.frames
        out: dict[str, float] = {"frames": float(n), "faces": float(sum(len(m) for m in self.matches)),
                                 "skipped": float((~self.run_head).sum()),
                                 "ms_per_frame": float(self.frame_times().mean() * 1e3) if n else 0.0}
        for stage, t in self.times.items():
            out[f"ms_{stage}"] = float(t.mean() * 1e3) if n else 0.0
        return out


def identify(frames: Iterable[np.ndarray], detector: Detector, embedder: Embedder, gallery: Gallery,
             gate: MotionGate | None = None, margin: float = 0.0, min_score: float = 0.0,
             clock: Callable[[], float] = time.perf_counter) -> IdentifyRun:
    """Find, embed and identify the faces of each RGB uint8 ``HWC`` frame of one video; see the module docstring.

    Boxes scoring below ``min_score`` are left out; ``margin`` grows a box before cropping (not used when
    landmarks align the face).
    """
    det = _GatedDetector(detector.front, detector.back, detector.decode, gate, clock)
    if not callable(detector.preprocess) or not callable(embedder.embed) or not callable(embedder.preprocess):
        raise FcbenchError("identify: the detector's preprocess and the embedder's embed and preprocess "
                           "must be callable")
    size = tuple(int(s) for s in embedder.size)
    matches: list[list[Match]] = []
    ran: list[bool] = []
    times: dict[str, list[float]] = {s: [] for s in IDENTIFY_STAGES}
    for i, rgb in enumerate(frames):
        img = np.asarray(rgb)
        if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or img.dtype != np.uint8:
            raise FcbenchError(f"identify: frame {i} must be an RGB uint8 HWC image, got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        t: dict[str, float] = {}
        t0 = clock()
        x = np.asarray(detector.preprocess(img))[None]
        t["preprocess"] = clock() - t0
        dets, r, _ = det(x, t)
        dets = dets.select(dets.scores >= min_score)
        t0 = clock()
        crops, aligned = [], []
        for k in range(len(dets)):
            box = dets.boxes[k].astype(np.float64) * [w, h, w, h]
            if dets.landmarks is not None:
                lm = dets.landmarks[k].astype(np.float64) * [w, h] - 0.5  # normalised edges -> pixel centres
                crops.append(align(img, lm, size))
                aligned.append(True)
            else:
                crops.append(crop(img, box, size, margin))
                aligned.append(False)
        t1 = clock()
        t["align"] = t1 - t0
        frame_matches: list[Match] = []
        if crops:
            emb = np.asarray(embedder.embed(np.stack([np.asarray(embedder.preprocess(c)) for c in crops])))
            t2 = clock()
            if emb.ndim != 2 or emb.shape[0] != len(crops):
                raise FcbenchError(f"identify: the embedder returned shape {emb.shape} for {len(crops)} faces; "
                                   "need [N, D]")
            if emb.shape[1] != gallery.dim:
                raise FcbenchError(f"identify: the embedder gives {emb.shape[1]}-d embeddings, the gallery holds "
                                   f"{gallery.dim}-d ones; enrol the gallery with the same embedder")
            best, sim = gallery.match(emb)
            for k in range(len(crops)):
                ok = sim[k] >= gallery.threshold
                label = gallery.labels[best[k]]
                frame_matches.append(Match(box=dets.boxes[k], score=float(dets.scores[k]),
                                           label=(label.item() if hasattr(label, "item") else label) if ok else None,
                                           similarity=float(sim[k]), aligned=aligned[k], embedding=emb[k]))
            t["embed"], t["match"] = t2 - t1, clock() - t2
        else:
            t["embed"] = t["match"] = 0.0
        matches.append(frame_matches)
        ran.append(r)
        for s in IDENTIFY_STAGES:
            times[s].append(t[s])
    return IdentifyRun(matches=matches, run_head=np.asarray(ran, dtype=bool),
                       times={s: np.asarray(v, dtype=np.float64) for s, v in times.items()})


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[len(a), len(b)]`` of two sets of x1 y1 x2 y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def probe_set(run: IdentifyRun, truth_boxes: list[np.ndarray], truth_ids: list[np.ndarray],
              iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The faces :func:`identify` found, as probes for :func:`~fcbench.metrics.identification.dir_at_fpir`:
    (embeddings ``[F, D]``, identities ``[F]``). Each frame's faces are matched, highest detection score first,
    to that frame's ground-truth boxes (normalised x1 y1 x2 y2, ``truth_ids`` their identities; a person
    not in the gallery is a distractor) at IoU >= ``iou``, each truth box once; a face matching no truth box
    is a false detection and is left out (the detector's precision, not identification)."""
    if len(truth_boxes) != run.frames or len(truth_ids) != run.frames:
        raise FcbenchError(f"probe_set: {run.frames} frames were identified but the ground truth has "
                           f"{len(truth_boxes)} box lists and {len(truth_ids)} identity lists")
    embs, ids = [], []
    for f, (faces, boxes, who) in enumerate(zip(run.matches, truth_boxes, truth_ids, strict=True)):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        who = np.asarray(who).reshape(-1)
        if len(who) != len(boxes):
            raise FcbenchError(f"probe_set: frame {f} has {len(boxes)} truth boxes but {len(who)} identities")
        if not faces or not len(boxes):
            continue
        overlap = box_iou(np.stack([m.box for m in faces]), boxes)
        free = np.ones(len(boxes), dtype=bool)
        for k in sorted(range(len(faces)), key=lambda k: -faces[k].score):
            if faces[k].embedding is None:
                continue
            cand = np.where(free, overlap[k], -1.0)
            j = int(cand.argmax())
            if cand[j] >= iou:
                free[j] = False
                embs.append(faces[k].embedding)
                ids.append(who[j])
    if not embs:
        raise FcbenchError("probe_set: no detected face overlaps a ground-truth face; check the detector and "
                           "that the boxes are normalised")
    return np.stack(embs), np.asarray(ids)
