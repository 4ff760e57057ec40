"""Dataset readers: one call, :func:`open_dataset`, for every format.

Spec forms (a string, or a dict ``{"name": ..., "path": ..., **options}`` as recipes write it):

* ``synthetic``, ``synthetic:faces``, ``synthetic:pairs``, ``synthetic:classes``, ``synthetic:video`` -- built-in
  data (``video``: frames with object boxes, :mod:`fcbench.data.synthetic_video`);
* ``NAME:PATH`` -- an explicit plugin, e.g. ``cifar10:/data/cifar-10-batches-py``;
* ``PATH`` -- auto-detected by asking each plugin's ``sniff``.

What comes back is a :class:`~fcbench.data.base.LabelledImages`, a
:class:`~fcbench.data.base.VerificationPairs` or (detection readers) a
:class:`~fcbench.data.detection.DetectionImages`; all carry ``.preprocessing`` and ``.source``.
Importing this package stays light (no torch); the readers load on first use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcbench.data.preprocess import FACE, Preprocessing
from fcbench.errors import FcbenchError, suggest

if TYPE_CHECKING:
    from fcbench.data.base import LabelledImages, VerificationPairs
    from fcbench.data.detection import DetectionImages

__all__ = ["open_dataset", "gallery_probe_split", "detect", "LabelledImages", "VerificationPairs", "Preprocessing",
           "write_verification_bin", "write_video"]

# Built-in formats are asked first, most specific first; third-party plugins after, by name.
# (voc and cdnet before imagefolder: their JPEGImages/ and input/ folders look like a class folder)
SNIFF_ORDER = ("insightface-rec", "verification-bin", "cifar10", "coco", "voc", "cdnet", "video", "imagefolder")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]+")


def __getattr__(name: str) -> Any:
    if name in ("LabelledImages", "VerificationPairs", "gallery_probe_split"):
        from fcbench.data import base

        return getattr(base, name)
    if name == "write_verification_bin":
        from fcbench.data.verification_bin import write_verification_bin

        return write_verification_bin
    if name == "write_video":
        from fcbench.data.video import write_video

        return write_video
    raise AttributeError(f"module 'fcbench.data' has no attribute '{name}'")


def _plugin_names() -> list[str]:
    from fcbench import plugins

    return plugins.names("dataset")


def _load(name: str) -> Any:
    from fcbench import plugins

    return plugins.load("dataset", name)


def parse_spec(spec: str | dict[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """(plugin name or None for auto-detection, path or None, options from a dict spec)."""
    if isinstance(spec, dict):
        opts = dict(spec)
        name, path = opts.pop("name", None), opts.pop("path", None)
        if name is None and path is None:
            raise FcbenchError(f"data spec {spec!r} needs 'name' or 'path' (e.g. {{name: cifar10, path: DIR}})")
        return (str(name) if name is not None else None), (str(path) if path is not None else None), opts
    if not isinstance(spec, (str, Path)):
        raise FcbenchError(f"data spec must be a string or a mapping, got {type(spec).__name__}")
    text = str(spec).strip()
    if not text:
        raise FcbenchError("data spec is empty; give synthetic[:kind], NAME:PATH or a path")
    known = _plugin_names()
    if text in known:
        return text, None, {}
    if ":" in text:
        name, _, rest = text.partition(":")
        if name in known:
            return name, (rest or None), {}
        if not Path(text).expanduser().exists() and _NAME_RE.fullmatch(name):
            raise FcbenchError(f"unknown dataset '{name}' in '{text}'{suggest(name, known)}; "
                               f"known: {', '.join(known)}; or give an existing path")
    return None, text, {}


def detect(path: str | Path) -> str:
    """The name of the plugin whose ``sniff`` recognises ``path``; FcbenchError when none does."""
    p = Path(path).expanduser()
    known = _plugin_names()
    if not p.exists():
        hint = suggest(str(path), known)
        raise FcbenchError(f"data path {p} does not exist{hint}; give an existing path, NAME:PATH or "
                           f"synthetic[:kind]")
    order = [n for n in SNIFF_ORDER if n in known] + [n for n in known if n not in SNIFF_ORDER]
    formats = []
    for name in order:
        try:
            cls = _load(name)
        except FcbenchError:
            continue
        sniff = getattr(cls, "sniff", None)
        if sniff is None or not getattr(cls, "auto_detect", True):
            continue
        formats.append(f"{name} ({getattr(cls, 'detects', 'see its docs')})")
        try:
            if sniff(p):
                return name
        except Exception:  # a broken third-party sniff must not hide the others
            continue
    raise FcbenchError(f"{p}: no dataset format recognises it; formats: {'; '.join(formats)}; "
                       "or name the format explicitly as NAME:PATH")


def open_dataset(
    spec: str | dict[str, Any], *, preprocessing: Preprocessing | None = None, **options: Any
) -> LabelledImages | VerificationPairs | DetectionImages:
    """Open a dataset from ``spec`` with ``preprocessing`` (default: the face preprocessing).

    ``options`` go to the plugin (on top of those in a dict spec); unknown ones raise FcbenchError
    listing the valid ones.
    """
    name, path, spec_opts = parse_spec(spec)
    opts = {**spec_opts, **options}
    if name is None:
        name = detect(path or "")
    cls = _load(name)
    return cls.open(path, preprocessing=preprocessing or FACE, **opts)
