"""Artifacts and their manifests.

Every file fcbench produces (a training checkpoint now; ONNX, TFLite, OpenVINO, .ptl, .pte
files as converters land) gets a JSON manifest beside it, ``<file>.manifest.json``, saying
what the file is, how to feed it (inputs, preprocessing), what it outputs, its size and
cost, and its lineage: the ordered steps that made it, each naming its parent's sha256.
Bench and eval read preprocessing from the manifest; they never guess.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fcbench
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError
from fcbench.formats import by_suffix

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_path(file: str | Path) -> Path:
    file = Path(file)
    return file.with_name(file.name + MANIFEST_SUFFIX)


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str = "float32"
    layout: str = "NCHW"


@dataclass
class Step:
    """One lineage step: which verb made the artifact from which parent."""

    verb: str  # train | distill | prune | quantize | convert
    technique: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    parent_sha256: str = ""
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


@dataclass
class Manifest:
    format: str  # a registered format's name (fcbench.formats): fcbench-ckpt, onnx, tflite, openvino, ptl, pte, ...
    file: str  # file name, relative to the manifest's folder
    sha256: str
    size: int
    model: dict[str, Any]  # {"name": "r18", "options": {...}}
    inputs: list[TensorSpec]
    preprocessing: Preprocessing
    output_kind: str  # embedding | logits
    output_size: int
    params: int | None = None
    macs: int | None = None
    flops: int | None = None  # 2 x macs
    lineage: list[Step] = field(default_factory=list)
    fcbench_version: str = fcbench.__version__
    manifest_version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d["inputs"] = [TensorSpec(**t) for t in d.get("inputs", [])]
        d["lineage"] = [Step(**s) for s in d.get("lineage", [])]
        d["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
        return cls(**d)

    def lineage_summary(self) -> str:
        """Short human form, e.g. 'train(arcface)'."""
        parts = [f"{s.verb}({s.technique})" if s.technique else s.verb for s in self.lineage]
        return " > ".join(parts)


def write_manifest(manifest: Manifest, file: str | Path) -> Path:
    path = manifest_path(file)
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(file: str | Path) -> Manifest:
    path = manifest_path(file)
    if not path.exists():
        raise FcbenchError(f"{file}: no manifest beside it ({path.name}); artifacts made by fcbench carry one")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise FcbenchError(f"{path}: not a valid fcbench manifest ({exc}); re-create the artifact") from exc


def owned_files(paths: Sequence[str | Path]) -> tuple[list[str], list[tuple[str, str]]]:
    """Split a list of files, often a shell glob such as ``run/model.*``, into the artifacts and the
    files that only belong to one of them: a listed artifact's manifest and its companion files
    (``extra.companion_files``; those its format names, e.g. OpenVINO's ``.bin`` beside its ``.xml``,
    even without a manifest).
    Returns (artifacts, [(file, what it is)]); a file whose owner is not listed stays an artifact."""
    owner: dict[Path, str] = {}
    for p in paths:
        path = Path(p)
        if path.name.endswith(MANIFEST_SUFFIX):
            continue
        owner[manifest_path(path).resolve()] = f"the manifest of {path.name}"
        form = by_suffix(path)
        companions = set(form.companions(path)) if form else set()
        try:
            companions |= set(json.loads(manifest_path(path).read_text()).get("extra", {}).get("companion_files", []))
        except (OSError, ValueError, AttributeError):
            pass  # no manifest, or a broken one: loading the artifact says so
        for name in companions:
            owner[(path.parent / name).resolve()] = f"a companion file of {path.name} (read with it)"
    keep: list[str] = []
    dropped: list[tuple[str, str]] = []
    for p in paths:
        what = owner.get(Path(p).resolve())
        if what:
            dropped.append((str(p), what))
        else:
            keep.append(str(p))
    return keep, dropped


def artifacts_only(paths: Sequence[str | Path], log: Callable[[str], None] | None = None) -> list[str]:
    """:func:`owned_files`' artifacts, saying in one line (``log``) which files were left out and why."""
    keep, dropped = owned_files(paths)
    if dropped and log is not None:
        log(f"left out {len(dropped)} file(s) that belong to listed artifacts (manifests, companion files): "
            f"{', '.join(Path(p).name for p, _ in dropped)}")
    return keep


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:  # nothing half-written is left behind
        Path(tmp).unlink(missing_ok=True)
        raise
