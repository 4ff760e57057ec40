"""A tiny detection data set for the detector's tests: coloured rectangles on noise.

Image ``i`` (a pure function of seed and i): uniform noise, then one or two filled rectangles, each
of class 0 (red) or 1 (blue), 25-60 % of the image on a side, anywhere inside it. Registered as the
dataset plugin ``rects`` by :func:`register` (as an installed plugin's entry point would be).
"""

from __future__ import annotations

import types
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin
from fcbench.data.detection import DetectionImages

COLOURS = {0: (220, 40, 40), 1: (40, 60, 220)}


class Rects(DetectionImages):
    def __init__(self, preprocessing, n: int, size: int, seed: int) -> None:
        self.preprocessing = preprocessing
        self.n, self.size, self.seed = n, size, seed
        self.source = f"rects(n={n}, seed={seed})"
        self.num_classes = 2
        self.class_names = ["red", "blue"]

    def __len__(self) -> int:
        return self.n

    def _scene(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, i])
        s = self.size
        img = rng.integers(60, 196, size=(s, s, 3)).astype(np.uint8)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, 3))):
            w, h = (rng.uniform(0.25, 0.6, 2) * s).astype(int)
            x, y = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
            c = int(rng.integers(0, 2))
            img[y:y + h, x:x + w] = COLOURS[c]
            boxes.append([x, y, x + w, y + h])
            labels.append(c)
        return img, np.asarray(boxes, np.float32), np.asarray(labels, np.int64)

    def rgb(self, i: int) -> np.ndarray:
        return self._scene(i)[0]

    def target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._scene(i)[1:]


class RectsPlugin(DatasetPlugin):
    name = "rects"
    OPTIONS: ClassVar[dict[str, Any]] = {"n": 64, "size": 64, "seed": 0}

    @classmethod
    def open(cls, path, *, preprocessing, **options):
        o = cls.check_options(options)
        return Rects(preprocessing, int(o["n"]), int(o["size"]), int(o["seed"]))


def register(monkeypatch) -> None:
    from fcbench import plugins

    original = plugins.entry_points
    ep = types.SimpleNamespace(name="rects", load=lambda: RectsPlugin, value=f"{__name__}:RectsPlugin",
                               dist=types.SimpleNamespace(name="tests"))

    def entry_points(kind: str):
        found = original(kind)
        return {**found, "rects": ep} if kind == "dataset" else found

    monkeypatch.setattr(plugins, "entry_points", entry_points)
