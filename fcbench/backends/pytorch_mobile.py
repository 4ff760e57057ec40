"""PyTorch Mobile: the TorchScript lite interpreter (``torch.jit.mobile``) on a ``.ptl`` file.

``threads`` sets ``torch.set_num_threads`` (the lite interpreter runs ATen kernels, which use
torch's intra-op pool); the previous value is restored when the session closes.
Placement: every op runs on the CPU (no delegates in a host build); the rows come from the
``forward`` bytecode stored in the ``.ptl`` (one per OP instruction).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError, first_line
from fcbench.threads import TorchThreads


class _Opaque:
    """Stands in for every class a pickle names: nothing in the file is imported or run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _BytecodeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _Opaque

    def persistent_load(self, pid: Any) -> Any:
        return None


def bytecode_ops(path: str | Path) -> list[tuple[str, str]]:
    """(function, operator) for each OP instruction of the lite-interpreter bytecode, in order."""
    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n.endswith("/bytecode.pkl") or n == "bytecode.pkl"), None)
        if name is None:
            return []
        data = _BytecodeUnpickler(io.BytesIO(z.read(name))).load()
    rows: list[tuple[str, str]] = []
    for fn in data[1:] if isinstance(data, tuple) else []:
        if not (isinstance(fn, tuple) and len(fn) >= 2 and isinstance(fn[0], str)):
            continue
        table = dict(item for item in fn[1] if isinstance(item, tuple) and len(item) == 2)
        operators = [op[0] + (f".{op[1]}" if op[1] else "") for op in table.get("operators", ())]
        for instr in table.get("instructions", ()):
            if instr[0] == "OP" and instr[1] < len(operators):
                rows.append((fn[0], operators[instr[1]]))
    return rows


class PytorchMobileSession(Session):
    def __init__(self, path: Path, manifest: Manifest, threads: int | None) -> None:
        import torch
        from torch.jit.mobile import _load_for_lite_interpreter

        self._torch = torch
        self.path = path
        # a quantized file runs on the engine it was quantized for (the lineage's quantize step names it):
        # the packed weights are unpacked for the engine current at load and run time
        self._engine_before = torch.backends.quantized.engine
        self.engine = quantized_engine(manifest)
        if self.engine and self.engine in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = self.engine
        try:
            self.module = _load_for_lite_interpreter(str(path))
        except (RuntimeError, ValueError) as exc:
            torch.backends.quantized.engine = self._engine_before
            raise FcbenchError(f"{path}: not a valid PyTorch Mobile (.ptl) model ({first_line(exc)[:200]})") from exc
        spec = manifest.inputs[0] if manifest.inputs else None
        self._shape = list(spec.shape) if spec else None
        self._dtype = spec.dtype if spec else "float32"
        self._threads = TorchThreads(threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype.name != self._dtype:
            raise FcbenchError(f"pytorch-mobile: input dtype {x.dtype.name} does not match the manifest's "
                               f"{self._dtype} ({self.path.name})")
        if self._shape is not None and (len(self._shape) != x.ndim or any(
                s not in (-1, d) for s, d in zip(self._shape, x.shape, strict=True) if s is not None)):
            raise FcbenchError(f"pytorch-mobile: input shape mismatch: the model expects {self._shape}, "
                               f"got {list(x.shape)} ({self.path.name})")
        try:
            with self._torch.no_grad():
                out = self.module(self._torch.from_numpy(x))
        except RuntimeError as exc:
            raise FcbenchError(f"pytorch-mobile: run failed on input {list(x.shape)}: {first_line(exc)}",
                               exit_code=1) from exc
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().numpy()

    def placement(self) -> list[NodePlacement]:
        try:
            ops = bytecode_ops(self.path)
        except Exception:  # the bytecode layout is internal: report nothing rather than guess
            return []
        rows = []
        for i, (fn, op) in enumerate(ops):
            method = fn.rsplit(".", 1)[-1]
            precision = "i8" if op.startswith("quantized::") else ""
            rows.append(NodePlacement(node=f"{method}#{i}", op_type=op, placement="CPU", precision=precision))
        return rows

    def close(self) -> None:
        self._threads.restore()
        if self._torch.backends.quantized.engine != self._engine_before:
            self._torch.backends.quantized.engine = self._engine_before


def quantized_engine(manifest: Manifest) -> str:
    """The quantized engine (x86, fbgemm, qnnpack) the file's last quantize step recorded; '' for a float file."""
    for step in reversed(manifest.lineage or []):
        if step.verb == "quantize":
            return str(step.options.get("engine", ""))
    return ""


class PytorchMobileBackend(Backend):
    name = "pytorch-mobile"
    formats = ("ptl",)
    variants = ("cpu",)
    default_variant = "cpu"
    module = "torch"
    install_hint = "pip install torch"
    runtime_modules = ("torch", "torch.jit.mobile")

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        path = self.check_request(artifact, variant, threads, options)
        return PytorchMobileSession(path, manifest, threads)
