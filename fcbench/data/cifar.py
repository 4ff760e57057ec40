"""CIFAR-10, python version (``cifar-10-batches-py``).

The folder holds ``data_batch_1`` .. ``data_batch_5`` (train, 10000 images each), ``test_batch``
and ``batches.meta``; each batch is a Python 2 pickle (read with ``encoding="bytes"``) of a dict
with ``b"data"`` -- uint8 ``(N, 3072)``, each row the R, G and B planes of a 32x32 image, row-major
-- and ``b"labels"``; ``batches.meta`` holds ``b"label_names"``. Option ``split``: train or test.
The folder that contains ``cifar-10-batches-py`` works too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin, LabelledImages, check_choice, load_data_pickle
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = ("test_batch",)
SUBDIR = "cifar-10-batches-py"


def _root(path: Path) -> Path:
    return path / SUBDIR if (path / SUBDIR).is_dir() else path


class Cifar10Dataset(DatasetPlugin, LabelledImages):
    """CIFAR-10 (python batches), 10 classes of 32x32 images."""

    name: ClassVar[str] = "cifar10"
    detects: ClassVar[str] = "a cifar-10-batches-py folder: data_batch_1..5, test_batch"
    OPTIONS: ClassVar[dict[str, Any]] = {"split": "train"}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        root = _root(Path(path))
        return root.is_dir() and any((root / n).is_file() for n in (TRAIN[0], TEST[0]))

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> Cifar10Dataset:
        opts = cls.check_options(options)
        split = check_choice(cls.name, "split", opts["split"], ("train", "test"))
        p = cls.need_path(path)
        if not p.is_dir():
            raise FcbenchError(f"dataset '{cls.name}': {p} is not a folder; give the cifar-10-batches-py folder")
        return cls(_root(p), split, preprocessing)

    def __init__(self, root: Path, split: str, preprocessing: Preprocessing) -> None:
        names = TRAIN if split == "train" else TEST
        missing = [n for n in names if not (root / n).is_file()]
        if missing:
            raise FcbenchError(f"{root}: CIFAR-10 {split} split is missing {', '.join(missing)}; "
                               "download and unpack cifar-10-python.tar.gz there")
        data, labels = [], []
        for n in names:
            d, lab = self._read_batch(root / n)
            data.append(d)
            labels.append(lab)
        self.images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # N,H,W,C view
        self.targets = np.concatenate(labels)
        self.class_names = self._read_names(root / "batches.meta")
        self.num_classes = max(10, int(self.targets.max()) + 1)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            self.class_names = None
        self.preprocessing = preprocessing
        self.source = f"{root} ({split})"
        self.split = split

    @staticmethod
    def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
        obj = load_data_pickle(path, "a CIFAR-10 python batch")
        if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
            keys = sorted(str(k) for k in obj) if isinstance(obj, dict) else type(obj).__name__
            raise FcbenchError(f"{path}: not a CIFAR-10 python batch (needs b'data' and b'labels', has {keys})")
        data = np.asarray(obj[b"data"])
        labels = np.asarray(obj[b"labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.size:
            raise FcbenchError(f"{path}: b'data' must be uint8 (N, 3072) with one label per row, got "
                               f"{data.dtype} {data.shape} and {labels.size} labels")
        if labels.size and (labels.min() < 0 or labels.max() > 99):
            raise FcbenchError(f"{path}: labels out of range ({labels.min()}..{labels.max()})")
        return data, labels

    @staticmethod
    def _read_names(path: Path) -> list[str] | None:
        if not path.is_file():
            return None
        obj = load_data_pickle(path, "CIFAR-10 batches.meta")
        names = obj.get(b"label_names") if isinstance(obj, dict) else None
        if not isinstance(names, list):
            return None
        return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]

    def __len__(self) -> int:
        return int(self.targets.size)

    def rgb(self, i: int) -> np.ndarray:
        return np.ascontiguousarray(self.images[i])

    def label(self, i: int) -> int:
        return int(self.targets[i])

    def labels(self) -> np.ndarray:
        return self.targets.copy()
