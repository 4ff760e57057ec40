"""Pascal VOC detection folders: ``voc:DIR`` with ``Annotations/*.xml`` and ``JPEGImages/``.

``DIR`` is a ``VOC2007``/``VOC2012``-style folder (or a ``VOCdevkit`` holding exactly one). Images are
the ids of ``ImageSets/Main/<split>.txt`` when the ``split`` option is given (``train``, ``val``,
``trainval``, ``test``), else every ``Annotations/*.xml`` in name order. Each XML, as LabelImg and the
VOC tools write it, names its image (``<filename>``, else ``<id>.jpg``), its ``<size>`` and its
``<object>``s: ``<name>``, ``<difficult>`` and a ``<bndbox>`` of 1-based inclusive pixel indices
``xmin..xmax``, ``ymin..ymax`` -- read as the box ``[xmin - 1, ymin - 1, xmax, ymax]`` in the
0-based, right-open pixel coordinates of :mod:`fcbench.data.detection`. ``difficult`` objects are
kept and flagged by ``difficult(i)`` for evaluation to ignore. Classes are the sorted set of names
in the files read, or the ``classes`` option fixing the order (a name not in it is refused).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin
from fcbench.data.coco import parse_classes
from fcbench.data.detection import AnnotatedImages, check_boxes
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError, suggest


def _root(p: Path) -> Path | None:
    if (p / "Annotations").is_dir():
        return p
    subs = [d for d in sorted(p.iterdir()) if d.is_dir() and (d / "Annotations").is_dir()] if p.is_dir() else []
    return subs[0] if len(subs) == 1 else None


def _text(p: Path, node: ET.Element, path: str, required: bool = True) -> str | None:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        if required:
            raise FcbenchError(f"{p}: <{path}> is missing or empty; not a VOC annotation, or a broken one")
        return None
    return found.text.strip()


def _number(p: Path, node: ET.Element, path: str, where: str) -> float:
    raw = _text(p, node, path)
    try:
        return float(raw)  # type: ignore[arg-type]
    except ValueError:
        raise FcbenchError(f"{p}: {where} <{path}> is '{raw}', not a number; fix the annotation") from None


def parse_xml(p: Path) -> ET.Element:
    """The root of ``p``; unreadable or malformed XML is one line naming the file, line and column."""
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FcbenchError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = exc.position
        msg = str(exc).split(":")[0]
        raise FcbenchError(f"{p}:{line}:{col + 1}: malformed XML ({msg}); fix the file") from exc


class VocDetection(AnnotatedImages):
    """The images of a VOC folder (one split) with their boxes; ``difficult(i)`` is VOC's ``<difficult>1``."""


class VocDataset(DatasetPlugin):
    """The ``voc`` plugin: ``voc:VOC2007``."""

    name: ClassVar[str] = "voc"
    detects: ClassVar[str] = "a Pascal VOC folder (Annotations/*.xml, JPEGImages/)"
    OPTIONS: ClassVar[dict[str, Any]] = {"split": None, "classes": None}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        root = _root(Path(path)) if Path(path).is_dir() else None
        return root is not None and (root / "JPEGImages").is_dir()

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> VocDetection:
        opts = cls.check_options(options)
        p = cls.need_path(path)
        root = _root(p) if p.is_dir() else None
        if root is None:
            raise FcbenchError(f"dataset 'voc': {p} has no Annotations/ folder; give a VOC2007-style folder "
                               "(Annotations/, JPEGImages/, ImageSets/Main/)")
        classes = parse_classes(cls.name, opts["classes"])
        if opts["split"] is not None:
            listing = root / "ImageSets" / "Main" / f"{opts['split']}.txt"
            if not listing.is_file():
                have = sorted(f.stem for f in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in f.stem)
                raise FcbenchError(f"dataset 'voc': split '{opts['split']}' has no list {listing}"
                                   f"{suggest(str(opts['split']), have)}; splits here: {', '.join(have) or 'none'}")
            ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
            xmls = [root / "Annotations" / f"{i}.xml" for i in ids]
            for x in xmls:
                if not x.is_file():
                    raise FcbenchError(f"{listing}: lists '{x.stem}' but {x} does not exist; fix the list")
        else:
            xmls = sorted((root / "Annotations").glob("*.xml"))
            if not xmls:
                raise FcbenchError(f"dataset 'voc': {root / 'Annotations'} holds no .xml files")
        parsed = [(x, parse_xml(x)) for x in xmls]
        names = classes
        if names is None:
            names = sorted({_text(x, o, "name") or "" for x, doc in parsed for o in doc.findall("object")})
        files: list[Path] = []
        boxes: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        difficult: list[np.ndarray] = []
        for x, doc in parsed:
            fname = _text(x, doc, "filename", required=False) or f"{x.stem}.jpg"
            img = root / "JPEGImages" / fname
            if not img.is_file():
                raise FcbenchError(f"{x}: image '{fname}' not found at {img}; check JPEGImages/ and <filename>")
            if doc.find("size/width") is not None and doc.find("size/height") is not None:
                w, h = int(_number(x, doc, "size/width", "")), int(_number(x, doc, "size/height", ""))
            else:
                w, h = 0, 0
            if w <= 0 or h <= 0:  # some tools write 0 or leave <size> out: read the image's header
                from PIL import Image

                with Image.open(img) as im:
                    w, h = im.size
            b, lab, dif = [], [], []
            for k, o in enumerate(doc.findall("object")):
                name = _text(x, o, "name") or ""
                where = f"object {k} '{name}'"
                if name not in names:
                    raise FcbenchError(f"{x}: {where}: class '{name}' is not in the classes option "
                                       f"({','.join(names)}){suggest(name, names)}; add it or fix the name")
                box = [_number(x, o, f"bndbox/{t}", where) for t in ("xmin", "ymin", "xmax", "ymax")]
                box = [box[0] - 1.0, box[1] - 1.0, box[2], box[3]]
                check_boxes(np.asarray([box]), np.asarray([0]), w, h, 1,
                            f"{x}: {where} (VOC bndbox, 1-based xmin..xmax)")
                b.append([max(box[0], 0.0), max(box[1], 0.0), min(box[2], w), min(box[3], h)])
                lab.append(names.index(name))
                dif.append((_text(x, o, "difficult", required=False) or "0") not in ("0", "false"))
            files.append(img)
            boxes.append(np.asarray(b, np.float32).reshape(-1, 4))
            labels.append(np.asarray(lab, np.int64))
            difficult.append(np.asarray(dif, bool))
        source = str(root) + (f" split={opts['split']}" if opts["split"] is not None else "")
        return VocDetection(files, boxes, labels, difficult, list(names), preprocessing, source)
