"""Built-in synthetic data that a small CNN can genuinely learn, generated on the fly.

Faces (``kind="faces"``, training, LabelledImages) and pairs (``kind="pairs"``, verification) live
in one *world* derived from the seed: a soft face-shaped mask with a mean-face template (skin,
eyes, brows, mouth), a basis of ``latent_dim`` identity patterns (colour Gabor blobs and smooth
colour cosines inside the face), a few nuisance patterns (lighting ramps and washes) and a
background. An identity is a latent vector ``z`` (standard normal, seeded by its id); a sample is

    template + id_scale * (z + latent_noise * eps) . B_id + nuisance_scale * n . B_nuis + background

cropped at a random shift, with per-channel contrast/brightness jitter and pixel noise, rendered
directly at ``preprocessing.size`` as RGB uint8 and then preprocessed like any decoded image.
Identity is a direction in latent space, the nuisances are large in pixel space: raw-pixel cosine
verifies pairs poorly, the true latent almost perfectly, and a trained network lands in between.

``pairs`` uses identities disjoint from every training identity (open set, like LFW vs MS1M).
``classes`` is a classification world of its own (no face, strong colour casts, so mean colour
does not separate classes); ``split`` train/test draws different samples of the same classes
(for ``faces`` too: other samples of the training identities).

Every sample is a pure function of (seed, kind, split, index): no global RNG is touched, so DDP
ranks and DataLoader workers see identical data. ``difficulty`` scales every nuisance (0: every
sample of an identity is the same image). Train and evaluate with the same ``seed``: it also
fixes the world.

Calibration at 112x112, defaults, seed 0, 600 pairs, 10-fold accuracy: raw-pixel cosine 66.8 %,
cosine after a random projection to 256-d 66.8 %, untrained IResNet-18 (width 0.25) 64.8 %, true
per-sample latent 99.8 %; that IResNet trained with ArcFace on 64x32 faces (quickstart settings)
reaches 89.5 % after one epoch and 94.5 % after three. ``classes`` at 32x32 (100 per class):
mean colour 13 % (chance 10 %), ridge regression on pixels 51 %, nearest class mean of the latent
100 %; a 3-layer CNN on 1000 training images ~75 %.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from fcbench.data.base import DatasetPlugin, LabelledImages, VerificationPairs, check_choice
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

KINDS = ("faces", "pairs", "classes")  # and "video": fcbench/data/synthetic_video.py
_T_WORLD, _T_IDENTITY, _T_SAMPLE, _T_PAIRS, _T_CLASS = 11, 12, 13, 14, 15
_KIND_CODE = {"faces": 1, "pairs": 2, "classes": 3}
_SPLIT_CODE = {"train": 0, "test": 1}
PAIR_IDENTITY_OFFSET = 1 << 40  # pair identities never collide with training identities 0..n-1


@dataclass(frozen=True)
class Style:
    """Amplitudes (in [0, 1] pixel units unless said otherwise) at difficulty 1."""

    face: bool  # draw the face template and mask (faces/pairs) or fill the frame (classes)
    id_scale: float  # RMS amplitude of the identity / class signal
    latent_noise: float  # per-sample noise on z, relative to |z| ~ sqrt(latent_dim)
    nuisance: float  # amplitude of each lighting/pose pattern
    shift: float  # max translation, fraction of the image size
    contrast: float  # log-normal sigma of the contrast factor
    brightness: float  # sigma of the per-channel brightness offset
    noise: float  # sigma of the pixel noise
    background: float  # half-range of the background colour around mid-grey, and its gradient sigma


FACE_STYLE = Style(face=True, id_scale=0.15, latent_noise=0.30, nuisance=0.05, shift=0.06,
                   contrast=0.20, brightness=0.08, noise=0.04, background=0.15)
CLASS_STYLE = Style(face=False, id_scale=0.12, latent_noise=1.00, nuisance=0.10, shift=0.15,
                    contrast=0.25, brightness=0.15, noise=0.05, background=0.3)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFFFFFFFFFF for k in key]))


def _gabor(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, cx: float, cy: float,
           sigma: float, freq: float) -> np.ndarray:
    theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    du, dv = u - cx, v - cy
    env = np.exp(-(du**2 + dv**2) / (2 * sigma**2))
    return env * np.cos(2 * np.pi * freq * (du * np.cos(theta) + dv * np.sin(theta)) + phase)


def _colourise(pattern: np.ndarray, rng: np.random.Generator, grey: float = 0.6) -> np.ndarray:
    colour = grey + (1 - grey) * rng.standard_normal(3)  # mostly luminance, some chroma
    return pattern[..., None] * colour


class World:
    """The fixed basis of one (seed, family, size): one matmul renders a padded canvas."""

    def __init__(self, seed: int, family: str, height: int, width: int, latent_dim: int, style: Style) -> None:
        rng = _rng(seed, _T_WORLD, 1 if family == "faces" else 2, latent_dim)
        self.height, self.width, self.latent_dim = height, width, latent_dim
        self.pad = int(np.ceil(style.shift * max(height, width)))
        hp, wp = height + 2 * self.pad, width + 2 * self.pad
        # normalised coordinates: the un-shifted image spans [-0.5, 0.5] on both axes
        v, u = np.meshgrid((np.arange(hp) - self.pad + 0.5) / height - 0.5,
                           (np.arange(wp) - self.pad + 0.5) / width - 0.5, indexing="ij")
        if style.face:
            r = np.sqrt((u / 0.36) ** 2 + ((v + 0.02) / 0.46) ** 2)
            mask = 1.0 / (1.0 + np.exp((r - 1.0) * 18.0))
        else:
            mask = np.ones_like(u)
        self.mask = mask.astype(np.float32)  # the face's soft mask on the padded canvas (for synthetic video)
        layers: list[np.ndarray] = [self._template(u, v, mask, style.face)]
        # identity (or class) patterns: localised colour Gabors and smooth colour cosines
        for k in range(latent_dim):
            if k % 3 != 2:
                cx, cy = rng.uniform(-0.22, 0.22), rng.uniform(-0.28, 0.28)
                pat = _gabor(u, v, rng, cx, cy, rng.uniform(0.07, 0.14), rng.uniform(1.5, 4.5))
            else:
                fx, fy = rng.uniform(-2.5, 2.5, 2)
                pat = np.cos(2 * np.pi * (fx * u + fy * v) + rng.uniform(0, 2 * np.pi))
            pat = _colourise(pat * mask, rng)
            layers.append(pat / np.sqrt(np.mean(pat[self.pad:self.pad + height, self.pad:self.pad + width] ** 2)))
        # nuisance: lighting ramps, broad washes and a low-frequency cosine, shared by everyone
        ramps = [u, v, u * v * 4, np.cos(np.pi * u * 1.2), np.cos(np.pi * v * 1.2),
                 np.cos(2 * np.pi * (0.8 * u - 0.6 * v) + rng.uniform(0, 2 * np.pi))]
        for ramp in ramps:
            pat = _colourise(ramp * mask, rng, grey=0.8)
            layers.append(pat / np.sqrt(np.mean(pat[self.pad:self.pad + height, self.pad:self.pad + width] ** 2)))
        self.n_nuisance = len(ramps)
        # background: flat colour (3 channels) and two gradients, outside the mask
        bg = 1.0 - mask
        for c in range(3):
            layer = np.zeros(u.shape + (3,))
            layer[..., c] = bg
            layers.append(layer)
        layers += [np.repeat((bg * u)[..., None], 3, -1), np.repeat((bg * v)[..., None], 3, -1)]
        # (n_layers, pixels); rendered with torch.matmul, not numpy's BLAS, whose spinning threads
        # would fight the training threads (and each DataLoader worker) for the cores
        self.basis = torch.from_numpy(np.stack([x.reshape(-1) for x in layers]).astype(np.float32))
        self.canvas_shape = (hp, wp, 3)
        self.noise = rng.standard_normal(height * width * 3 + 8192).astype(np.float32)

    @staticmethod
    def _template(u: np.ndarray, v: np.ndarray, mask: np.ndarray, face: bool) -> np.ndarray:
        if not face:
            return np.full(u.shape + (3,), 0.5)
        skin = np.asarray([0.78, 0.60, 0.50])
        shade = np.zeros_like(u)
        for cx, cy, sx, sy, depth in ((-0.14, -0.08, 0.06, 0.035, 0.45), (0.14, -0.08, 0.06, 0.035, 0.45),
                                      (-0.14, -0.17, 0.08, 0.015, 0.35), (0.14, -0.17, 0.08, 0.015, 0.35),
                                      (0.0, 0.22, 0.10, 0.03, 0.35), (0.0, 0.06, 0.025, 0.08, 0.12)):
            shade += depth * np.exp(-((u - cx) ** 2 / (2 * sx**2) + (v - cy) ** 2 / (2 * sy**2)))
        face_rgb = skin * (1.0 - np.clip(shade, 0, 0.8))[..., None]
        return face_rgb * mask[..., None]

    def render(self, style: Style, difficulty: float, z: np.ndarray, rng: np.random.Generator,
               shift: bool = True) -> np.ndarray:
        """One RGB uint8 HWC image of latent ``z`` (already noised) with fresh nuisances from ``rng``;
        ``shift=False`` keeps the face centred (``mask[pad:pad+h, pad:pad+w]`` is then its alpha)."""
        d, nn = self.latent_dim, self.n_nuisance
        coef = np.empty(self.basis.shape[0], dtype=np.float32)
        coef[0] = 1.0
        coef[1:1 + d] = (style.id_scale / np.sqrt(d)) * z
        coef[1 + d:1 + d + nn] = difficulty * style.nuisance * rng.standard_normal(nn)
        coef[1 + d + nn:4 + d + nn] = 0.5 + difficulty * style.background * rng.uniform(-1.0, 1.0, 3)
        coef[4 + d + nn:] = difficulty * style.background * rng.standard_normal(2)
        canvas = torch.matmul(torch.from_numpy(coef), self.basis).numpy().reshape(self.canvas_shape)
        h, w, p = self.height, self.width, self.pad
        reach = min(p, int(round(difficulty * p))) if shift else 0
        dy, dx = (int(t) for t in rng.integers(-reach, reach + 1, 2)) if shift else (0, 0)
        img = canvas[p + dy:p + dy + h, p + dx:p + dx + w]
        contrast = np.float32(np.exp(difficulty * style.contrast * rng.standard_normal()))
        offset = (0.5 - 0.5 * contrast + difficulty * style.brightness * rng.standard_normal(3)).astype(np.float32)
        start = int(rng.integers(0, self.noise.size - h * w * 3))
        noise = self.noise[start:start + h * w * 3].reshape(h, w, 3)
        out = img * contrast + offset + np.float32(difficulty * style.noise) * noise
        return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def world(seed: int, family: str, height: int, width: int, latent_dim: int) -> World:
    """The cached world of (seed, family, size); built once per process (~10 ms at 112x112)."""
    return World(seed, family, height, width, latent_dim, FACE_STYLE if family == "faces" else CLASS_STYLE)


def identity_latent(seed: int, identity: int, latent_dim: int) -> np.ndarray:
    """The latent of identity ``identity`` in the faces world of ``seed``."""
    return _rng(seed, _T_IDENTITY, identity, latent_dim).standard_normal(latent_dim).astype(np.float32)


def class_latent(seed: int, label: int, latent_dim: int) -> np.ndarray:
    """The prototype latent of class ``label`` in the classes world of ``seed``."""
    return _rng(seed, _T_CLASS, label, latent_dim).standard_normal(latent_dim).astype(np.float32)


class _Synthetic:
    """Shared by the three kinds: world, style and per-sample rendering."""

    kind: str
    seed: int
    difficulty: float
    preprocessing: Preprocessing

    def _setup(self, kind: str, seed: int, difficulty: float, latent_dim: int, split: str,
               preprocessing: Preprocessing, source: str) -> None:
        self.kind, self.seed, self.difficulty, self.latent_dim = kind, seed, difficulty, latent_dim
        self.split, self.preprocessing, self.source = split, preprocessing, source
        self.style = CLASS_STYLE if kind == "classes" else FACE_STYLE
        self._family = "classes" if kind == "classes" else "faces"

    def _sample_rng(self, i: int) -> np.random.Generator:
        return _rng(self.seed, _T_SAMPLE, _KIND_CODE[self.kind], _SPLIT_CODE[self.split], i)

    def _world(self) -> World:
        h, w = self.preprocessing.size
        return world(self.seed, self._family, h, w, self.latent_dim)

    def _base_latent(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def latent(self, i: int) -> np.ndarray:
        """The true per-sample latent of image ``i`` (identity latent plus its sample noise)."""
        rng = self._sample_rng(i)
        eps = rng.standard_normal(self.latent_dim).astype(np.float32)
        return self._base_latent(i) + np.float32(self.difficulty * self.style.latent_noise) * eps

    def rgb(self, i: int) -> np.ndarray:
        rng = self._sample_rng(i)
        eps = rng.standard_normal(self.latent_dim).astype(np.float32)
        z = self._base_latent(i) + np.float32(self.difficulty * self.style.latent_noise) * eps
        return self._world().render(self.style, self.difficulty, z, rng)


class SyntheticImages(_Synthetic, LabelledImages):
    """``faces`` (identities ``0..num_classes-1``) or ``classes``; sample ``i`` has label
    ``i // samples_per_class``."""

    def __init__(self, kind: str, num_classes: int, samples_per_class: int, **common: Any) -> None:
        self._setup(kind, **common)
        self.num_classes, self.samples_per_class = num_classes, samples_per_class
        self.class_names = None
        self.identity_ids = np.arange(num_classes, dtype=np.int64)
        latent = identity_latent if kind == "faces" else class_latent
        self.latents = np.stack([latent(self.seed, int(k), self.latent_dim) for k in self.identity_ids])

    def with_identities(self, identities: Any, samples_per_class: int | None = None) -> SyntheticImages:
        """A copy drawing the faces world's ``identities`` (any ids, e.g. ones no split uses: distractors),
        label ``k`` being ``identities[k]``; same seed, style and preprocessing."""
        import copy

        out = copy.copy(self)
        out.identity_ids = np.asarray(identities, dtype=np.int64).reshape(-1)
        latent = identity_latent if self.kind == "faces" else class_latent
        out.latents = np.stack([latent(self.seed, int(k), self.latent_dim) for k in out.identity_ids])
        out.num_classes = len(out.identity_ids)
        out.samples_per_class = self.samples_per_class if samples_per_class is None else int(samples_per_class)
        return out

    def __len__(self) -> int:
        return self.num_classes * self.samples_per_class

    def label(self, i: int) -> int:
        return int(i) // self.samples_per_class

    def labels(self) -> np.ndarray:
        return np.arange(len(self), dtype=np.int64) // self.samples_per_class

    def _base_latent(self, i: int) -> np.ndarray:
        return self.latents[self.label(i)]


