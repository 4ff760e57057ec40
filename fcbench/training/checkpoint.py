"""fcbench checkpoints: weights + how to rebuild the model + (optionally) training state.

A checkpoint is a ``torch.save`` dict with a manifest beside it. It always holds enough
to rebuild the exact model with ``fcbench.models.create(name, **options)``; a training
checkpoint also holds optimizer, schedule and RNG state for ``--resume``.

A compression technique may change the architecture (channel pruning removes channels from
convolutions, norms, PReLUs and linears). Such a checkpoint also holds ``structure``: for every
module that no longer matches what ``create`` builds, its path, class name, the shapes of its
own parameters and buffers, and the plain attributes (``in_channels``, ``out_channels``,
``groups``, ``num_features``, ``in_features``, ``num_parameters``, ...) that differ.
:meth:`Checkpoint.build_model` builds the model with ``create``, resizes those tensors, sets
those attributes and then loads the weights strictly. It is all plain data (no pickled
modules), so ``torch.load(weights_only=True)`` reads it; checkpoints without ``structure``
load as before. Modules added, removed or replaced by another class cannot be expressed this
way and are refused when saving.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from fcbench.artifact import Manifest, Step, TensorSpec, load_manifest, output_kind_of, sha256_file, write_manifest
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError
from fcbench.formats import CHECKPOINT as CHECKPOINT_FORMAT

CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    path: Path
    model_name: str
    model_options: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    task: str
    output_size: int
    head: dict[str, Any] | None
    train_state: dict[str, Any] | None
    manifest: Manifest | None
    structure: list[dict[str, Any]] | None = None  # modules changed from create()'s (see module doc)
    train_run: str | None = None  # the training run that wrote it (train's checkpoints; see training.runfolder)
    class_names: list[str] | None = None  # a detector's object classes (the data it was trained on)

    def build_model(self) -> torch.nn.Module:
        from fcbench.models import create

        model = create(self.model_name, **self.model_options)
        if self.structure:
            apply_structure(model, self.structure, self.path)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1:3]
            raise FcbenchError(
                f"{self.path}: weights do not fit model '{self.model_name}' with options "
                f"{self.model_options}: {' '.join(s.strip() for s in first)}"
            ) from exc
        if self.class_names is not None:
            model.class_names = list(self.class_names)
        model.eval()
        return model

    def with_model(self, model: torch.nn.Module) -> Checkpoint:
        """This checkpoint with ``model``'s weights and structure, e.g. what a technique returns
        after changing the model it got from :meth:`build_model`. Training state is dropped."""
        return replace(
            self,
            model_name=getattr(model, "fcbench_name", self.model_name),
            model_options=dict(getattr(model, "fcbench_options", self.model_options)),
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
            output_size=int(getattr(model, "output_size", self.output_size)),
            structure=model_structure(model) or None,
            train_state=None,
            train_run=None,
        )


# --- structure: what a changed model holds that create() does not build ----------------------

_SIMPLE = (bool, int, float, str)


def _plain(value: Any) -> Any:
    """``value`` as JSON-able plain data when it is a number, string or a tuple/list of them; else None."""
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, _SIMPLE) for v in value):
        return list(value)
    return None


def _own_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = {k: v for k, v in module._parameters.items() if v is not None}
    tensors.update({k: v for k, v in module._buffers.items() if v is not None})
    return tensors


def _own_attrs(module: torch.nn.Module) -> dict[str, Any]:
    out = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        plain = _plain(value)
        if plain is not None:
            out[key] = plain
    return out


@functools.lru_cache(maxsize=16)
def _reference(name: str, options_json: str) -> dict[str, tuple[str, dict[str, list[int]], dict[str, Any]]]:
    """Per module of ``create(name, **options)``: class name, own tensor shapes, plain attributes.
    Built on the meta device (no memory for weights) when the factory allows it."""
    from fcbench.models import create

    options = json.loads(options_json)
    try:
        with torch.device("meta"):
            ref = create(name, **options)
    except FcbenchError:
        raise
    except Exception:  # a factory that computes on real tensors while building
        ref = create(name, **options)
    return {path: (type(m).__name__, {k: list(t.shape) for k, t in _own_tensors(m).items()}, _own_attrs(m))
            for path, m in ref.named_modules()}


def model_structure(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The modules of ``model`` that differ from what ``create(name, **options)`` builds: for each,
    ``{"module": path, "type": class name, "shapes": {tensor: shape}, "attrs": {attribute: value}}``
    holding only what differs. ``[]`` for an unchanged model (and for a model not made by ``create``)."""
    name, options = getattr(model, "fcbench_name", None), getattr(model, "fcbench_options", None)
    if name is None or options is None:
        return []
    ref = _reference(name, json.dumps(options, sort_keys=True))
    modules = dict(model.named_modules())
    added = [p for p in modules if p not in ref]
    removed = [p for p in ref if p not in modules]
    retyped = [p for p, m in modules.items() if p in ref and ref[p][0] != type(m).__name__]
    if added or removed or retyped:
        what = "; ".join(f"{label}: {', '.join(repr(p) for p in paths[:3])}" for label, paths in
                         (("added", added), ("removed", removed), ("another class", retyped)) if paths)
        raise FcbenchError(f"model '{name}': its modules differ from what create() builds ({what}); a checkpoint "
                           "can record changed shapes and attributes, not added, removed or replaced modules")
    out = []
    for path, m in modules.items():
        cls, ref_shapes, ref_attrs = ref[path]
        tensors = _own_tensors(m)
        if set(tensors) != set(ref_shapes):
            raise FcbenchError(f"model '{name}': module '{path}' has tensors {sorted(tensors)} but create() builds "
                               f"{sorted(ref_shapes)}; a checkpoint cannot record added or removed tensors")
        shapes = {k: list(t.shape) for k, t in tensors.items() if list(t.shape) != ref_shapes[k]}
        attrs = {k: v for k, v in _own_attrs(m).items() if ref_attrs.get(k, v) != v}
        if shapes or attrs:
            out.append({"module": path, "type": cls, "shapes": shapes, "attrs": attrs})
    return out


