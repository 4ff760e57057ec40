"""Built-in synthetic video for detectors and motion gating: ``synthetic:video`` (or ``synthetic-video``).

Each video (``videos`` of them, ``frames`` frames each, ``height`` x ``width``) is a static textured
background (smooth colour waves plus a fixed fine texture) with ``objects`` objects of three classes:

* ``face`` -- a face of the synthetic identities, rendered by :mod:`fcbench.data.synthetic`'s face
  renderer (same ``seed`` and ``latent_dim`` as ``synthetic:faces``, so face ``k`` here is identity ``k``
  there); its box is the tight box of the face's ellipse;
* ``square`` -- a square plate of one colour with an inset of another;
* ``disc`` -- a shaded ball.

Objects are assigned face, square, disc, face, ... in turn; every face draws an identity from
``0 .. identities-1``. A fraction ``moving_fraction`` of the objects moves on straight lines at 1 to
2.5 pixels a frame, bouncing off the borders; the others stay still. During ``static_stretches``
runs of frames (evenly spaced, each about ``frames / (2 * (static_stretches + 1))`` long) nothing
moves at all: motion gating's case. Every frame adds fresh Gaussian sensor noise (``noise``, in
[0, 1] pixel units), so even a static frame is never bit-identical to the previous one.

``visits=true`` makes the moving objects come and go, as CDNet2014's pedestrians do: the video opens on a
static stretch of the same length (from frame 0) and the moving objects are out of view during every static
stretch, so those frames show the empty scene (the background and the still objects) and a motion gate that
learnt it skips them; outside the stretches the moving objects are in view and move. Their paths go on in
motion time, so an object comes back where it would have been.

``truth=moving`` (default ``all``) keeps in each frame's ground truth only the objects that *moved*: in view
and at another position than on the previous frame, or just come into view (on a video's first frame: the
moving objects in view). That is what CDNet2014 marks (motion, not every object), the ground truth motion
gating is scored against; ``truth=all`` marks every object at least half visible.

Ground truth per frame: the box of every object at least half visible (an object covered by
later-drawn ones for more than half of its pixels is left out), in pixels, ``x2``/``y2`` exclusive;
:meth:`SyntheticVideo.identities` gives each box's identity (-1 for non-faces) and
:meth:`SyntheticVideo.moving` whether any object moved since the previous frame (True for a video's
first frame: there is nothing to compare it with; an object coming into view or leaving it is a change).
Moving objects pass in front of still ones.

Everything is a pure function of (seed, split, video, frame): ``split`` train and test draw
different videos (backgrounds, objects, paths) from the same identities.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin, check_choice
from fcbench.data.detection import DetectionImages
from fcbench.data.preprocess import Preprocessing
from fcbench.data.synthetic import FACE_STYLE, _rng, identity_latent, world
from fcbench.errors import FcbenchError

CLASSES = ("face", "square", "disc")
TRUTHS = ("all", "moving")  # every object in view, or only those that moved (as CDNet2014 marks motion)
_T_VIDEO, _T_NOISE = 31, 32
_SPLIT_CODE = {"train": 0, "test": 1}
MIN_VISIBLE = 0.5  # an object covered for more than half of its pixels has no box
FACE_PATCH = 1.25  # a face's square patch is this much larger than the other objects of its draw


@dataclass
class _Object:
    label: int
    identity: int  # -1 unless a face
    patch: np.ndarray  # float32 [h, w, 3] in [0, 1]
    alpha: np.ndarray  # float32 [h, w] in [0, 1]
    box: tuple[int, int, int, int]  # tight box of alpha > 0.5 inside the patch, x2/y2 exclusive
    moving: bool
    start: np.ndarray  # float [2] top-left x, y at motion time 0
    velocity: np.ndarray  # float [2] pixels per motion step


@dataclass
class _Video:
    background: np.ndarray  # float32 [H, W, 3]
    objects: list[_Object]  # in drawing order
    positions: np.ndarray  # int [frames, objects, 2] top-left x, y of each patch
    visible: np.ndarray  # bool [frames, objects]: in view (False only for moving objects away, with visits)
    moved: np.ndarray  # bool [frames, objects]: in view and moved (or came into view) since the previous frame
    moving: np.ndarray  # bool [frames]
    static: np.ndarray  # bool [frames]: inside a static stretch


def _bounce(x: np.ndarray, span: float) -> np.ndarray:
    """Positions ``x`` reflected into ``[0, span]`` (a ball bouncing between two walls)."""
    if span <= 0:
        return np.zeros_like(x)
    period = 2.0 * span
    m = np.mod(x, period)
    return np.where(m > span, period - m, m)


def static_frames(frames: int, stretches: int, lead_in: bool = False) -> np.ndarray:
    """Which of ``frames`` frames lie in one of ``stretches`` evenly spaced runs where nothing moves (and, with
    ``lead_in``, in one more run of the same length from frame 0)."""
    out = np.zeros(frames, dtype=bool)
    if frames < 3 or (stretches <= 0 and not lead_in):
        return out
    length = max(2, frames // (2 * (stretches + 1)))
    if lead_in:
        out[:min(frames - 1, length)] = True  # at least one frame in view after it
    for j in range(stretches):
        centre = (j + 1) * frames / (stretches + 1)
        lo = max(1, int(round(centre - length / 2)))
        out[lo:min(frames, lo + length)] = True
    return out


@functools.lru_cache(maxsize=1)
def _face_fractions() -> tuple[float, float, float, float]:
    """The face ellipse's tight box as fractions of the square face image of ``synthetic:faces``."""
    size = 240
    wld = world(0, "faces", size, size, 2)
    x1, y1, x2, y2 = _tight_box(wld.mask[wld.pad:wld.pad + size, wld.pad:wld.pad + size])
    return x1 / size, y1 / size, x2 / size, y2 / size


