"""A detector's raw output to detections, in numpy only (it runs on a bench worker without torch).

``raw`` is one image's ``[A, 4 + 1 + K]``: box offsets, then the background logit and ``K`` class
logits (see :mod:`fcbench.detection.boxes`). :func:`decode` softmaxes the logits, decodes the
boxes against the anchors, and keeps per class the boxes scoring at least ``score_threshold``,
greedy non-maximum suppression at ``iou_threshold`` (at most ``top_k`` candidates per class), and
the ``max_detections`` best overall.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fcbench.detection.anchors import VARIANCES, anchors_for
from fcbench.detection.boxes import decode_boxes, iou

SCORE_THRESHOLD = 0.01  # what mAP is computed over: low, so the precision-recall curve is whole
IOU_THRESHOLD = 0.45
TOP_K = 200
MAX_DETECTIONS = 100


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = IOU_THRESHOLD,
        top_k: int | None = TOP_K) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first (one class's boxes)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    if top_k is not None:
        order = order[:top_k]
    keep: list[int] = []
    boxes = np.asarray(boxes, np.float64)
    while len(order):
        i = int(order[0])
        keep.append(i)
        if len(order) == 1:
            break
        overlap = iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(raw: np.ndarray, anchors: np.ndarray, score_threshold: float = SCORE_THRESHOLD,
           iou_threshold: float = IOU_THRESHOLD, top_k: int = TOP_K, max_detections: int = MAX_DETECTIONS,
           variances: tuple[float, float] = VARIANCES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output ``[A, 4 + 1 + K]`` -> (boxes ``[N, 4]`` normalised xyxy clipped to [0, 1],
    scores ``[N]``, labels ``[N]`` in ``0..K-1``), best score first."""
    raw = np.asarray(raw, np.float64)
    anchors = np.asarray(anchors, np.float64)
    if raw.ndim != 2 or raw.shape[0] != len(anchors) or raw.shape[1] < 6:
        raise ValueError(f"raw detector output {list(raw.shape)} does not fit {len(anchors)} anchors x (4 + 1 + K)")
    probs = softmax(raw[:, 4:], axis=1)[:, 1:]  # drop the background column
    boxes_all = np.clip(decode_boxes(raw[:, :4], anchors, variances), 0.0, 1.0)
    out_b, out_s, out_l = [], [], []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero(probs[:, c] >= score_threshold)
        if not len(idx):
            continue
        keep = idx[nms(boxes_all[idx], probs[idx, c], iou_threshold, top_k)]
        out_b.append(boxes_all[keep])
        out_s.append(probs[keep, c])
        out_l.append(np.full(len(keep), c, np.int64))
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    b, s, lab = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)
    order = np.argsort(-s, kind="stable")[:max_detections]
    return b[order].astype(np.float32), s[order].astype(np.float32), lab[order]


def decode_config(manifest_extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra.detection`` of a detector's manifest (what decoding needs), or ValueError."""
    det = manifest_extra.get("detection")
    if not isinstance(det, Mapping) or "anchors" not in det or "num_classes" not in det:
        raise ValueError("the manifest carries no detection decode config (extra.detection)")
    return dict(det)


def decode_batch(raw: np.ndarray, detection: Mapping[str, Any], anchors: np.ndarray | None = None,
                 **kwargs: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every image of a batch of raw outputs (any shape whose size is ``B * A * (5 + K)``), decoded
    with the ``detection`` config a manifest carries (``extra.detection``)."""
    anchors = anchors_for(detection["anchors"]) if anchors is None else anchors
    width = 5 + int(detection["num_classes"])
    raw = np.asarray(raw, np.float32)
    raw = raw.reshape(-1, len(anchors), width)
    return [decode(r, anchors, **kwargs) for r in raw]


def decoder(detection: Mapping[str, Any], **kwargs: Any):
    """``decode(raw) -> (boxes, scores, labels)`` for one image, with the anchors of ``detection`` (a
    manifest's ``extra.detection``, or the detector's model options) computed once: what a video runner
    takes as its ``decode`` step. ``raw`` may be ``[A, 5 + K]`` or a batch of one ``[1, A, 5 + K]``."""
    anchors = anchors_for(detection.get("anchors", detection))
    k = int(detection["num_classes"])

    def run(raw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return decode(np.asarray(raw, np.float32).reshape(len(anchors), 5 + k), anchors, **kwargs)

    return run
