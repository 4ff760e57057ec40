"""The third dataset shape: images (or video frames) with object boxes, for detectors.

:class:`DetectionImages` -- ``ds[i] -> (FloatTensor[C,H,W], target)`` where ``target`` is a dict
``{"boxes": FloatTensor[N,4], "labels": LongTensor[N]}``: boxes as ``x1, y1, x2, y2`` normalised to
[0, 1] of the image's width and height (so they survive the plain resize of ``preprocessing``),
labels ``0 .. num_classes-1`` indexing ``class_names`` (no background class here: a detector that
needs one adds it itself). ``N`` may be 0.

Readers implement ``__len__``, ``rgb(i)`` (RGB uint8 HWC, before preprocessing) and
``target(i)`` (boxes in *pixels* of ``rgb(i)`` as float32 ``[N, 4]`` and int64 labels ``[N]``).
Video readers also override ``sequences()``: the frame indices of each video in play order, which
motion gating walks frame by frame. ``difficult(i)`` (boxes evaluation ignores: VOC difficult, COCO
crowd) and ``evaluated(i)`` (frames outside a CDNet temporal ROI are not scored) default to none ignored.
Still-image readers that parse an annotation into per-image boxes (VOC, COCO) hold them in an
:class:`AnnotatedImages`. :func:`collate` stacks a batch for a ``DataLoader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fcbench.data.base import _check_index, read_image_file, to_tensor
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError


class DetectionImages(Dataset):
    """Images with boxes; see the module docstring for the sample shape."""

    preprocessing: Preprocessing
    source: str
    num_classes: int
    class_names: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    def rgb(self, i: int) -> np.ndarray:
        """The decoded image (frame) ``i`` as RGB uint8 HWC, before preprocessing."""
        raise NotImplementedError

    def target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes of image ``i`` in pixels (float32 ``[N, 4]``, x1 y1 x2 y2) and their labels (int64 ``[N]``)."""
        raise NotImplementedError

    def sequences(self) -> list[list[int]]:
        """Frame indices of each video in play order; a still-image set is one sequence per image."""
        return [[i] for i in range(len(self))]

    def difficult(self, i: int) -> np.ndarray:
        """Per box of ``target(i)`` (same order): True for a box evaluation should ignore -- neither a
        hit nor a miss (VOC ``<difficult>1``, COCO ``iscrowd``). Default: none."""
        return np.zeros(len(self.target(i)[1]), dtype=bool)

    def evaluated(self, i: int) -> bool:
        """Whether frame ``i`` is scored at all (a CDNet frame outside ``temporalROI.txt`` is not: it is
        there for a background model to warm up on, and stays in ``sequences()``). Default: every frame."""
        return True

    def normalised_target(self, i: int, size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """``target(i)`` with boxes divided by the image's width and height (``size`` = (H, W) when the
        caller already knows it, else it is read from ``rgb(i)``)."""
        boxes, labels = self.target(i)
        h, w = size if size is not None else self.rgb(i).shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) / np.asarray([w, h, w, h], np.float32)
        return {"boxes": torch.from_numpy(np.ascontiguousarray(boxes)),
                "labels": torch.from_numpy(np.asarray(labels, dtype=np.int64).reshape(-1))}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        i = _check_index(i, len(self), self.source)
        img = self.rgb(i)
        return to_tensor(self.preprocessing, img), self.normalised_target(i, img.shape[:2])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, n={len(self)}, classes={self.num_classes})"


class AnnotatedImages(DetectionImages):
    """Image files, each with its boxes, labels and ignored flags read from an annotation (VOC's XML, COCO's
    JSON): what a still-image detection reader holds once it has parsed its annotation."""

    def __init__(self, files: list[Path], boxes: list[np.ndarray], labels: list[np.ndarray],
                 ignored: list[np.ndarray], class_names: list[str], preprocessing: Preprocessing,
                 source: str) -> None:
        self.files, self._boxes, self._labels, self._ignored = files, boxes, labels, ignored
        self.class_names, self.num_classes = class_names, len(class_names)
        self.preprocessing, self.source = preprocessing, source

    def __len__(self) -> int:
        return len(self.files)

    def rgb(self, i: int) -> np.ndarray:
        return read_image_file(self.files[i])

    def target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._boxes[i].copy(), self._labels[i].copy()

    def difficult(self, i: int) -> np.ndarray:
        return self._ignored[i].copy()


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """A ``DataLoader`` ``collate_fn``: images stacked, targets kept as a list (their box counts differ)."""
    return torch.stack([x for x, _ in batch]), [t for _, t in batch]


def check_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int, num_classes: int,
                where: str) -> None:
    """Refuse boxes outside the image, empty or inverted boxes, and labels outside ``0..num_classes-1``,
    with one line naming ``where`` (a file and an object) and what to fix."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(boxes) != len(labels):
        raise FcbenchError(f"{where}: {len(boxes)} boxes but {len(labels)} labels")
    tol = 1.0  # a pixel of slack for annotation tools that write x2 = width
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        if not np.all(np.isfinite([x1, y1, x2, y2])):
            raise FcbenchError(f"{where}: box {k} has a non-finite coordinate {[x1, y1, x2, y2]}; fix the annotation")
        if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
            raise FcbenchError(f"{where}: box {k} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] lies outside the {width}x{height} "
                               "image; fix or drop the annotation")
        if x2 <= x1 or y2 <= y1:
            raise FcbenchError(f"{where}: box {k} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is empty or inverted "
                               "(needs x2 > x1 and y2 > y1); fix the annotation")
    bad = [int(v) for v in labels if not 0 <= int(v) < num_classes]
    if bad:
        raise FcbenchError(f"{where}: label {bad[0]} is outside 0..{num_classes - 1}")