def face_square(box: Any) -> np.ndarray:
    """The square (x1, y1, x2, y2, float pixels) that frames a face whose ellipse has the tight box
    ``box`` the way ``synthetic:faces`` frames its images: crop it, resize it to the embedder's input
    and the face sits where the embedder saw faces in training."""
    x1, y1, x2, y2 = (float(t) for t in np.asarray(box, dtype=np.float64).reshape(4))
    fx1, fy1, fx2, fy2 = _face_fractions()
    side = 0.5 * ((x2 - x1) / (fx2 - fx1) + (y2 - y1) / (fy2 - fy1))
    left = 0.5 * ((x1 - fx1 * side) + (x2 - fx2 * side))
    top = 0.5 * ((y1 - fy1 * side) + (y2 - fy2 * side))
    return np.asarray([left, top, left + side, top + side])


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    v, u = np.meshgrid(np.arange(height) / max(height, width), np.arange(width) / max(height, width),
                       indexing="ij")
    bg = np.empty((height, width, 3), np.float32)
    bg[:] = rng.uniform(0.3, 0.7, 3)
    for _ in range(5):  # smooth colour waves
        fx, fy = rng.uniform(-3.0, 3.0, 2)
        wave = np.cos(2 * np.pi * (fx * u + fy * v) + rng.uniform(0, 2 * np.pi))
        bg += (wave[..., None] * rng.uniform(-0.08, 0.08, 3)).astype(np.float32)
    fine = rng.standard_normal((height, width, 1)).astype(np.float32)  # a fixed fine texture (grain)
    bg += 0.04 * fine
    return np.clip(bg, 0.0, 1.0)


