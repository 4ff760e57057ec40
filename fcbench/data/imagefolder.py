"""A folder of class sub-folders: ``ROOT/<class>/**/<image>`` (as torchvision's ImageFolder).

Classes are the sub-folder names in sorted order (label = position); images are the files with
extension .jpg .jpeg .png .bmp (any case) anywhere under a class folder, sorted by path. Hidden
folders and files (starting with '.') are skipped. Images are decoded with Pillow to RGB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin, LabelledImages, read_image_file
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _images_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _is_image(f))
    return found


class ImageFolderDataset(DatasetPlugin, LabelledImages):
    """One sub-folder per class, images inside."""

    name: ClassVar[str] = "imagefolder"
    detects: ClassVar[str] = "a folder of class sub-folders holding .jpg/.jpeg/.png/.bmp images"
    OPTIONS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        path = Path(path)
        if not path.is_dir():
            return False
        for d in _class_dirs(path)[:8]:  # a peek is enough: some class folder holds an image
            try:
                if any(_is_image(e.name) for e in os.scandir(d)):
                    return True
            except OSError:
                continue
        return False

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> ImageFolderDataset:
        cls.check_options(options)
        p = cls.need_path(path)
        if not p.is_dir():
            raise FcbenchError(f"dataset '{cls.name}': {p} is not a folder; give a folder of class sub-folders")
        return cls(p, preprocessing)

    def __init__(self, root: Path, preprocessing: Preprocessing) -> None:
        classes = _class_dirs(root)
        if not classes:
            raise FcbenchError(f"{root}: has no class sub-folders; put each class's images in ROOT/<class>/")
        files: list[Path] = []
        targets: list[int] = []
        for label, d in enumerate(classes):
            found = _images_under(d)
            files.extend(found)
            targets.extend([label] * len(found))
        if not files:
            raise FcbenchError(f"{root}: no images ({', '.join(EXTENSIONS)}) in its {len(classes)} class folders")
        self.files = files
        self.targets = np.asarray(targets, dtype=np.int64)
        self.class_names = [d.name for d in classes]
        self.num_classes = len(classes)
        self.preprocessing = preprocessing
        self.source = str(root)

    def __len__(self) -> int:
        return len(self.files)

    def rgb(self, i: int) -> np.ndarray:
        return read_image_file(self.files[i])

    def label(self, i: int) -> int:
        return int(self.targets[i])

    def labels(self) -> np.ndarray:
        return self.targets.copy()
