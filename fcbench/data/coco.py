"""COCO object-detection annotations: ``coco:PATH`` to an ``instances_*.json`` as the COCO tools write it.

The file holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``image_id``,
``category_id``, ``bbox`` = ``[x, y, width, height]`` in pixels from the top-left corner, ``iscrowd``)
and ``categories`` (``id``, ``name``). Images are found relative to the JSON's folder, else in COCO's
own layout (``annotations/instances_val2017.json`` beside ``val2017/``), or in the ``images`` option's
folder. Classes are the categories in id order, or the ``classes`` option
(names, comma-separated or a list) fixing the order; a category not listed there is refused.
``iscrowd`` boxes are kept and flagged by ``difficult(i)`` for evaluation to ignore; boxes of zero
width or height (COCO's own files have a few) are left out and counted in ``empty_boxes``. Every image is
listed, with or without boxes, in the file's order. Everything is checked when the set is opened:
every box inside its image, every ``category_id`` and ``image_id`` known, every image file present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin
from fcbench.data.detection import AnnotatedImages, check_boxes
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError, suggest


def parse_classes(plugin: str, value: Any) -> list[str] | None:
    """The ``classes`` option (``"a,b"`` or ``["a", "b"]``) as a list of names, or None when not given."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(n, str) for n in items):
        raise FcbenchError(f"dataset '{plugin}': option classes must be class names (a,b,c or a list), "
                           f"got {value!r}")
    names = [n.strip() for n in items if n.strip()]
    if not names:
        raise FcbenchError(f"dataset '{plugin}': option classes is empty; give class names like classes=person,car")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FcbenchError(f"dataset '{plugin}': option classes names '{dupes[0]}' twice; give each class once")
    return names


