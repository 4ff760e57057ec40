"""CDNet2014 change-detection videos as detection data: ``cdnet:DIR``.

A video folder, as the CDNet2014 download unpacks it (``dataset/baseline/pedestrians/``), holds
``input/in000001.jpg ...``, ``groundtruth/gt000001.png ...`` and ``temporalROI.txt`` (two 1-based frame
numbers: the first and last evaluated frame). The ground truth masks are grey PNGs: 0 static,
50 shadow, 85 outside the region of interest, 170 unknown motion, 255 motion. Boxes are the
connected components (8-connected) of the 255 pixels with at least ``min_area`` pixels; every box
is of one class, ``object`` or the ``class`` option (``class=pedestrian``). ``DIR`` may also be a
category or the whole dataset: every video folder under it is one sequence, in path order.

Frames outside the temporal ROI stay in the set and in ``sequences()`` (a background model warms
up on them, as CDNet intends) but ``evaluated(i)`` is False for them: evaluation scores only the
frames ``first..last``. Their masks are not read (CDNet marks them 85 throughout), so they may be
missing; a mask inside the ROI that is missing is refused when the set is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin, read_image_file
from fcbench.data.detection import DetectionImages
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

MOTION, UNKNOWN, OUTSIDE_ROI, SHADOW, STATIC = 255, 170, 85, 50, 0
_FRAME = re.compile(r"in(\d+)\.(jpg|jpeg|png|bmp)$", re.IGNORECASE)


def _is_video(d: Path) -> bool:
    return (d / "input").is_dir() and (d / "groundtruth").is_dir()


def _videos(root: Path) -> list[Path]:
    if _is_video(root):
        return [root]
    return sorted(d.parent for d in root.rglob("input") if d.is_dir() and _is_video(d.parent))


def _roi(video: Path, frames: int) -> tuple[int, int]:
    f = video / "temporalROI.txt"
    if not f.is_file():
        return 1, frames
    parts = f.read_text().split()
    try:
        first, last = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise FcbenchError(f"{f}: is '{' '.join(parts)[:40]}', not two frame numbers 'FIRST LAST'; "
                           "fix the file") from None
    if not 1 <= first <= last:
        raise FcbenchError(f"{f}: frames {first}..{last} are not a range of 1-based frame numbers; fix the file")
    return first, last


def mask_boxes(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Boxes ``[N, 4]`` (pixels, x2/y2 exclusive) of the 8-connected components of the motion (255)
    pixels of a CDNet ground-truth ``mask`` with at least ``min_area`` pixels, sorted top-left first."""
    import cv2

    fg = (np.asarray(mask) == MOTION).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    out = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:n].tolist() if area >= min_area]
    out.sort(key=lambda b: (b[1], b[0]))
    return np.asarray(out, np.float32).reshape(-1, 4)


class CdnetDetection(DetectionImages):
    """One or more CDNet video folders; each is a sequence of its frames in number order."""

    def __init__(self, frames: list[Path], masks: list[Path | None], evaluated: list[bool], seqs: list[list[int]],
                 class_name: str, min_area: int, preprocessing: Preprocessing, source: str) -> None:
        self.frames, self.masks, self._evaluated, self._seqs = frames, masks, evaluated, seqs
        self.class_names, self.num_classes, self.min_area = [class_name], 1, min_area
        self.preprocessing, self.source = preprocessing, source

    def __len__(self) -> int:
        return len(self.frames)

    def sequences(self) -> list[list[int]]:
        return [list(s) for s in self._seqs]

    def evaluated(self, i: int) -> bool:
        return self._evaluated[i]

    def rgb(self, i: int) -> np.ndarray:
        return read_image_file(self.frames[i])

    def mask(self, i: int) -> np.ndarray:
        """The ground-truth mask of frame ``i`` (uint8 HW); all 85 (outside the ROI) for an unscored frame."""
        m = self.masks[i]
        if m is None:
            h, w = self.rgb(i).shape[:2]
            return np.full((h, w), OUTSIDE_ROI, np.uint8)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(m) as im:
                return np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise FcbenchError(f"{m}: ground-truth mask cannot be decoded ({exc}); re-create the file") from exc

    def target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self.masks[i] is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        boxes = mask_boxes(self.mask(i), self.min_area)
        return boxes, np.zeros(len(boxes), np.int64)


class CdnetDataset(DatasetPlugin):
    """The ``cdnet`` plugin: ``cdnet:dataset/baseline/pedestrians`` (or a category, or the whole dataset)."""

    name: ClassVar[str] = "cdnet"
    detects: ClassVar[str] = "a CDNet2014 video folder (input/in*.jpg, groundtruth/gt*.png, temporalROI.txt)"
    OPTIONS: ClassVar[dict[str, Any]] = {"class": "object", "min_area": 25}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        path = Path(path)
        return path.is_dir() and _is_video(path) and (path / "temporalROI.txt").is_file()

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> CdnetDetection:
        opts = cls.check_options(options)
        p = cls.need_path(path)
        if opts["min_area"] < 1:
            raise FcbenchError(f"dataset 'cdnet': option min_area must be >= 1 pixel, got {opts['min_area']}")
        if not str(opts["class"]).strip():
            raise FcbenchError("dataset 'cdnet': option class is empty; give a class name like class=pedestrian")
        videos = _videos(p) if p.is_dir() else []
        if not videos:
            raise FcbenchError(f"dataset 'cdnet': {p} holds no CDNet video folder (input/ and groundtruth/ "
                               "side by side); give e.g. dataset/baseline/pedestrians")
        frames: list[Path] = []
        masks: list[Path | None] = []
        evaluated: list[bool] = []
        seqs: list[list[int]] = []
        for v in videos:
            numbered = sorted((int(m.group(1)), f) for f in (v / "input").iterdir() if (m := _FRAME.match(f.name)))
            if not numbered:
                raise FcbenchError(f"dataset 'cdnet': {v / 'input'} holds no frames named in000001.jpg ...")
            first, last = _roi(v, numbered[-1][0])
            seq = []
            for number, f in numbered:
                scored = first <= number <= last
                gt = None
                if scored:
                    gt = next((g for g in (v / "groundtruth" / f"gt{number:06d}.png",
                                           v / "groundtruth" / f"gt{number:06d}.bmp") if g.is_file()), None)
                    if gt is None:
                        raise FcbenchError(f"dataset 'cdnet': frame {number} of {v} is in the temporal ROI "
                                           f"{first}..{last} but groundtruth/gt{number:06d}.png is missing")
                seq.append(len(frames))
                frames.append(f)
                masks.append(gt)
                evaluated.append(scored)
            seqs.append(seq)
        source = f"cdnet:{p}" + (f" class={opts['class']}" if opts["class"] != "object" else "")
        return CdnetDetection(frames, masks, evaluated, seqs, str(opts["class"]).strip(), int(opts["min_area"]),
                              preprocessing, source)
