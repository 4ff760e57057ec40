"""Artifacts and their manifests.

Every file fcbench produces (a training checkpoint now; ONNX, TFLite, OpenVINO, .ptl, .pte
files as converters land) gets a JSON manifest beside it, ``<file>.manifest.json``, saying
what the file is, how to feed it (inputs, preprocessing), what it outputs, its size and
cost, and its lineage: the ordered steps that made it, each naming its parent's sha256.
Bench and eval read preprocessing from the manifest; they never guess.

A manifest vouches for its file only while the file is the one it describes: :func:`load_manifest`
(what bench, eval, inspect and the bench worker load an artifact through) checks the artifact's
sha256 and each companion file's (``extra.companion_sha256``) against the manifest and refuses a
mismatch. Hashes are cached by (path, size, mtime, ctime, inode) in ``sha256.json`` under the
user's cache folder (:func:`cache_dir`), so an unchanged file is hashed once. :func:`publish`
writes an artifact and its manifest so that a crash leaves both or neither vouching.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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


OUTPUT_KINDS = {"embedding": "embedding", "classification": "logits", "detection": "detections"}
"""A model's task -> its manifest's ``output_kind``. A detector's raw output ``[B, A, 4 + 1 + K]`` is
decoded with ``extra.detection`` (anchor config, classes; see :mod:`fcbench.detection`)."""


def output_kind_of(task: str) -> str:
    """The manifest ``output_kind`` of a model task (embedding for an unknown one, as before)."""
    return OUTPUT_KINDS.get(task, "embedding")


def task_of(output_kind: str) -> str:
    """The model task an artifact's ``output_kind`` stands for: classification, detection or embedding."""
    return {v: k for k, v in OUTPUT_KINDS.items()}.get(output_kind, "embedding")


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
    output_kind: str  # embedding | logits | detections (see OUTPUT_KINDS)
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
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        manifest = Manifest.from_dict(data)
        if not isinstance(manifest.extra, dict):
            raise ValueError("'extra' is not an object")
        return manifest
    except OSError as exc:
        raise FcbenchError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
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
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- verifying an artifact against its manifest ------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")
_RACY_NS = 2_000_000_000  # a hash taken this soon after the file's last change is not cached (same-tick writes)
_CACHE_ENTRIES = 4096


