"""ExecuTorch runtime (``executorch.runtime``, the prebuilt pybindings) on a ``.pte`` file.

Variants say how the ``.pte`` was exported: ``xnnpack`` (ops delegated to the XNNPACK backend)
or ``portable`` (exported with ``delegate=none``: every op on ExecuTorch's CPU kernels). The
runtime cannot change that, so loading a file under the other variant is an error rather than
a mislabelled measurement.

Threads: the pybindings expose the global ExecuTorch threadpool (used by the XNNPACK
backend); ``threads`` resizes it with ``_unsafe_reset_threadpool`` *before* the program loads (the
XNNPACK delegate keeps the pool it was initialised with: resizing it under a loaded method aborted or
hung the int8 kernels at 1 thread), and ``close`` releases the method, then restores the previous size.
The portable CPU kernels are single-threaded.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fcbench.artifact import Manifest
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError, first_line

_XNNPACK_ID = "XnnpackBackend"
# executorch ScalarType codes (executorch/exir/scalar_type.py)
_PRECISION = {0: "u8", 1: "i8", 2: "i16", 3: "i32", 4: "i64", 5: "f16", 6: "f32", 7: "f64", 11: "bool",
              12: "i8", 13: "u8", 15: "bf16"}
_TORCH_DTYPE_CODES = {"float32": 6, "float16": 5, "int8": 1, "uint8": 0, "int32": 3, "int64": 4}


def _delegated(path: Path, manifest: Manifest) -> bool:
    """Whether the .pte holds XNNPACK delegate blobs: from the manifest fcbench wrote at export,
    else from the file (the backend id is stored as a string in the program flatbuffer)."""
    mode = manifest.extra.get("pte_delegate") if manifest.extra else None
    if mode in ("xnnpack", "none"):
        return mode == "xnnpack"
    return _XNNPACK_ID.encode() in path.read_bytes()


def _tensor_precision(values: list[Any], args: list[int]) -> str:
    for i in reversed(args):
        val = getattr(values[i], "val", None)
        code = getattr(val, "scalar_type", None)
        if code is not None:
            return _PRECISION.get(int(getattr(code, "value", code)), "")
    return ""


def program_placement(path: str | Path) -> list[NodePlacement]:
    """One row per instruction of the ``forward`` plan: a kernel call runs on ExecuTorch's CPU
    kernels; a delegate call runs a whole partition inside the delegate (its ops are opaque
    to the runtime; their count is in the manifest's ``delegated_ops``)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes()).program
    plan = next((p for p in program.execution_plan if p.name == "forward"), program.execution_plan[0])
    rows: list[NodePlacement] = []
    for chain in plan.chains:
        for i, instr in enumerate(chain.instructions):
            args = instr.instr_args
            kind = type(args).__name__
            if kind == "KernelCall":
                op = plan.operators[args.op_index]
                name = op.name + (f".{op.overload}" if op.overload else "")
                rows.append(NodePlacement(node=str(i), op_type=name, placement="CPU",
                                          precision=_tensor_precision(plan.values, args.args)))
            elif kind == "DelegateCall":
                backend = plan.delegates[args.delegate_index].id
                where = "XNNPACK" if backend == _XNNPACK_ID else backend
                rows.append(NodePlacement(node=f"{i}:delegate{args.delegate_index}", op_type=f"{backend} partition",
                                          placement=where, precision=_tensor_precision(plan.values, args.args)))
    return rows


class ExecutorchSession(Session):
    def __init__(self, path: Path, threads: int | None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental API" warning of the pybindings
            import torch
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

        self._torch = torch
        self._lib = portable_lib
        self.path = path
        self._threads_before: int | None = None
        if threads:  # before the method loads: XNNPACK's delegate keeps the pool it was initialised with, and a
            # pool resized under a loaded method aborted or hung its int8 kernels at 1 thread
            with contextlib.suppress(AttributeError):
                self._threads_before = portable_lib._threadpool_get_thread_count()
                if threads != self._threads_before:
                    portable_lib._unsafe_reset_threadpool(int(threads))
        try:
            program = Runtime.get().load_program(path)
            self.method = program.load_method("forward")
        except (RuntimeError, ValueError, KeyError) as exc:
            raise FcbenchError(f"{path}: not a valid ExecuTorch (.pte) program with a forward method "
                               f"({first_line(exc)})") from exc
        self._program = program
        meta = self.method.metadata
        if meta.num_inputs() != 1:
            raise FcbenchError(f"{path}: the program's forward takes {meta.num_inputs()} inputs; fcbench feeds one")
        info = meta.input_tensor_meta(0)
        self._shape = list(info.sizes())
        self._dtype = int(info.dtype())

    def run(self, x: np.ndarray) -> np.ndarray:
        code = _TORCH_DTYPE_CODES.get(x.dtype.name)
        if code != self._dtype:
            raise FcbenchError(f"executorch: input dtype {x.dtype.name} does not match the program's "
                               f"{_PRECISION.get(self._dtype, self._dtype)} ({self.path.name})")
        if list(x.shape) != self._shape:
            raise FcbenchError(f"executorch: input shape mismatch: the program expects {self._shape}, "
                               f"got {list(x.shape)} ({self.path.name})")
        try:
            outputs = self.method.execute([self._torch.from_numpy(x)])
        except RuntimeError as exc:
            raise FcbenchError(f"executorch: run failed on input {list(x.shape)}: {first_line(exc)}",
                               exit_code=1) from exc
        return outputs[0].float().numpy()

    def placement(self) -> list[NodePlacement]:
        try:
            return program_placement(self.path)
        except Exception:  # serialization internals may change: report nothing rather than guess
            return []

    def close(self) -> None:
        self.method = self._program = None  # released before the pool is resized back (see __init__)
        if self._threads_before is not None:
            with contextlib.suppress(AttributeError, RuntimeError):
                if self._lib._threadpool_get_thread_count() != self._threads_before:
                    self._lib._unsafe_reset_threadpool(self._threads_before)
            self._threads_before = None


class ExecutorchBackend(Backend):
    name = "executorch"
    formats = ("pte",)
    variants = ("xnnpack", "portable")
    default_variant = "xnnpack"
    module = "executorch"
    install_hint = "pip install 'fcbench[executorch]'"
    runtime_modules = ("torch", "executorch.extension.pybindings.portable_lib", "executorch.runtime")

    def requested_placement(self, variant: str) -> str:
        return {"xnnpack": "XNNPACK", "portable": "CPU"}.get(variant, variant)

    def accepts(self, artifact: Path, manifest: Manifest, variant: str) -> tuple[bool, str]:
        if variant not in ("xnnpack", "portable") or not Path(artifact).is_file():
            return True, ""  # load() reports these
        delegated = _delegated(Path(artifact), manifest)
        if delegated == (variant == "xnnpack"):
            return True, ""
        made = "with XNNPACK delegate blobs" if delegated else "for portable kernels (delegate=none)"
        return False, f"{Path(artifact).name} was exported {made}; executorch:{variant} does not apply"

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        path = self.check_request(artifact, variant, threads, options)
        session = ExecutorchSession(path, threads)  # validates the file first
        delegated = _delegated(path, manifest)
        if delegated != (variant == "xnnpack"):
            session.close()
            if delegated:
                raise FcbenchError(f"{path.name} holds XNNPACK delegate blobs; executorch:portable needs a .pte "
                                   "exported with delegate=none (fcbench convert --opt pte.delegate=none)")
            raise FcbenchError(f"{path.name} has no XNNPACK delegate (exported with delegate=none); "
                               "run it as executorch:portable")
        return session
