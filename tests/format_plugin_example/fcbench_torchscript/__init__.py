"""A third-party fcbench format: TorchScript saved with ``torch.jit.save`` (``.torchscript``).

One module holds the three parts, each registered by an entry point (see pyproject.toml):
the :class:`~fcbench.formats.Format` (``fcbench.formats``), the exporter it names (written with
``torch.jit.trace`` and ``torch.jit.save``) and the backend that runs it (``fcbench.backends``,
loading with ``torch.jit.load``). Importing this module imports no torch: fcbench loads every
format plugin to tell a file's format by its suffix, so that must stay cheap.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.conversion.base import Exporter, ExportResult, option_bool
from fcbench.errors import FcbenchError, first_line
from fcbench.formats import Format


def _is_torchscript(head: bytes, path: Path) -> bool:
    """A zip archive (``torch.jit.save`` writes one) with a TorchScript ``code/`` folder or ``constants.pkl``."""
    if head[:4] != b"PK\x03\x04":
        return False
    with zipfile.ZipFile(path) as z:
        entries = [n.split("/", 1)[-1] for n in z.namelist()]
    return any(e.startswith("code/") or e == "constants.pkl" for e in entries)


TORCHSCRIPT = Format(
    name="torchscript",
    suffixes=(".torchscript",),
    description="TorchScript module (torch.jit.save), run with torch.jit.load",
    magic=_is_torchscript,
    exporter="fcbench_torchscript:TorchScriptExporter",
    backend="torchscript:cpu",
)


class TorchScriptExporter(Exporter):
    """PyTorch -> ``.torchscript``. Option ``freeze`` (bool, default true): ``torch.jit.freeze`` first."""

    format = "torchscript"
    module = "torch"
    install_hint = "pip install torch"
    options = ("freeze",)

    def export(self, model, example, out: Path, options: dict[str, Any]) -> ExportResult:
        import torch

        self.check_options(options)
        freeze = option_bool("torchscript export", "freeze", options.get("freeze", True))
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings
                module = torch.jit.trace(model.eval(), (example.float(),), check_trace=False)
                if freeze:
                    module = torch.jit.freeze(module.eval())
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
            os.close(fd)
            try:
                torch.jit.save(module, tmp)
                os.replace(tmp, out)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except Exception as exc:  # torch.jit raises RuntimeError, TypeError, ...
            raise FcbenchError(f"torchscript: export failed: {type(exc).__name__}: {first_line(exc)[:300]}",
                               exit_code=1) from exc
        return ExportResult(file=out, input_layout="NCHW", options={"freeze": freeze, "torch": torch.__version__})


class TorchScriptSession(Session):
    def __init__(self, path: Path, threads: int | None) -> None:
        import torch

        self._torch = torch
        try:
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:
            raise FcbenchError(f"{path}: not a loadable TorchScript module ({first_line(exc)[:200]})") from exc
        self._threads_before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            out = self.module(self._torch.from_numpy(x))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().numpy()

    def placement(self) -> list[NodePlacement]:
        nodes = [n.kind() for n in self.module.graph.nodes() if not n.kind().startswith("prim::")]
        return [NodePlacement(node=f"forward#{i}", op_type=k, placement="CPU") for i, k in enumerate(nodes)]

    def close(self) -> None:
        if self._torch.get_num_threads() != self._threads_before:
            self._torch.set_num_threads(self._threads_before)


class TorchScriptBackend(Backend):
    name = "torchscript"
    formats = ("torchscript",)
    variants = ("cpu",)
    default_variant = "cpu"
    module = "torch"
    install_hint = "pip install torch"
    runtime_modules = ("torch",)

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        path = self.check_request(artifact, variant, threads, options)
        return TorchScriptSession(path, threads)
