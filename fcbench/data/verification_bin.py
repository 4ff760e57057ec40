"""insightface verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...).

A ``.bin`` is a pickle of ``(bins, issame_list)``: ``bins`` holds ``2 * len(issame_list)`` encoded
images (JPEG/PNG bytes), pair ``k`` being ``bins[2k]`` and ``bins[2k+1]``, and ``issame_list`` one
bool per pair. Files written by Python 2 need ``encoding="bytes"``, which is what is used here.
Unpickling is restricted to plain data (bytes, lists, numpy arrays), so a file cannot run code.

``flip=True`` returns every image mirrored left-right; insightface's evaluation adds the
embedding of the plain and of the mirrored image (open the set twice, or call ``flipped(i)``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.data.base import DatasetPlugin, VerificationPairs, decode_image, load_data_pickle
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

_IMAGE_TYPES = (bytes, bytearray, memoryview, np.ndarray)


class VerificationBinDataset(DatasetPlugin, VerificationPairs):
    """An insightface verification ``.bin``. The class attribute ``name`` is the plugin name; an
    opened set's ``name`` is the set's (the file stem, e.g. ``lfw``, or the ``name`` option)."""

    name: ClassVar[str] = "verification-bin"  # instances override it with the set's name
    detects: ClassVar[str] = "a .bin file of insightface verification pairs"
    OPTIONS: ClassVar[dict[str, Any]] = {"flip": False, "name": None}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return Path(path).is_file() and Path(path).suffix.lower() == ".bin"

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> VerificationBinDataset:
        opts = cls.check_options(options)
        if opts["name"] is not None and not isinstance(opts["name"], str):
            raise FcbenchError(f"dataset '{cls.name}': option 'name' must be a string, got {opts['name']!r}")
        p = cls.need_path(path)
        if not p.is_file():
            raise FcbenchError(f"dataset '{cls.name}': {p} is not a file; give the path of a .bin such as lfw.bin")
        return cls(p, preprocessing, flip=opts["flip"], name=opts["name"])

    def __init__(self, path: Path, preprocessing: Preprocessing, *, flip: bool = False,
                 name: str | None = None) -> None:
        what = "an insightface verification set"
        obj = load_data_pickle(path, what)

        def bad(why: str) -> FcbenchError:
            return FcbenchError(f"{path}: not {what}: {why}; expected a pickle of (images, issame_list) "
                                "as insightface writes lfw.bin")

        if not isinstance(obj, (tuple, list)) or len(obj) != 2:
            raise bad(f"holds a {type(obj).__name__}, not a pair (images, issame_list)")
        bins, issame = obj
        if not isinstance(bins, (list, tuple)) or not all(isinstance(b, _IMAGE_TYPES) for b in bins):
            raise bad("the first element is not a list of encoded images (bytes)")
        try:
            same = np.asarray(issame)
        except Exception:
            raise bad("issame_list is not a list of bools") from None
        if same.ndim != 1 or not (same.dtype == bool or np.issubdtype(same.dtype, np.integer)):
            raise bad(f"issame_list is not a flat list of bools (dtype {same.dtype}, shape {same.shape})")
        if len(bins) % 2:
            raise bad(f"it has an odd number of images ({len(bins)}); pairs need two each")
        if len(bins) != 2 * same.size:
            raise bad(f"it has {len(bins)} images but {same.size} issame entries (needs 2 images per entry)")
        if same.size == 0:
            raise bad("it holds no pairs")
        self.bins = list(bins)
        self.issame = same.astype(bool)
        self.preprocessing = preprocessing
        self.source = str(path)
        self.name = name or path.stem
        self.flip = bool(flip)

    def rgb(self, i: int) -> np.ndarray:
        return decode_image(self.bins[i], f"{self.source}: image {i} (pair {i // 2})")


def write_verification_bin(path: str | Path, pairs: VerificationPairs) -> Path:
    """Write ``pairs`` (any :class:`VerificationPairs`, e.g. ``open_dataset("synthetic:pairs")``) as
    an insightface verification ``.bin``: a pickle of (JPEG bytes of every image, issame_list), the
    layout of insightface's ``lfw.bin``. Returns the path; :class:`VerificationBinDataset` reads it."""
    from PIL import Image

    bins = []
    for i in range(len(pairs)):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pairs.rgb(i))).save(buf, format="JPEG", quality=95)
        bins.append(buf.getvalue())
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump((bins, [bool(s) for s in np.asarray(pairs.issame)]), f, protocol=2)
    tmp.replace(out)
    return out