def apply_structure(model: torch.nn.Module, structure: list[dict[str, Any]], source: Any = "checkpoint") -> None:
    """Resize the tensors and set the attributes ``structure`` records, in place, so the changed
    model's state dict loads strictly. The new tensors are uninitialised: load weights next."""
    for entry in structure:
        path = entry.get("module", "")
        try:
            m = model.get_submodule(path)
        except AttributeError as exc:
            raise FcbenchError(f"{source}: its structure names module '{path}', which model "
                               f"'{getattr(model, 'fcbench_name', '?')}' does not have") from exc
        if type(m).__name__ != entry.get("type"):
            raise FcbenchError(f"{source}: module '{path}' is a {entry.get('type')} in the checkpoint but a "
                               f"{type(m).__name__} in the model built now")
        for key, shape in entry.get("shapes", {}).items():
            if key in m._parameters and m._parameters[key] is not None:
                old = m._parameters[key]
                m._parameters[key] = torch.nn.Parameter(torch.empty(shape, dtype=old.dtype, device=old.device),
                                                        requires_grad=old.requires_grad)
            elif key in m._buffers and m._buffers[key] is not None:
                old = m._buffers[key]
                m._buffers[key] = torch.empty(shape, dtype=old.dtype, device=old.device)
            else:
                raise FcbenchError(f"{source}: its structure resizes '{path}.{key}', which the model built now "
                                   "does not have")
        for key, value in entry.get("attrs", {}).items():
            current = getattr(m, key, None)
            setattr(m, key, tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value)


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    *,
    head: torch.nn.Module | None = None,
    head_spec: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    lineage: list[Step] | None = None,
    profile: dict[str, int] | None = None,
    head_state: dict[str, Any] | None = None,
    train_run: str | None = None,
) -> Manifest:
    """Write a checkpoint and its manifest atomically; return the manifest.

    ``head_state`` is a head as a checkpoint stores it (``Checkpoint.head``: spec + state_dict),
    kept as is; ``head`` + ``head_spec`` give it as a module instead. A model whose architecture
    was changed (pruned) is saved with its ``structure`` (see the module doc). ``train_run`` names the
    training run the checkpoint belongs to (in the payload and the manifest's ``extra.train_run``)."""
    path = Path(path)
    pre: Preprocessing = model.preprocessing
    structure = model_structure(model)
    payload = {
        "fcbench_checkpoint": CHECKPOINT_VERSION,
        "model": {"name": model.fcbench_name, "options": dict(model.fcbench_options)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "preprocessing": pre.to_dict(),
        "task": model.fcbench_task,
        "output_size": int(model.output_size),
        "head": head_state,
        "train_state": train_state,
    }
    if structure:
        payload["structure"] = structure
    if train_run:
        payload["train_run"] = train_run
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        payload["class_names"] = [str(c) for c in class_names]
    if head is not None and head_spec is not None:
        payload["head"] = {**head_spec, "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()}}
    _atomic_save(payload, path)
    h, w = pre.size
    shape = [1, 3, h, w] if pre.layout == "NCHW" else [1, h, w, 3]
    profile = profile or {}
    manifest = Manifest(
        format=CHECKPOINT_FORMAT,
        file=path.name,
        sha256=sha256_file(path),
        size=path.stat().st_size,
        model=payload["model"],
        inputs=[TensorSpec(name="input", shape=shape, dtype="float32", layout=pre.layout)],
        preprocessing=pre,
        output_kind=output_kind_of(model.fcbench_task),
        output_size=int(model.output_size),
        params=profile.get("params"),
        macs=profile.get("macs"),
        flops=profile.get("flops"),
        lineage=list(lineage or []),
        extra={**({"train_run": train_run} if train_run else {}), **_task_extra(model)},
    )
    write_manifest(manifest, path)
    return manifest


def _task_extra(model: torch.nn.Module) -> dict[str, Any]:
    """What a manifest needs beyond the common fields to use the model's output: a detector's decode
    config (``extra.detection``), which convert carries into every artifact made from it."""
    if model.fcbench_task != "detection":
        return {}
    from fcbench.detection.anchors import decode_config

    return {"detection": decode_config(model.fcbench_options, getattr(model, "class_names", None))}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read an fcbench checkpoint; one clear FcbenchError for anything else."""
    path = Path(path)
    if not path.exists():
        raise FcbenchError(f"checkpoint {path} does not exist; check the path (train writes OUT/model.pt)")
    if path.is_dir():
        raise FcbenchError(f"checkpoint {path} is a directory; pass the .pt file inside it (e.g. {path}/model.pt)")
    has_manifest = (path.parent / (path.name + ".manifest.json")).exists()
    manifest = load_manifest(path) if has_manifest else None  # the file is the one its manifest vouches for
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        from fcbench.paths import not_a_checkpoint

        raise FcbenchError(not_a_checkpoint(path, exc)) from exc
    if not isinstance(payload, dict) or "fcbench_checkpoint" not in payload:
        hint = ""
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            hint = "; it looks like a plain state_dict (e.g. insightface backbone.pth): pass --model NAME too"
        raise FcbenchError(f"{path} is not an fcbench checkpoint{hint}")
    return Checkpoint(
        path=path,
        model_name=payload["model"]["name"],
        model_options=payload["model"]["options"],
        state_dict=payload["state_dict"],
        preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
        task=payload["task"],
        output_size=payload["output_size"],
        head=payload.get("head"),
        train_state=payload.get("train_state"),
        manifest=manifest,
        structure=payload.get("structure"),
        train_run=payload.get("train_run"),
        class_names=payload.get("class_names"),
    )
