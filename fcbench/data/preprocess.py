"""Preprocessing as data: recorded in checkpoints and manifests, never guessed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_RESAMPLE = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC"}


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 HWC image becomes the model's input tensor.

    ``size`` is (height, width); the image is resized to it with Pillow (``resize``: bilinear,
    nearest or bicubic), converted to ``channel_order``, scaled as ``(x / 255 - mean) / std`` per
    channel and laid out as ``layout``. Grey (HW or HW1) and RGBA inputs become RGB first.
    The face default maps pixels to [-1, 1] (mean 0.5, std 0.5), as insightface does.
    """

    size: tuple[int, int] = (112, 112)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (height, width) of positive integers, got {self.size!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or 0.0 in self.std:
            raise ValueError(f"mean and std need 3 values each and std no zero, got {self.mean!r}, {self.std!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, got {self.layout!r}")
        if self.resize not in _RESAMPLE:
            raise ValueError(f"resize must be one of {', '.join(_RESAMPLE)}, got {self.resize!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**d)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 HWC image -> float32 CHW (or HWC for NHWC) array, resized and normalised (Pillow only
        when it must resize: a device's bench worker, given an image of the right size, needs numpy only)."""
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"expected an RGB HWC image, got shape {image.shape}")
        image = image[..., :3]  # RGBA: drop alpha
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {image.dtype}")
        h, w = self.size
        if image.shape[0] != h or image.shape[1] != w:
            from PIL import Image

            resample = getattr(Image.Resampling, _RESAMPLE[self.resize])
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), resample))
        x = image.astype(np.float32) / 255.0
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=np.float32)


FACE = Preprocessing()
IMAGENET = Preprocessing(size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CIFAR = Preprocessing(size=(32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