def _peek(path: Path, n: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        return f.read(n).decode("utf-8", errors="replace")


def load_json(path: Path, what: str) -> Any:
    """Parse ``path``; unreadable or malformed JSON is one line naming the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FcbenchError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise FcbenchError(f"{path}: not {what} (not UTF-8 text: {exc.reason} at byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FcbenchError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg}); fix the file") from exc


class CocoDetection(AnnotatedImages):
    """The images of one COCO annotation file with their boxes; ``difficult(i)`` is COCO's ``iscrowd``, and each
    image is checked against the width and height the annotation gives it."""

    def __init__(self, files: list[Path], sizes: list[tuple[int, int]], boxes: list[np.ndarray],
                 labels: list[np.ndarray], crowd: list[np.ndarray], class_names: list[str],
                 preprocessing: Preprocessing, source: str) -> None:
        super().__init__(files, boxes, labels, crowd, class_names, preprocessing, source)
        self.sizes = sizes
        self.empty_boxes = 0  # zero-width or zero-height boxes left out

    def rgb(self, i: int) -> np.ndarray:
        img = super().rgb(i)
        w, h = self.sizes[i]
        if img.shape[:2] != (h, w):
            raise FcbenchError(f"{self.files[i]}: is {img.shape[1]}x{img.shape[0]} but {self.source} says "
                               f"{w}x{h}; fix the annotation's width/height or the image")
        return img


class CocoDataset(DatasetPlugin):
    """The ``coco`` plugin: ``coco:instances.json``."""

    name: ClassVar[str] = "coco"
    detects: ClassVar[str] = "a COCO annotation .json (images, annotations, categories)"
    OPTIONS: ClassVar[dict[str, Any]] = {"images": None, "classes": None}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        path = Path(path)
        if not path.is_file() or path.suffix.lower() != ".json":
            return False
        head = _peek(path)
        return '"images"' in head and ('"file_name"' in head or '"categories"' in head)

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> CocoDetection:
        opts = cls.check_options(options)
        p = cls.need_path(path)
        if p.is_dir():
            raise FcbenchError(f"dataset 'coco': {p} is a folder; give the annotation file, "
                               "e.g. coco:annotations/instances_val2017.json")
        classes = parse_classes(cls.name, opts["classes"])
        root = p.parent
        if opts["images"] is not None:
            root = Path(str(opts["images"])).expanduser()
            if not root.is_absolute() and not root.exists():
                root = p.parent / root
            if not root.is_dir():
                raise FcbenchError(f"dataset 'coco': images folder {root} does not exist; give the folder "
                                   "holding the file_name paths (--data-opt images=DIR)")
        doc = load_json(p, "a COCO annotation file")
        if opts["images"] is None:
            root = _default_root(p, doc)
        return _build(p, doc, root, classes, preprocessing, opts["images"] is None)


def _default_root(p: Path, doc: Any) -> Path:
    """The JSON's folder, unless the first image is not there but in COCO's layout: ``instances_val2017.json``
    in ``annotations/``, images in ``../val2017/``."""
    try:
        first = str(doc["images"][0]["file_name"])
    except (KeyError, IndexError, TypeError):
        return p.parent
    split = p.stem.split("_", 1)[1] if "_" in p.stem else ""
    if not (p.parent / first).is_file() and split and (p.parent.parent / split / first).is_file():
        return p.parent.parent / split
    return p.parent


def _field(p: Path, obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise FcbenchError(f"{p}: {where} has no '{key}'; not a COCO annotation file, or a broken one")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FcbenchError(f"{p}: {where} '{key}' is {value!r}, not a {getattr(kind, '__name__', kind)}")
    return value


def _build(p: Path, doc: Any, root: Path, classes: list[str] | None, preprocessing: Preprocessing,
           default_root: bool) -> CocoDetection:
    if not isinstance(doc, dict):
        raise FcbenchError(f"{p}: not a COCO annotation file (top level is a {type(doc).__name__}, not an object)")
    images = _field(p, doc, "images", list, "the file")
    anns = doc.get("annotations", [])
    if not isinstance(anns, list):
        raise FcbenchError(f"{p}: 'annotations' is not a list; not a COCO annotation file")
    cats = _field(p, doc, "categories", list, "the file")
    cat_names: dict[int, str] = {}
    for k, c in enumerate(cats):
        cat_names[_field(p, c, "id", int, f"categories[{k}]")] = str(_field(p, c, "name", str, f"categories[{k}]"))
    if classes is None:
        class_names = [cat_names[c] for c in sorted(cat_names)]
    else:
        class_names = classes
        for cid in sorted(cat_names):
            if cat_names[cid] not in classes:
                raise FcbenchError(f"{p}: category '{cat_names[cid]}' (id {cid}) is not in the classes option "
                                   f"({','.join(classes)}){suggest(cat_names[cid], classes)}; add it to classes")
    label_of = {cid: class_names.index(name) for cid, name in cat_names.items()}
    index: dict[int, int] = {}
    files: list[Path] = []
    sizes: list[tuple[int, int]] = []
    for k, im in enumerate(images):
        iid = _field(p, im, "id", int, f"images[{k}]")
        name = _field(p, im, "file_name", str, f"images[{k}]")
        w, h = _field(p, im, "width", int, f"images[{k}]"), _field(p, im, "height", int, f"images[{k}]")
        if iid in index:
            raise FcbenchError(f"{p}: images[{k}] repeats image id {iid}; give each image one id")
        f = root / name
        if not f.is_file():
            hint = " (or --data-opt images=DIR for the folder holding them)" if default_root else ""
            raise FcbenchError(f"{p}: image '{name}' (id {iid}) not found at {f}; check the file{hint}")
        index[iid] = len(files)
        files.append(f)
        sizes.append((w, h))
    boxes: list[list[list[float]]] = [[] for _ in files]
    labels: list[list[int]] = [[] for _ in files]
    crowd: list[list[bool]] = [[] for _ in files]
    empty = 0
    for k, a in enumerate(anns):
        where = f"annotations[{k}]" + (f" (id {a['id']})" if isinstance(a, dict) and "id" in a else "")
        iid = _field(p, a, "image_id", int, where)
        cid = _field(p, a, "category_id", int, where)
        if iid not in index:
            raise FcbenchError(f"{p}: {where} refers to image id {iid}, which 'images' does not list; fix the file")
        if cid not in label_of:
            known = ", ".join(f"{c} {cat_names[c]}" for c in sorted(cat_names))
            raise FcbenchError(f"{p}: {where} has category_id {cid}, which 'categories' does not list "
                               f"(known: {known}); fix the annotation or add the category")
        bbox = _field(p, a, "bbox", list, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise FcbenchError(f"{p}: {where} bbox {bbox!r} is not [x, y, width, height]; fix the annotation")
        x, y, bw, bh = (float(v) for v in bbox)
        j = index[iid]
        if bw == 0.0 or bh == 0.0:  # a zero-width or zero-height box (COCO has a few): nothing to detect
            empty += 1
            continue
        box = [x, y, x + bw, y + bh]
        w, h = sizes[j]
        check_boxes(np.asarray([box]), np.asarray([label_of[cid]]), w, h, len(class_names),
                    f"{p}: {where} on image '{files[j].name}' (COCO bbox [x, y, width, height] = {bbox})")
        boxes[j].append([min(max(box[0], 0.0), w), min(max(box[1], 0.0), h), min(box[2], w), min(box[3], h)])
        labels[j].append(label_of[cid])
        crowd[j].append(bool(a.get("iscrowd", 0)))
    ds = CocoDetection(files, sizes, [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
                       [np.asarray(lab, np.int64) for lab in labels], [np.asarray(c, bool) for c in crowd],
                       class_names, preprocessing, str(p))
    ds.empty_boxes = empty
    return ds


__all__ = ["CocoDataset", "CocoDetection", "load_json", "parse_classes"]
