"""Detection quality: precision and recall at IoU >= 0.5, AP per class, mAP@0.5 (VOC) and mAP@[.5:.95] (COCO).

Inputs are per image: detections ``(boxes [N, 4], scores [N], labels [N])`` and ground truth
``(boxes [M, 4], labels [M])`` or ``(boxes, labels, difficult [M])``, boxes ``x1, y1, x2, y2`` in one
unit (normalised or pixels). A *difficult* box (VOC difficult, COCO crowd) is neither a hit nor a miss:
it is not counted in the ground truth, and a detection it would match is left out of the curve (as
VOC's devkit does).

* **AP@0.5, VOC style.** Per class, the detections of every image sorted by score (ties keep input
  order); each is a true positive when its highest-IoU ground-truth box of that class in its image
  has IoU >= 0.5 and was not matched by a higher-scored detection, else a false positive. AP is the
  area under the precision-recall curve with all-point interpolation (precision made monotone
  from the right; summed over the recall steps). ``map50`` is the mean over the classes that have
  ground truth.
* **mAP@[.5:.95], COCO style.** At each IoU threshold 0.50, 0.55, .., 0.95 a detection takes the
  highest-IoU *unmatched* ground-truth box of its class at or above the threshold; AP is the mean of
  the interpolated precision (max precision at recall >= r) at the 101 recall points r = 0, 0.01, .., 1
  (0 where that recall is never reached). ``map`` averages over thresholds and classes.
* **precision50 / recall50**: the detections scoring at least ``score_threshold`` (0.5), matched as
  for VOC, pooled over classes: TP / detections and TP / ground-truth boxes (0 when there are none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fcbench.detection.boxes import iou

COCO_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
GroundTruth = tuple[np.ndarray, ...]  # (boxes, labels) or (boxes, labels, difficult)


@dataclass
class DetectionResult:
    map50: float
    map: float
    precision50: float
    recall50: float
    ap50: dict[str, float] = field(default_factory=dict)  # per class with ground truth
    ap: dict[str, float] = field(default_factory=dict)  # COCO-style per class
    images: int = 0
    ground_truth: int = 0
    detections: int = 0

    def to_rows(self) -> list[tuple[str, float]]:
        """'map50', 'map', 'precision50', 'recall50', then 'ap50/<class>' for each class with ground truth."""
        return ([("map50", self.map50), ("map", self.map), ("precision50", self.precision50),
                 ("recall50", self.recall50)] + [(f"ap50/{name}", v) for name, v in self.ap50.items()])


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP of a precision-recall curve (points in score order)."""
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP: mean over r in 0, 0.01, .., 1 of the max precision at recall >= r."""
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if not len(recall):
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, points - 1e-12, side="left")  # first point with recall >= r
    return float(np.mean(np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)))


def _match(dets: list[tuple[float, int, np.ndarray]], gts: dict[int, tuple[np.ndarray, np.ndarray]],
           threshold: float, voc: bool) -> np.ndarray:
    """Per detection of ``dets`` (score, image, box), already in score order, against one class's boxes
    (per image: boxes and difficult flags): 1 true positive, 0 false positive, -1 ignored (it matches a
    difficult box)."""
    used = {i: np.zeros(len(b), bool) for i, (b, _) in gts.items()}
    out = np.zeros(len(dets), np.int8)
    for k, (_, img, box) in enumerate(dets):
        g, hard = gts.get(img, (np.zeros((0, 4)), np.zeros(0, bool)))
        if not len(g):
            continue
        ov = iou(box[None], g)[0]
        if voc:  # the best-overlapping box decides, taken or not
            j = int(np.argmax(ov))
            if ov[j] >= threshold:
                if hard[j]:
                    out[k] = -1
                elif not used[img][j]:
                    used[img][j], out[k] = True, 1
            continue
        easy = np.where(used[img] | hard, -1.0, ov)  # COCO: the best free box at the threshold, else a difficult one
        j = int(np.argmax(easy))
        if easy[j] >= threshold:
            used[img][j], out[k] = True, 1
        elif np.any(hard & (ov >= threshold)):
            out[k] = -1
    return out


def _curve(flags: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    tp = flags[flags >= 0] == 1
    ctp = np.cumsum(tp)
    return ctp / n_gt, ctp / np.arange(1, len(tp) + 1)


def detection_metrics(detections: Sequence[Detections], ground_truth: Sequence[GroundTruth], num_classes: int,
                      class_names: Sequence[str] | None = None, score_threshold: float = 0.5) -> DetectionResult:
    """See the module doc. ``detections[i]`` and ``ground_truth[i]`` are image ``i``'s."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} images of detections but {len(ground_truth)} of ground truth")
    names = list(class_names) if class_names else [f"class{c}" for c in range(num_classes)]
    per_class_dets: dict[int, list[tuple[float, int, np.ndarray]]] = {c: [] for c in range(num_classes)}
    per_class_gt: dict[int, dict[int, np.ndarray]] = {c: {} for c in range(num_classes)}
    n_det = n_gt = 0
    for img, ((boxes, scores, labels), truth) in enumerate(zip(detections, ground_truth, strict=True)):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        gboxes = np.asarray(truth[0], np.float64).reshape(-1, 4)
        glabels = np.asarray(truth[1]).reshape(-1).astype(np.int64)
        hard = (np.asarray(truth[2], bool).reshape(-1) if len(truth) > 2 and truth[2] is not None
                else np.zeros(len(gboxes), bool))
        n_det += len(boxes)
        n_gt += int((~hard).sum())
        for b, s, lab in zip(boxes, np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1), strict=True):
            per_class_dets.setdefault(int(lab), []).append((float(s), img, b))
        for c in np.unique(glabels):
            per_class_gt.setdefault(int(c), {})[img] = (gboxes[glabels == c], hard[glabels == c])
    ap50: dict[str, float] = {}
    ap_coco: dict[str, float] = {}
    tp_pr = n_pr = 0
    for c in sorted(per_class_gt):
        gts = per_class_gt[c]
        dets = sorted(per_class_dets.get(c, []), key=lambda d: -d[0])  # stable: ties keep input order
        count = sum(int((~h).sum()) for _, h in gts.values())
        confident = _match([d for d in dets if d[0] >= score_threshold], gts, 0.5, voc=True)
        tp_pr += int((confident == 1).sum())
        n_pr += int((confident >= 0).sum())
        if count == 0:
            continue
        name = names[c] if c < len(names) else f"class{c}"
        rec, prec = _curve(_match(dets, gts, 0.5, voc=True), count)
        ap50[name] = voc_ap(rec, prec)
        ap_coco[name] = float(np.mean([coco_ap(*_curve(_match(dets, gts, t, voc=False), count))
                                       for t in COCO_THRESHOLDS]))
    return DetectionResult(
        map50=float(np.mean(list(ap50.values()))) if ap50 else 0.0,
        map=float(np.mean(list(ap_coco.values()))) if ap_coco else 0.0,
        precision50=tp_pr / n_pr if n_pr else 0.0, recall50=tp_pr / n_gt if n_gt else 0.0,
        ap50=ap50, ap=ap_coco, images=len(detections), ground_truth=n_gt, detections=n_det)