def _tight_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha > 0.5)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _square(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    outer, inner = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    patch = np.empty((size, size, 3), np.float32)
    patch[:] = outer
    k = max(1, size // 4)
    patch[k:size - k, k:size - k] = inner
    return patch, np.ones((size, size), np.float32)


def _disc(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    colour = rng.uniform(0.15, 0.95, 3)
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt((x - c) ** 2 + (y - c) ** 2) / (size / 2.0)
    alpha = np.clip((1.0 - r) * size / 2.0 + 0.5, 0.0, 1.0)  # one pixel of anti-aliasing
    light = np.sqrt((x - 0.35 * size) ** 2 + (y - 0.35 * size) ** 2) / size  # highlight at the top left
    shade = np.clip(1.15 - 0.9 * light, 0.35, 1.15)
    return np.clip(colour * shade[..., None], 0.0, 1.0).astype(np.float32), alpha.astype(np.float32)


class SyntheticVideo(DetectionImages):
    """``videos`` synthetic videos of ``frames`` frames; frame ``f`` of video ``v`` is index ``v * frames + f``."""

    def __init__(self, *, seed: int, split: str, videos: int, frames: int, height: int, width: int, objects: int,
                 moving_fraction: float, static_stretches: int, noise: float, identities: int, difficulty: float,
                 latent_dim: int, min_size: float, max_size: float, preprocessing: Preprocessing,
                 source: str, truth: str = "all", visits: bool = False) -> None:
        self.seed, self.split, self.videos, self.frames = seed, split, videos, frames
        self.height, self.width, self.objects = height, width, objects
        self.moving_fraction, self.static_stretches, self.noise = moving_fraction, static_stretches, noise
        self.num_identities, self.difficulty, self.latent_dim = identities, difficulty, latent_dim
        self.min_size, self.max_size = min_size, max_size
        self.truth, self.visits = truth, visits
        self.preprocessing, self.source = preprocessing, source
        self.class_names = list(CLASSES)
        self.num_classes = len(CLASSES)
        self._videos: dict[int, _Video] = {}  # plain data, so DataLoader workers can pickle the set

    def _video(self, v: int) -> _Video:
        if v not in self._videos:
            if len(self._videos) >= 8:
                self._videos.pop(next(iter(self._videos)))
            self._videos[v] = self._make_video(v)
        return self._videos[v]

    def __len__(self) -> int:
        return self.videos * self.frames

    def sequences(self) -> list[list[int]]:
        return [list(range(v * self.frames, (v + 1) * self.frames)) for v in range(self.videos)]

    def _where(self, i: int) -> tuple[int, int]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"{self.source}: frame {i} out of range for {len(self)} frames")
        return divmod(i, self.frames)

    # --- one video's plan ----------------------------------------------------------------------------

    def _make_video(self, v: int) -> _Video:
        rng = _rng(self.seed, _T_VIDEO, _SPLIT_CODE[self.split], v)
        h, w = self.height, self.width
        background = _background(rng, h, w)
        n_moving = int(round(self.moving_fraction * self.objects))
        moving_set = set(rng.permutation(self.objects)[:n_moving].tolist())
        short = min(h, w)
        objs: list[_Object] = []
        for k in range(self.objects):
            label = k % len(CLASSES)
            size = int(round(rng.uniform(self.min_size, self.max_size) * short))
            size = max(6, min(size, short))
            identity = -1
            if CLASSES[label] == "face":
                size = min(short, int(round(size * FACE_PATCH)))  # the face's box is about 0.8 of its patch
                identity = int(rng.integers(0, self.num_identities))
                wld = world(self.seed, "faces", size, size, self.latent_dim)
                eps = rng.standard_normal(self.latent_dim).astype(np.float32)
                z = identity_latent(self.seed, identity, self.latent_dim) + np.float32(
                    self.difficulty * FACE_STYLE.latent_noise) * eps
                patch = wld.render(FACE_STYLE, self.difficulty, z, rng, shift=False).astype(np.float32) / 255.0
                alpha = wld.mask[wld.pad:wld.pad + size, wld.pad:wld.pad + size].copy()
            elif CLASSES[label] == "square":
                patch, alpha = _square(rng, size)
            else:
                patch, alpha = _disc(rng, size)
            is_moving = k in moving_set
            start = rng.uniform(0, 1, 2) * np.asarray([w - size, h - size], dtype=np.float64)
            if is_moving:
                angle = rng.uniform(0, 2 * np.pi)
                direction = np.asarray([np.cos(angle), np.sin(angle)])
                velocity = direction / np.abs(direction).max() * rng.uniform(1.0, 2.5)
            else:
                velocity = np.zeros(2)
            objs.append(_Object(label, identity, patch, alpha, _tight_box(alpha), is_moving, start, velocity))
        # still objects first (spread out where the frame allows), moving ones drawn over them
        still = [o for o in objs if not o.moving]
        for j, o in enumerate(still):
            size = o.patch.shape[0]
            for _ in range(30):
                if not any(_overlap(o.start, size, p.start, p.patch.shape[0]) for p in still[:j]):
                    break
                o.start = rng.uniform(0, 1, 2) * np.asarray([w - size, h - size], dtype=np.float64)
        objs = still + [o for o in objs if o.moving]
        static = static_frames(self.frames, self.static_stretches, lead_in=self.visits)
        steps = np.maximum(np.cumsum(np.where(static, 0, 1)) - 1, 0)  # motion time: held in static runs
        steps[0] = 0
        positions = np.zeros((self.frames, len(objs), 2), dtype=np.int64)
        for k, o in enumerate(objs):
            size = o.patch.shape[0]
            for axis, span in ((0, w - size), (1, h - size)):
                path = _bounce(o.start[axis] + o.velocity[axis] * steps, float(span))
                positions[:, k, axis] = np.floor(path + 0.5).astype(np.int64)
        mover = np.asarray([o.moving for o in objs], dtype=bool)
        visible = np.ones((self.frames, len(objs)), dtype=bool)
        if self.visits:  # moving objects are away during static stretches (the lead-in among them)
            visible[np.ix_(static, mover)] = False
        moved = visible & mover[None, :]  # frame 0: the moving objects in view
        if self.frames > 1:
            shifted = np.any(positions[1:] != positions[:-1], axis=2)
            moved[1:] = visible[1:] & (shifted | ~visible[:-1])
        moving = np.ones(self.frames, dtype=bool)  # something moved, came into view or left it
        if self.frames > 1:
            moving[1:] = np.any(moved[1:] | (visible[:-1] & ~visible[1:]), axis=1)
        return _Video(background, objs, positions, visible, moved, moving, static)

    # --- frames -------------------------------------------------------------------------------------

    def _compose(self, i: int, pixels: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        v, f = self._where(i)
        video = self._video(v)
        canvas = video.background.copy() if pixels else None
        owner = np.full((self.height, self.width), -1, dtype=np.int64)
        for k, o in enumerate(video.objects):
            if not video.visible[f, k]:
                continue
            x, y = (int(t) for t in video.positions[f, k])
            size = o.patch.shape[0]
            if canvas is not None:
                region = canvas[y:y + size, x:x + size]
                a = o.alpha[..., None]
                region[:] = a * o.patch + (1.0 - a) * region
            owner[y:y + size, x:x + size][o.alpha > 0.5] = k
        boxes, labels, ids = [], [], []
        for k, o in enumerate(video.objects):
            if not video.visible[f, k] or (self.truth == "moving" and not video.moved[f, k]):
                continue
            x, y = (int(t) for t in video.positions[f, k])
            if np.count_nonzero(owner == k) < MIN_VISIBLE * np.count_nonzero(o.alpha > 0.5):
                continue
            bx1, by1, bx2, by2 = o.box
            boxes.append([x + bx1, y + by1, x + bx2, y + by2])
            labels.append(o.label)
            ids.append(o.identity)
        img = None
        if canvas is not None:
            if self.noise > 0:
                rng = _rng(self.seed, _T_NOISE, _SPLIT_CODE[self.split], v, f)
                canvas += np.float32(self.noise) * rng.standard_normal(canvas.shape, dtype=np.float32)
            img = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return (img, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                np.asarray(ids, np.int64))

    def rgb(self, i: int) -> np.ndarray:
        img = self._compose(i, pixels=True)[0]
        assert img is not None
        return img

    def target(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        _, boxes, labels, _ = self._compose(i, pixels=False)
        return boxes, labels

    def identities(self, i: int) -> np.ndarray:
        """The identity of each box of ``target(i)`` (same order): a ``synthetic:faces`` identity for a
        face (same ``seed`` and ``latent_dim``), -1 for any other class."""
        return self._compose(i, pixels=False)[3]

    def moving(self, i: int) -> bool:
        """Whether any object moved since the previous frame of its video (True for a video's first frame)."""
        v, f = self._where(i)
        return bool(self._video(v).moving[f])

    def static(self, i: int) -> bool:
        """Whether frame ``i`` lies in one of the static stretches (nothing moves there by construction)."""
        v, f = self._where(i)
        return bool(self._video(v).static[f])


def _overlap(a: np.ndarray, sa: int, b: np.ndarray, sb: int) -> bool:
    return bool(a[0] < b[0] + sb and b[0] < a[0] + sa and a[1] < b[1] + sb and b[1] < a[1] + sa)


class SyntheticVideoDataset(DatasetPlugin):
    """The ``synthetic-video`` plugin, also reached as ``synthetic:video``."""

    name: ClassVar[str] = "synthetic-video"
    detects: ClassVar[str] = "built in (synthetic:video), never auto-detected"
    auto_detect: ClassVar[bool] = False
    OPTIONS: ClassVar[dict[str, Any]] = {
        "kind": "video", "seed": 0, "split": "train", "videos": 4, "frames": 32, "height": 96, "width": 96,
        "objects": 4, "moving_fraction": 0.5, "static_stretches": 1, "noise": 0.02, "identities": 8,
        "difficulty": 1.0, "latent_dim": 32, "min_size": 0.2, "max_size": 0.4, "truth": "all", "visits": False,
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return False

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> SyntheticVideo:
        if path not in (None, "", "video"):
            raise FcbenchError(f"dataset '{cls.name}' takes no path (got '{path}'); give it as synthetic:video "
                               "with --data-opt KEY=VALUE options")
        o = cls.check_options(options)
        check_choice("synthetic", "kind", o["kind"], ("video",))
        split = check_choice("synthetic:video", "split", o["split"], tuple(_SPLIT_CODE))
        truth = check_choice("synthetic:video", "truth", o["truth"], TRUTHS)
        if not isinstance(o["visits"], bool):
            raise FcbenchError(f"dataset 'synthetic:video': option visits must be true or false, got {o['visits']!r}")
        for key, low, high in (("videos", 1, 100_000), ("frames", 1, 1_000_000), ("height", 16, 4096),
                               ("width", 16, 4096), ("objects", 0, 64), ("static_stretches", 0, 1000),
                               ("identities", 1, 1 << 30), ("latent_dim", 2, 1024)):
            value = o[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise FcbenchError(f"dataset 'synthetic:video': option {key} must be an integer in "
                                   f"{low}..{high}, got {value!r}")
        for key, low, high in (("moving_fraction", 0.0, 1.0), ("noise", 0.0, 1.0), ("difficulty", 0.0, 4.0),
                               ("min_size", 0.05, 1.0), ("max_size", 0.05, 1.0)):
            if not low <= o[key] <= high:
                raise FcbenchError(f"dataset 'synthetic:video': option {key} must be in [{low:g}, {high:g}], "
                                   f"got {o[key]}")
        if o["min_size"] > o["max_size"]:
            raise FcbenchError(f"dataset 'synthetic:video': min_size {o['min_size']} exceeds max_size "
                               f"{o['max_size']}; give min_size <= max_size")
        source = (f"synthetic:video seed={o['seed']} {o['videos']}x{o['frames']} frames "
                  f"{o['height']}x{o['width']}" + (" test" if split == "test" else ""))
        for key in ("objects", "moving_fraction", "static_stretches", "noise", "identities", "difficulty",
                    "latent_dim", "min_size", "max_size", "truth", "visits"):
            if o[key] != cls.OPTIONS[key]:
                source += f" {key}={o[key]}"
        return SyntheticVideo(seed=int(o["seed"]), split=split, videos=o["videos"], frames=o["frames"],
                              height=o["height"], width=o["width"], objects=o["objects"],
                              moving_fraction=float(o["moving_fraction"]), static_stretches=o["static_stretches"],
                              noise=float(o["noise"]), identities=o["identities"], difficulty=float(o["difficulty"]),
                              latent_dim=o["latent_dim"], min_size=float(o["min_size"]),
                              max_size=float(o["max_size"]), preprocessing=preprocessing, source=source,
                              truth=truth, visits=o["visits"])
