"""Box arithmetic in numpy: IoU and SSD's centre-size encoding with variances (0.1, 0.2).

Boxes are ``x1, y1, x2, y2`` (normalised or pixels alike); anchors are ``cx, cy, w, h``. An offset
row is ``((gx - ax) / (aw * 0.1), (gy - ay) / (ah * 0.1), log(gw / aw) / 0.2, log(gh / ah) / 0.2)``.
"""

from __future__ import annotations

import numpy as np

from fcbench.detection.anchors import VARIANCES


def xyxy_to_cxcywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2],
                    axis=1)


def area(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of two sets of xyxy boxes (0 where both are empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def encode(boxes: np.ndarray, anchors: np.ndarray, variances: tuple[float, float] = VARIANCES) -> np.ndarray:
    """Offsets ``[N, 4]`` of xyxy ``boxes`` relative to their ``anchors`` (cx, cy, w, h), row by row."""
    g = xyxy_to_cxcywh(boxes)
    a = np.asarray(anchors, np.float64)
    return np.stack([(g[:, 0] - a[:, 0]) / (a[:, 2] * variances[0]), (g[:, 1] - a[:, 1]) / (a[:, 3] * variances[0]),
                     np.log(g[:, 2] / a[:, 2]) / variances[1], np.log(g[:, 3] / a[:, 3]) / variances[1]], axis=1)


def decode_boxes(offsets: np.ndarray, anchors: np.ndarray, variances: tuple[float, float] = VARIANCES) -> np.ndarray:
    """xyxy boxes ``[N, 4]`` from offsets (the inverse of :func:`encode`)."""
    d = np.asarray(offsets, np.float64)
    a = np.asarray(anchors, np.float64)
    cx = a[:, 0] + d[:, 0] * variances[0] * a[:, 2]
    cy = a[:, 1] + d[:, 1] * variances[0] * a[:, 3]
    w = a[:, 2] * np.exp(np.clip(d[:, 2] * variances[1], -10, 10))
    h = a[:, 3] * np.exp(np.clip(d[:, 3] * variances[1], -10, 10))
    return cxcywh_to_xyxy(np.stack([cx, cy, w, h], axis=1))
