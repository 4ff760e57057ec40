"""The two dataset shapes every reader returns, and the helpers the readers share.

* :class:`LabelledImages` -- ``ds[i] -> (FloatTensor[C,H,W], int label)``; training, classification
  and identification.
* :class:`VerificationPairs` -- ``ds[i] -> FloatTensor[C,H,W]``; pair ``k`` is images ``2k`` and
  ``2k+1`` (insightface order) and ``issame[k]`` says whether they show the same identity.

Both decode to an RGB uint8 HWC array first (``rgb(i)``) and then go through
``preprocessing.apply``, so real and synthetic images take the same path to the model.
A plugin class (the entry-point target) has a ``name``, ``sniff(path)``, ``options()`` and
``open(path, *, preprocessing, **options)``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError, suggest


def to_tensor(preprocessing: Preprocessing, rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 HWC -> the model's float tensor (CHW, or HWC for an NHWC layout)."""
    return torch.from_numpy(preprocessing.apply(rgb))


class LabelledImages(Dataset):
    """Images with integer class labels in ``0 .. num_classes-1``.

    Subclasses set ``preprocessing``, ``source``, ``num_classes``, ``class_names`` and implement
    ``__len__``, ``rgb(i)`` and ``label(i)``; ``labels()`` may be overridden when it can be
    answered without decoding images.
    """

    preprocessing: Preprocessing
    source: str
    num_classes: int
    class_names: list[str] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def rgb(self, i: int) -> np.ndarray:
        """The decoded image ``i`` as RGB uint8 HWC, before preprocessing."""
        raise NotImplementedError

    def label(self, i: int) -> int:
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """Every sample's label as an int64 array (in index order)."""
        return np.asarray([self.label(i) for i in range(len(self))], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = _check_index(i, len(self), self.source)
        return to_tensor(self.preprocessing, self.rgb(i)), int(self.label(i))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, n={len(self)}, classes={self.num_classes})"


class VerificationPairs(Dataset):
    """``2 * n_pairs`` images; pair ``k`` is images ``2k`` and ``2k+1``, ``issame[k]`` its truth.

    With ``flip=True`` every image is returned mirrored left-right; insightface's flip test adds
    the embeddings of the plain and the flipped image (open the set twice, or use ``flipped(i)``).
    """

    preprocessing: Preprocessing
    source: str
    name: str
    issame: np.ndarray
    flip: bool = False

    def __len__(self) -> int:
        return 2 * int(self.issame.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    def rgb(self, i: int) -> np.ndarray:
        """The decoded image ``i`` as RGB uint8 HWC, before preprocessing and flipping."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> torch.Tensor:
        i = _check_index(i, len(self), self.source)
        img = self.rgb(i)
        return to_tensor(self.preprocessing, np.ascontiguousarray(img[:, ::-1]) if self.flip else img)

    def flipped(self, i: int) -> torch.Tensor:
        """Image ``i`` mirrored left-right (regardless of the ``flip`` option), preprocessed."""
        i = _check_index(i, len(self), self.source)
        return to_tensor(self.preprocessing, np.ascontiguousarray(self.rgb(i)[:, ::-1]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.source!r}, pairs={self.num_pairs})"


def _check_index(i: Any, n: int, source: str) -> int:
    try:
        i = int(i)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{source}: index must be an integer, got {i!r}") from exc
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"{source}: index {i} out of range for {n} items")
    return i


def gallery_probe_split(ds: Any) -> tuple[list[int], list[int]]:
    """Closed-set identification split: the first sample of each class is its gallery entry,
    every other sample is a probe. Returns (gallery_indices, probe_indices), both ascending."""
    if hasattr(ds, "labels") and callable(ds.labels):
        labels = np.asarray(ds.labels())
    elif hasattr(ds, "issame"):
        raise FcbenchError(f"{getattr(ds, 'source', 'dataset')}: a verification pair set has no class labels "
                           "for a gallery/probe split; use labelled images")
    else:
        labels = np.asarray([int(ds[i][1]) for i in range(len(ds))])
    seen: set[int] = set()
    gallery: list[int] = []
    probe: list[int] = []
    for i, lab in enumerate(labels.tolist()):
        if lab in seen:
            probe.append(i)
        else:
            seen.add(lab)
            gallery.append(i)
    return gallery, probe


# --- shared by the plugins -------------------------------------------------------------------

class DatasetPlugin:
    """Base of the plugin classes: option checking and a default ``sniff``."""

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Allowed options and their defaults."""
        return dict(cls.OPTIONS)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return False

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; unknown names or wrong types raise FcbenchError."""
        allowed = cls.options()
        out = dict(allowed)
        for key, value in options.items():
            if key not in allowed:
                valid = ", ".join(sorted(allowed)) or "none"
                raise FcbenchError(f"dataset '{cls.name}': unknown option '{key}'{suggest(key, allowed)}; "
                                   f"valid options: {valid}")
            out[key] = _coerce(cls.name, key, value, allowed[key])
        return out

    @classmethod
    def need_path(cls, path: str | Path | None) -> Path:
        if path is None or str(path) == "":
            raise FcbenchError(f"dataset '{cls.name}' needs a path: give it as {cls.name}:PATH "
                               "(or name and path in a recipe)")
        p = Path(path).expanduser()
        if not p.exists():
            raise FcbenchError(f"dataset '{cls.name}': {p} does not exist; check the path")
        return p


def _coerce(plugin: str, key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, kind):
        return value
    raise FcbenchError(f"dataset '{plugin}': option '{key}' must be {kind.__name__} (like {default!r}), "
                       f"got {value!r}")


def check_choice(plugin: str, key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise FcbenchError(f"dataset '{plugin}': option {key}='{value}' is not one of {', '.join(choices)}"
                           f"{suggest(str(value), choices)}")
    return value


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, where: str) -> np.ndarray:
    """JPEG/PNG/BMP bytes -> RGB uint8 HWC; a corrupt image raises FcbenchError naming ``where``."""
    from PIL import Image, UnidentifiedImageError

    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    try:
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FcbenchError(f"{where}: image cannot be decoded ({exc}); the file is corrupt, re-create it") from exc


def read_image_file(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FcbenchError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return decode_image(data, str(path))


# Globals a plain data pickle (CIFAR batches, verification .bin) may reference: numpy arrays and
# scalars and a few builtins. Anything else is refused, so loading a data file runs no code.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
    ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("__builtin__", "bytearray"), ("__builtin__", "set"), ("__builtin__", "frozenset"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("__builtin__", "object"),
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not plain data)")


def load_data_pickle(path: Path, what: str) -> Any:
    """Unpickle a data file with ``encoding='bytes'`` (as the Python 2 era files need), allowing
    only numpy arrays and builtins; failures raise FcbenchError naming the file and ``what``."""
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise FcbenchError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # any unpickling failure means "not the format"
        raise FcbenchError(f"{path}: not {what} (cannot unpickle: {type(exc).__name__}: {exc}); "
                           "check the file") from exc