class SyntheticPairs(_Synthetic, VerificationPairs):
    """Verification pairs of identities disjoint from the training ones, half same, half not."""

    def __init__(self, num_pairs: int, flip: bool, **common: Any) -> None:
        self._setup("pairs", **common)
        self.name = "synthetic-pairs"
        self.flip = flip
        n_same = num_pairs // 2
        self.issame = _rng(self.seed, _T_PAIRS, num_pairs).permutation(
            np.asarray([True] * n_same + [False] * (num_pairs - n_same)))
        k = np.arange(num_pairs, dtype=np.int64)
        first = PAIR_IDENTITY_OFFSET + 2 * k
        second = np.where(self.issame, first, first + 1)
        self.image_identities = np.stack([first, second], axis=1).reshape(-1)
        self.latents = np.stack([identity_latent(self.seed, int(j), self.latent_dim) for j in self.image_identities])

    def _base_latent(self, i: int) -> np.ndarray:
        return self.latents[i]


class SyntheticDataset(DatasetPlugin):
    """The ``synthetic`` plugin: ``synthetic[:faces|pairs|classes|video]``."""

    name: ClassVar[str] = "synthetic"
    detects: ClassVar[str] = "built in, never auto-detected"
    auto_detect: ClassVar[bool] = False
    OPTIONS: ClassVar[dict[str, Any]] = {
        "kind": "faces", "num_classes": None, "samples_per_class": 32, "num_pairs": 600, "seed": 0,
        "split": "train", "difficulty": 1.0, "latent_dim": 32, "flip": False,
    }
    DEFAULT_CLASSES: ClassVar[dict[str, int]] = {"faces": 64, "classes": 10}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return False

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing,
             **options: Any) -> Any:
        """``path`` is the kind (``synthetic:pairs`` gives ``path="pairs"``) or None; ``video`` is the
        ``synthetic-video`` plugin's (its own options)."""
        if (path or options.get("kind")) == "video":
            from fcbench.data.synthetic_video import SyntheticVideoDataset

            return SyntheticVideoDataset.open(None, preprocessing=preprocessing, **options)
        opts = cls.check_options(options)
        kind = opts["kind"]
        if path:
            if "kind" in options and options["kind"] != path:
                raise FcbenchError(f"dataset 'synthetic:{path}' conflicts with option kind={options['kind']}; "
                                   "give the kind once")
            kind = path
        check_choice(cls.name, "kind", kind, (*KINDS, "video"))
        split = check_choice(cls.name, "split", opts["split"], tuple(_SPLIT_CODE))
        num_classes = cls.DEFAULT_CLASSES.get(kind, 2) if opts["num_classes"] is None else opts["num_classes"]
        for key, value, low in (("num_classes", num_classes, 2), ("samples_per_class", opts["samples_per_class"], 1),
                                ("num_pairs", opts["num_pairs"], 2), ("latent_dim", opts["latent_dim"], 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise FcbenchError(f"dataset 'synthetic': option {key} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= opts["difficulty"] <= 4.0:
            raise FcbenchError(f"dataset 'synthetic': option difficulty must be in [0, 4], got {opts['difficulty']}")
        source = f"synthetic:{kind} seed={opts['seed']}"
        if kind == "pairs":
            source += f" pairs={opts['num_pairs']}"
        else:
            source += f" classes={num_classes}x{opts['samples_per_class']}" + (" test" if split == "test" else "")
        for key in ("difficulty", "latent_dim"):
            if opts[key] != cls.OPTIONS[key]:
                source += f" {key}={opts[key]}"
        common = {"seed": int(opts["seed"]), "difficulty": float(opts["difficulty"]),
                  "latent_dim": opts["latent_dim"], "split": split, "preprocessing": preprocessing,
                  "source": source}
        if kind == "pairs":
            return SyntheticPairs(opts["num_pairs"], bool(opts["flip"]), **common)
        return SyntheticImages(kind, num_classes, opts["samples_per_class"], **common)
