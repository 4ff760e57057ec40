"""fcbench checkpoints: weights + how to rebuild the model + (optionally) training state.

A checkpoint is a ``torch.save`` dict with a manifest beside it. It always holds enough
to rebuild the exact model with ``fcbench.models.create(name, **options)``; a training
checkpoint also holds optimizer, schedule and RNG state for ``--resume``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fcbench.artifact import Manifest, Step, TensorSpec, read_manifest, sha256_file, write_manifest
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError, first_line
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

    def build_model(self) -> torch.nn.Module:
        from fcbench.models import create

        model = create(self.model_name, **self.model_options)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1:3]
            raise FcbenchError(
                f"{self.path}: weights do not fit model '{self.model_name}' with options "
                f"{self.model_options}: {' '.join(s.strip() for s in first)}"
            ) from exc
        model.eval()
        return model


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
) -> Manifest:
    """Write a checkpoint and its manifest atomically; return the manifest."""
    path = Path(path)
    pre: Preprocessing = model.preprocessing
    payload = {
        "fcbench_checkpoint": CHECKPOINT_VERSION,
        "model": {"name": model.fcbench_name, "options": dict(model.fcbench_options)},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "preprocessing": pre.to_dict(),
        "task": model.fcbench_task,
        "output_size": int(model.output_size),
        "head": None,
        "train_state": train_state,
    }
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
        output_kind="embedding" if model.fcbench_task == "embedding" else "logits",
        output_size=int(model.output_size),
        params=profile.get("params"),
        macs=profile.get("macs"),
        flops=profile.get("flops"),
        lineage=list(lineage or []),
    )
    write_manifest(manifest, path)
    return manifest


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read an fcbench checkpoint; one clear FcbenchError for anything else."""
    path = Path(path)
    if not path.exists():
        raise FcbenchError(f"checkpoint {path} does not exist; check the path (train writes OUT/model.pt)")
    if path.is_dir():
        raise FcbenchError(f"checkpoint {path} is a directory; pass the .pt file inside it (e.g. {path}/model.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise FcbenchError(
            f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {first_line(exc)[:120]})"
        ) from exc
    if not isinstance(payload, dict) or "fcbench_checkpoint" not in payload:
        hint = ""
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            hint = "; it looks like a plain state_dict (e.g. insightface backbone.pth): pass --model NAME too"
        raise FcbenchError(f"{path} is not an fcbench checkpoint{hint}")
    manifest = read_manifest(path) if (path.parent / (path.name + ".manifest.json")).exists() else None
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
    )