def cache_dir() -> Path:
    """fcbench's cache folder: ``$FCBENCH_CACHE``, else ``$XDG_CACHE_HOME/fcbench``, else ``~/.cache/fcbench``."""
    if os.environ.get("FCBENCH_CACHE"):
        return Path(os.environ["FCBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcbench"


def _hash_cache_file() -> Path:
    return cache_dir() / "sha256.json"


def _read_hash_cache() -> dict[str, Any]:
    try:
        data = json.loads(_hash_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_sha256(path: str | Path, cache: bool = True) -> str:
    """The sha256 of ``path``; with ``cache`` an unchanged file (same size, mtime, ctime and inode as
    when it was hashed) is not read again. A cache that cannot be read or written is ignored."""
    path = Path(path)
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    key = str(path.resolve())
    entries = _read_hash_cache() if cache else {}
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    checked = time.time_ns()
    digest = sha256_file(path)
    if cache and checked - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
        entries[key] = {"stamp": stamp, "sha256": digest, "checked_ns": checked}
        if len(entries) > _CACHE_ENTRIES:  # keep the most recently hashed
            keep = sorted(entries, key=lambda k: entries[k].get("checked_ns", 0) if isinstance(entries[k], dict)
                          else 0)[-_CACHE_ENTRIES:]
            entries = {k: entries[k] for k in keep}
        with contextlib.suppress(OSError):
            _hash_cache_file().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(_hash_cache_file(), json.dumps(entries))
    return digest


def inside(folder: str | Path, name: Any) -> Path | None:
    """``folder / name`` when ``name`` is a plain relative name that stays inside ``folder`` (no absolute
    path, no ``..``, no link out of it); None otherwise. Manifests are input: what they name is checked."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    folder = Path(folder)
    target = folder / rel
    try:
        if not target.resolve().is_relative_to(folder.resolve()):
            return None
    except (OSError, RuntimeError, ValueError):
        return None
    return target


def companion_names(path: str | Path, manifest: Manifest) -> list[str]:
    """The companion files the manifest lists (``extra.companion_files``), each checked to stay in the
    artifact's folder; raises FcbenchError naming one that does not."""
    path = Path(path)
    names = manifest.extra.get("companion_files", []) if isinstance(manifest.extra, dict) else None
    if not isinstance(names, list):
        raise FcbenchError(f"{manifest_path(path)}: extra.companion_files must be a list of file names; "
                           "re-create the artifact")
    for name in names:
        if inside(path.parent, name) is None:
            raise FcbenchError(f"{manifest_path(path)}: companion file {name!r} is not a file name inside "
                               f"{path.parent}; a manifest may only name files beside its artifact: "
                               "re-create the artifact")
    return list(names)


def verify(path: str | Path, manifest: Manifest, cache: bool = True) -> None:
    """Raise FcbenchError (one line) unless ``path`` and its companion files are the ones ``manifest``
    describes: the artifact's sha256, each companion's (``extra.companion_sha256``; a manifest written
    before those were recorded: the total ``size``), and names that stay in the artifact's folder."""
    path = Path(path)
    mpath = manifest_path(path)
    if not isinstance(manifest.file, str) or inside(path.parent, manifest.file) is None:
        raise FcbenchError(f"{mpath}: 'file' {manifest.file!r} is not a file name inside {path.parent}; "
                           "re-create the artifact")
    if not isinstance(manifest.sha256, str) or not _SHA256.fullmatch(manifest.sha256):
        raise FcbenchError(f"{mpath}: 'sha256' {manifest.sha256!r} is not a sha256; re-create the artifact")
    names = companion_names(path, manifest)
    actual = file_sha256(path, cache)
    if actual != manifest.sha256:
        raise FcbenchError(f"{path}: sha256 {actual} is not the {manifest.sha256} its manifest ({mpath.name}) "
                           "records: the file changed after it was made; convert again, or remove the manifest "
                           "and pass --infer-manifest to use it as a file of your own")
    hashes = manifest.extra.get("companion_sha256")
    if hashes is not None and not isinstance(hashes, dict):
        raise FcbenchError(f"{mpath}: extra.companion_sha256 must map file names to sha256; re-create the artifact")
    for name in names:
        comp = path.parent / name
        if not comp.is_file():
            raise FcbenchError(f"{path}: companion file {name} that its manifest lists is missing from "
                               f"{path.parent}; put it back or convert again")
        if hashes is None:
            continue
        if name not in hashes:
            raise FcbenchError(f"{mpath}: companion file {name} has no sha256 in extra.companion_sha256; "
                               "re-create the artifact")
        got = file_sha256(comp, cache)
        if got != hashes[name]:
            raise FcbenchError(f"{comp}: sha256 {got} is not the {hashes[name]} the manifest of {path.name} "
                               "records: the file changed after it was made; convert again")
    if hashes is None and names and "manifest_inferred" not in manifest.extra:
        total = sum((path.parent / n).stat().st_size for n in names) + path.stat().st_size
        if isinstance(manifest.size, int) and total != manifest.size:
            raise FcbenchError(f"{path}: with its companion files it is {total} bytes, its manifest "
                               f"({mpath.name}) records {manifest.size}: a file changed after it was made; "
                               "convert again")


def load_manifest(path: str | Path, cache: bool = True) -> Manifest:
    """The manifest beside ``path``, verified against the files (:func:`verify`): the one way an
    artifact with a manifest is loaded."""
    manifest = read_manifest(path)
    verify(path, manifest, cache)
    return manifest


def parity_warning(manifest: Manifest) -> str:
    """A one-line warning when the manifest records a failed convert parity check, else ''."""
    check = manifest.extra.get("parity") if isinstance(manifest.extra, dict) else None
    if not isinstance(check, dict) or check.get("ok") is not False:
        return ""
    if "cosine" in check:
        why = (f"cosine {check['cosine']:.6f}, needs {check.get('min_cosine', '?')}; "
               f"max abs diff {check.get('max_abs_diff', float('nan')):.3g}")
    else:
        why = str(check.get("reason") or "no reason recorded")
    return f"parity check failed at convert ({why}): its outputs may not match the model"


# --- writing an artifact and its manifest ------------------------------------------------------

STAGE_PREFIX = ".fcbench-stage-"


@contextlib.contextmanager
def staging(folder: str | Path) -> Iterator[Path]:
    """A fresh hidden folder inside ``folder`` (same file system, so :func:`publish` only renames) to
    write an artifact into; removed afterwards, whatever happened. Raises FcbenchError (one line) when
    ``folder`` cannot be written."""
    folder = Path(folder)
    try:
        stage = Path(tempfile.mkdtemp(dir=folder, prefix=STAGE_PREFIX))
    except OSError as exc:
        raise FcbenchError(f"{folder}: cannot write there ({exc.strerror or type(exc).__name__}); "
                           "pick a folder you can write to") from exc
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(staged: str | Path, manifest: Manifest, folder: str | Path) -> Path:
    """Move a staged artifact (and the companion files its manifest lists, staged beside it) into
    ``folder`` and write its manifest there, so that a crash at any point leaves either the new
    artifact with its manifest, or no manifest vouching for it: the old manifest is removed first,
    the files are synced and renamed, and the manifest, the commit record, comes last.
    Returns the published artifact's path."""
    staged, folder = Path(staged), Path(folder)
    companions = companion_names(staged, manifest)
    for f in (staged, *(staged.parent / c for c in companions)):
        _fsync(f)
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    tmp_manifest = staged.parent / ("manifest" + MANIFEST_SUFFIX)
    with open(tmp_manifest, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    final = folder / staged.name
    manifest_path(final).unlink(missing_ok=True)  # an older manifest must never vouch for the new file
    _fsync(folder)
    for c in companions:
        os.replace(staged.parent / c, folder / c)
    os.replace(staged, final)
    os.replace(tmp_manifest, manifest_path(final))
    _fsync(folder)
    return final
