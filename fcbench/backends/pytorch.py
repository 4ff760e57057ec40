"""Eager PyTorch on an fcbench checkpoint: the reference every other backend is compared to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, Session
from fcbench.errors import FcbenchError, first_line
from fcbench.threads import TorchThreads


class _TorchSession(Session):
    def __init__(self, model, threads: int | None) -> None:
        import torch

        self._torch = torch
        self.model = model
        self._threads = TorchThreads(threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            try:
                return self.model(self._torch.from_numpy(x)).float().numpy()
            except RuntimeError as exc:
                raise FcbenchError(f"pytorch: run failed on input {list(x.shape)}: {first_line(exc)}",
                                   exit_code=1) from exc

    def close(self) -> None:
        self._threads.restore()  # the thread count is process-wide: put it back


class PytorchBackend(Backend):
    name = "pytorch"
    formats = ("fcbench-ckpt",)
    variants = ("eager",)
    default_variant = "eager"
    module = "torch"
    install_hint = "pip install torch==2.13.0"
    runtime_modules = ("torch", "fcbench.training.checkpoint")

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        path = self.check_request(artifact, variant, threads, options)
        from fcbench.training.checkpoint import load_checkpoint

        return _TorchSession(load_checkpoint(path).build_model(), threads)
