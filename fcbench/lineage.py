"""Walking an artifact's lineage back through the files it was made from.

Every manifest's lineage ends with the step that made its file. When that step records
``options["parent_file"]`` (the input's path, relative to this file's folder, or absolute) and
``parent_sha256`` (the input's sha256 when the step read it), the input is this file's
*parent*. convert records both, and so does every compression technique applied through
:func:`fcbench.techniques.apply_technique` (prune, quantize, distill, ...). Earlier steps of a
lineage are copied from the ancestors' manifests; their ``parent_file`` is relative to *their*
file's folder, so a walk reads one manifest per hop and only ever uses its last step.
"""

from __future__ import annotations

import os
from pathlib import Path

from fcbench.artifact import Manifest, Step, manifest_path, read_manifest, sha256_file
from fcbench.errors import FcbenchError

CHECKPOINT_FORMAT = "fcbench-ckpt"  # as in fcbench.training.checkpoint (not imported: that pulls in torch)
MAX_HOPS = 64  # a lineage longer than this is a loop


def relative_path(path: str | Path, folder: str | Path) -> str:
    """``path`` as a step's ``parent_file``: relative to ``folder`` (the new file's folder) where
    possible, since an artifact and its parents usually move together; else absolute."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    except ValueError:  # another drive
        return str(Path(path).resolve())


def is_float_checkpoint(manifest: Manifest) -> bool:
    """An fcbench PyTorch checkpoint whose lineage holds no ``quantize`` step: weights and
    arithmetic in floating point. Pruned and distilled checkpoints are float checkpoints."""
    return manifest.format == CHECKPOINT_FORMAT and not any(s.verb == "quantize" for s in manifest.lineage)


def parent_link(path: Path, manifest: Manifest) -> tuple[Path | None, Step | None, str]:
    """(parent path, the step that names it, '') for the file ``path`` whose manifest is
    ``manifest``, or (None, step or None, why) when its last lineage step names no parent file."""
    if not manifest.lineage:
        return None, None, f"{path.name}'s manifest has no lineage"
    step = manifest.lineage[-1]
    name = step.options.get("parent_file") if isinstance(step.options, dict) else None
    if not step.parent_sha256 or not name:
        label = f"{step.verb}({step.technique})" if step.technique else step.verb
        return None, step, f"{path.name} was made by {label}, which names no parent file"
    parent = Path(name) if Path(name).is_absolute() else Path(os.path.normpath(path.parent / name))
    return parent, step, ""


def float_parent(path: str | Path, manifest: Manifest) -> tuple[Path | None, str]:
    """The float parent of the artifact ``path`` (whose manifest is ``manifest``), or None and why.

    The float parent is the nearest *proper* ancestor of the artifact that is a floating-point
    PyTorch checkpoint (:func:`is_float_checkpoint`), reached by following parent links (see the
    module doc) through steps of any verb: for a converted artifact, the checkpoint it was
    converted from; for an artifact quantized after conversion, the float checkpoint the
    converted file came from; for a pruned (or quantized) checkpoint, the checkpoint it was
    pruned from (or the nearest float one before it). Every hop must find its parent still at
    the recorded place, with the recorded sha256 and a manifest beside it; the first hop that
    does not ends the walk with None and the reason (missing, changed, not an fcbench artifact,
    or no parent named), since what lies beyond a broken link cannot be trusted or found.
    """
    here, current = Path(path), manifest
    seen: set[Path] = set()
    for _ in range(MAX_HOPS):
        parent, step, why = parent_link(here, current)
        if parent is None:
            return None, why if here == Path(path) else f"no float checkpoint before {here.name}: {why}"
        if not parent.is_file():
            return None, f"parent {parent} of {here.name} is not there any more"
        if sha256_file(parent) != step.parent_sha256:
            return None, f"parent {parent} has changed since {step.verb} (sha256 differs)"
        if not manifest_path(parent).exists():
            return None, f"parent {parent} of {here.name} has no fcbench manifest beside it (not an fcbench artifact)"
        try:
            parent_manifest = read_manifest(parent)
        except FcbenchError as exc:
            return None, str(exc)
        if is_float_checkpoint(parent_manifest):
            return parent, ""
        key = parent.resolve()
        if key in seen:
            return None, f"the lineage of {Path(path).name} loops at {parent}"
        seen.add(key)
        here, current = parent, parent_manifest
    return None, f"the lineage of {Path(path).name} is longer than {MAX_HOPS} files"

