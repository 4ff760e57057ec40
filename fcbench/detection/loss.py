"""The SSD MultiBox loss (Liu et al. 2016), in torch.

Matching, per image: every ground-truth box takes its best-overlapping anchor; every other anchor
takes the box it overlaps most when that IoU is >= ``iou_threshold`` (0.5), else it is background.
Loss: smooth-L1 on the matched anchors' encoded offsets (centre-size, variances 0.1/0.2), plus the
cross-entropy of the positives and of the hardest negatives (highest background loss), at most
``neg_pos_ratio`` (3) negatives per positive; both sums are divided by the number of positives.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from fcbench.detection.anchors import VARIANCES


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-12)


def _xyxy(anchors: Tensor) -> Tensor:
    return torch.cat([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], dim=1)


def encode(boxes: Tensor, anchors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Offsets of xyxy ``boxes`` relative to cx-cy-w-h ``anchors``, row by row."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    return torch.cat([(c - anchors[:, :2]) / (anchors[:, 2:] * variances[0]),
                      torch.log(wh / anchors[:, 2:]) / variances[1]], dim=1)


def match(boxes: Tensor, labels: Tensor, anchors: Tensor, iou_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Per anchor: the class target (0 background, else label + 1) and the encoded box target."""
    n = len(anchors)
    if len(boxes) == 0:
        return torch.zeros(n, dtype=torch.long, device=anchors.device), torch.zeros(n, 4, device=anchors.device)
    overlaps = box_iou(boxes, _xyxy(anchors))  # [G, A]
    best_iou, best_gt = overlaps.max(dim=0)  # per anchor
    best_anchor = overlaps.argmax(dim=1)  # per box
    best_gt[best_anchor] = torch.arange(len(boxes), device=boxes.device)  # every box keeps its best anchor
    best_iou[best_anchor] = 2.0
    cls = labels[best_gt] + 1
    cls[best_iou < iou_threshold] = 0
    return cls, encode(boxes[best_gt], anchors)


def multibox_loss(raw: Tensor, targets: list[dict[str, Any]], anchors: Tensor, neg_pos_ratio: int = 3,
                  iou_threshold: float = 0.5) -> dict[str, Tensor]:
    """``raw`` ``[B, A, 4 + 1 + K]``; targets as :func:`fcbench.data.detection.collate` gives them
    (normalised xyxy boxes, labels ``0..K-1``). Returns ``{"loc": ..., "conf": ...}`` (scalars)."""
    anchors = anchors.to(raw.device, raw.dtype)
    cls_t, loc_t = [], []
    for t in targets:
        c, loc = match(t["boxes"].to(raw.device, raw.dtype).reshape(-1, 4), t["labels"].to(raw.device).reshape(-1),
                       anchors, iou_threshold)
        cls_t.append(c)
        loc_t.append(loc)
    cls_target = torch.stack(cls_t)  # [B, A]
    loc_target = torch.stack(loc_t)  # [B, A, 4]
    pos = cls_target > 0
    num_pos = pos.sum()
    loc = F.smooth_l1_loss(raw[..., :4][pos], loc_target[pos], reduction="sum")
    ce = F.cross_entropy(raw[..., 4:].flatten(0, 1), cls_target.flatten(), reduction="none").view_as(cls_target)
    with torch.no_grad():  # hard negatives: the highest-loss background anchors, 3 per positive of the image
        neg_loss = ce.clone()
        neg_loss[pos] = -1.0
        rank = neg_loss.argsort(dim=1, descending=True).argsort(dim=1)
        neg = rank < (neg_pos_ratio * pos.sum(dim=1, keepdim=True))
    conf = ce[pos | neg].sum()
    denom = num_pos.clamp(min=1).to(raw.dtype)
    return {"loc": loc / denom, "conf": conf / denom}
