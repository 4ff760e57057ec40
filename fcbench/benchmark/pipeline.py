"""App-like timing: what an application sees per image, stage by stage, beside model-only timing.

Per image: file read, decode (JPEG/PNG via Pillow), preprocessing exactly as the manifest says
(resize, colour order, mean/std, layout), inference through the same session the model-only
timing used, and postprocessing (L2 normalisation of an embedding, softmax of logits, a detector's
box decoding and NMS). Each
stage is timed separately and end to end; model load time stays apart (the cell's init time).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.benchmark.timing import percentile
from fcbench.errors import FcbenchError, first_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
STAGES = ("read", "decode", "preprocess", "infer", "postprocess")


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); a usage error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise FcbenchError(f"--images {root}: not a folder; give a folder of JPEG/PNG files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FcbenchError(f"--images {root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    return files


def postprocess(output: np.ndarray, kind: str, detection: dict[str, Any] | None = None) -> Any:
    """What an application does with the output: L2-normalise an embedding, softmax logits, and for a
    detector (``kind`` detections, ``detection`` = the manifest's ``extra.detection``) decode the boxes
    and run NMS in numpy (a runtime without NMS in its graph pays for it here)."""
    if kind == "detections" and detection is not None:
        from fcbench.detection.postprocess import decode_batch

        return decode_batch(output, detection)
    out = np.asarray(output, dtype=np.float32).reshape(output.shape[0], -1)
    if kind == "embedding":
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class PipelineResult:
    images: int
    queries: int
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    end_to_end_ms: list[float] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(xs: list[float]) -> dict[str, float]:
            xs = sorted(xs)
            return {"p50_ms": percentile(xs, 50), "p90_ms": percentile(xs, 90), "mean_ms": float(np.mean(xs))}

        return {"images": self.images, "queries": self.queries, "unreadable": self.unreadable,
                "stages": {s: stats(v) for s, v in self.stages_ms.items()},
                "end_to_end": stats(self.end_to_end_ms)}


@dataclass
class Images:
    """The ``--images`` folder, checked once per bench run: every cell times the same ``good`` ones."""

    files: list[Path]
    good: list[Path]
    unreadable: list[str]  # "name: why", one per file that does not decode


def read_images(folder: str | Path, on_unreadable: Callable[[Path, str], None] | None = None) -> Images:
    """List the folder's images and find the unreadable ones up front, saying which."""
    from PIL import Image, UnidentifiedImageError

    files = list_images(folder)
    good: list[Path] = []
    unreadable: list[str] = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
            good.append(f)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            why = first_line(exc)[:120]
            unreadable.append(f"{f.name}: {why}")
            if on_unreadable:
                on_unreadable(f, why)
    return Images(files=files, good=good, unreadable=unreadable)


def time_pipeline(run: Callable[[np.ndarray], np.ndarray], manifest: Manifest, images: Images, *,
                  min_runs: int, min_seconds: float, warmup: int = 1) -> PipelineResult:
    """Time every stage per image, cycling through the readable images until both minimums are met."""
    from PIL import Image

    pre = manifest.preprocessing
    layout = manifest.inputs[0].layout if manifest.inputs else pre.layout
    kind = manifest.output_kind
    detection = manifest.extra.get("detection") if kind == "detections" else None
    result = PipelineResult(images=len(images.files), queries=0, stages_ms={s: [] for s in STAGES},
                            unreadable=list(images.unreadable))
    good = images.good
    if not good:
        raise FcbenchError(f"--pipeline: none of the {len(images.files)} images could be decoded")

    def one(path: Path, record: bool) -> None:
        t0 = time.perf_counter()
        data = path.read_bytes()
        t1 = time.perf_counter()
        with Image.open(io.BytesIO(data)) as im:
            image = np.asarray(im.convert("RGB"))
        t2 = time.perf_counter()
        x = pre.apply(image)
        if layout != pre.layout:
            x = x.transpose(1, 2, 0) if layout == "NHWC" else x.transpose(2, 0, 1)
        x = np.ascontiguousarray(x[None])
        t3 = time.perf_counter()
        y = run(x)
        t4 = time.perf_counter()
        postprocess(y, kind, detection)
        t5 = time.perf_counter()
        if record:
            for stage, (a, b) in zip(STAGES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
                result.stages_ms[stage].append((b - a) * 1e3)
            result.end_to_end_ms.append((t5 - t0) * 1e3)

    for i in range(warmup):
        one(good[i % len(good)], record=False)
    start, i = time.perf_counter(), 0
    while i < max(min_runs, len(good)) or time.perf_counter() - start < min_seconds:
        one(good[i % len(good)], record=True)
        i += 1
    result.queries = i
    return result
