"""Video files as frames: ``video:FILE`` (``.avi``, ``.mp4``, ``.mkv``, ``.mov``), decoded with OpenCV.

For probe videos of the detect -> embed -> identify pipeline, which need frames, not boxes. One
sequence, the frames in play order. The file is decoded once when opened (to count its frames and
prove it decodes); frames are then read in order from a kept-open decoder, seeking only when
asked out of order.

Boxes, when there are any, come from a sidecar CSV -- ``FILE.boxes.csv`` beside the video, or the
``boxes`` option -- with the header ``frame,x1,y1,x2,y2,label`` and optionally ``identity``: frame
numbers from 0, pixel corners (``x2``/``y2`` exclusive), class names. Classes are the sorted set of
labels in it, or the ``classes`` option fixing the order. Without a sidecar every frame has no boxes.
:func:`write_video` writes a dataset's sequence as such a pair (MJPG in ``.avi``, ``mp4v`` in ``.mp4``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin
from fcbench.data.coco import parse_classes
from fcbench.data.detection import DetectionImages, check_boxes
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError, suggest

SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm")
CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}
SIDECAR = ".boxes.csv"
COLUMNS = ("frame", "x1", "y1", "x2", "y2", "label")


def _capture(path: Path) -> Any:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise FcbenchError(f"{path}: cannot be decoded as a video by OpenCV {cv2.__version__}; check the file or "
                           "re-encode it (e.g. ffmpeg -i IN -c:v mjpeg OUT.avi)")
    return cap


class VideoFrames(DetectionImages):
    """The frames of one video file, with the sidecar's boxes when it has one."""

    def __init__(self, path: Path, count: int, size: tuple[int, int], boxes: list[np.ndarray],
                 labels: list[np.ndarray], ids: list[np.ndarray], class_names: list[str],
                 preprocessing: Preprocessing, source: str) -> None:
        self.path, self.count, self.size = path, count, size
        self._boxes, self._labels, self._ids = boxes, labels, ids
        self.class_names, self.num_classes = class_names, len(class_names)
        self.preprocessing, self.source = preprocessing, source
        self._cap: Any = None
        self._next = 0  # the frame the open decoder gives next

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker opens its own decoder
        return {**self.__dict__, "_cap": None, "_next": 0}

    def __len__(self) -> int:
        return self.count

    def sequences(self) -> list[list[int]]:
        return [list(range(self.count))]

    def rgb(self, i: int) -> np.ndarray:
        import cv2

        i = int(i)
        if not 0 <= i < self.count:
            raise IndexError(f"{self.source}: frame {i} out of range for {self.count} frames")
        if self._cap is None or i != self._next:
            if self._cap is None:
                self._cap = _capture(self.path)
            if i != self._next:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._cap.release()
            self._cap = None
            raise FcbenchError(f"{self.path}: frame {i} of {self.count} cannot be decoded; the file is damaged "
                               "or changed since it was opened")
        self._next = i + 1
        return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

    def target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._boxes[i].copy(), self._labels[i].copy()

    def identities(self, i: int) -> np.ndarray:
        """The sidecar's ``identity`` of each box of ``target(i)`` (-1 where it gives none)."""
        return self._ids[i].copy()


def _read_sidecar(f: Path, count: int, width: int, height: int, classes: list[str] | None
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[str]]:
    try:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FcbenchError(f"{f}: cannot be read as a boxes CSV ({exc})") from exc
    missing = [c for c in COLUMNS if rows and c not in header]
    if missing:
        raise FcbenchError(f"{f}: has no column {', '.join(missing)}; the header is "
                           f"{','.join(COLUMNS)}[,identity]")
    names = classes if classes is not None else sorted({r["label"] for r in rows})
    per: list[list[tuple[list[float], int, int]]] = [[] for _ in range(count)]
    for n, r in enumerate(rows, start=2):  # line 1 is the header
        try:
            frame = int(r["frame"])
            box = [float(r[c]) for c in ("x1", "y1", "x2", "y2")]
            ident = int(r["identity"]) if r.get("identity") not in (None, "") else -1
        except (TypeError, ValueError):
            raise FcbenchError(f"{f}:{n}: '{','.join(str(v) for v in r.values())}' is not frame,x1,y1,x2,y2,label"
                               "[,identity] numbers; fix the line") from None
        if not 0 <= frame < count:
            raise FcbenchError(f"{f}:{n}: frame {frame} is outside the video's 0..{count - 1}; fix the line")
        if r["label"] not in names:
            raise FcbenchError(f"{f}:{n}: class '{r['label']}' is not in the classes option ({','.join(names)})"
                               f"{suggest(r['label'], names)}; add it or fix the name")
        check_boxes(np.asarray([box]), np.asarray([0]), width, height, 1, f"{f}:{n}")
        per[frame].append((box, names.index(r["label"]), ident))
    boxes = [np.asarray([b for b, _, _ in p], np.float32).reshape(-1, 4) for p in per]
    labels = [np.asarray([lab for _, lab, _ in p], np.int64) for p in per]
    ids = [np.asarray([k for _, _, k in p], np.int64) for p in per]
    return boxes, labels, ids, list(names)


class VideoDataset(DatasetPlugin):
    """The ``video`` plugin: ``video:clip.avi``."""

    name: ClassVar[str] = "video"
    detects: ClassVar[str] = f"a video file ({', '.join(SUFFIXES)}) decoded with OpenCV"
    OPTIONS: ClassVar[dict[str, Any]] = {"boxes": None, "classes": None}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        path = Path(path)
        return path.is_file() and path.suffix.lower() in SUFFIXES

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> VideoFrames:
        opts = cls.check_options(options)
        p = cls.need_path(path)
        if p.is_dir():
            raise FcbenchError(f"dataset 'video': {p} is a folder; give a video file ({', '.join(SUFFIXES)})")
        classes = parse_classes(cls.name, opts["classes"])
        cap = _capture(p)
        try:
            ok, first = cap.read()
            count = 1 if ok and first is not None else 0
            while ok:
                ok = cap.grab()
                count += int(ok)
        finally:
            cap.release()
        if count == 0:
            raise FcbenchError(f"{p}: OpenCV opens it but decodes no frame; the file is empty, damaged or in a "
                               "codec this OpenCV lacks: re-encode it (e.g. ffmpeg -i IN -c:v mjpeg OUT.avi)")
        height, width = first.shape[:2]
        sidecar = Path(str(opts["boxes"])).expanduser() if opts["boxes"] is not None else Path(str(p) + SIDECAR)
        if opts["boxes"] is not None and not sidecar.is_file():
            raise FcbenchError(f"dataset 'video': boxes file {sidecar} does not exist; check the path")
        if sidecar.is_file():
            boxes, labels, ids, names = _read_sidecar(sidecar, count, width, height, classes)
        else:
            boxes = [np.zeros((0, 4), np.float32)] * count
            labels = [np.zeros(0, np.int64)] * count
            ids = [np.zeros(0, np.int64)] * count
            names = classes or ["object"]
        return VideoFrames(p, count, (height, width), boxes, labels, ids, names, preprocessing, str(p))


def write_video(path: str | Path, ds: DetectionImages, sequence: int = 0, fps: float = 10.0,
                boxes: bool = True) -> Path:
    """Write sequence ``sequence`` of ``ds`` to ``path`` (MJPG in .avi, mp4v in .mp4) and, with ``boxes``,
    its boxes (and ``identities`` where ``ds`` has them) to ``path + '.boxes.csv'``, which
    ``video:PATH`` reads back. Returns ``path``."""
    import cv2

    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise FcbenchError(f"write_video: {path} needs one of the suffixes {', '.join(CODECS)}")
    seqs = ds.sequences()
    if not 0 <= sequence < len(seqs):
        raise FcbenchError(f"write_video: {ds.source} has sequences 0..{len(seqs) - 1}, not {sequence}")
    frames = seqs[sequence]
    h, w = ds.rgb(frames[0]).shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), float(fps), (w, h))
    if not writer.isOpened():
        raise FcbenchError(f"write_video: OpenCV cannot write {codec} into {path}; try an .avi path")
    rows: list[list[Any]] = []
    try:
        for n, i in enumerate(frames):
            writer.write(cv2.cvtColor(ds.rgb(i), cv2.COLOR_RGB2BGR))
            if boxes:
                b, lab = ds.target(i)
                ids = ds.identities(i) if callable(getattr(ds, "identities", None)) else np.full(len(lab), -1)
                rows += [[n, *(f"{v:g}" for v in bb), ds.class_names[int(k)], int(ident)]
                         for bb, k, ident in zip(b.tolist(), lab.tolist(), np.asarray(ids).tolist(), strict=True)]
    finally:
        writer.release()
    if boxes:
        with open(str(path) + SIDECAR, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow([*COLUMNS, "identity"])
            out.writerows(rows)
    return path
