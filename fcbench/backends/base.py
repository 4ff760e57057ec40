"""The backend contract: a runtime that loads an artifact and runs it.

A backend plugin is a class registered in the ``fcbench.backends`` entry-point group. Its
module must import cheaply: the runtime itself (onnxruntime, tensorflow, openvino, cv2,
executorch) is imported inside ``load``, so listing plugins never imports a runtime and a
missing runtime disables that one plugin only.
"""

from __future__ import annotations

import functools
import importlib
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.artifact import Manifest
from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import module_available


@dataclass
class NodePlacement:
    """Where one node (op) ran and in which precision, as the runtime reports it."""

    node: str
    op_type: str
    placement: str  # delegate / execution provider / device, e.g. "XNNPACK", "CPUExecutionProvider", "CPU"
    precision: str = ""  # e.g. "f32", "bf16", "i8"; "" where the runtime does not tell

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions providing it (scanning them all takes ~0.2 s: once)."""
    return metadata.packages_distributions()


class Session:
    """A loaded model. ``run`` takes the prepared input batch (layout as the manifest says)."""

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def placement(self) -> list[NodePlacement]:
        """Per-node placement as the runtime reports it; empty where the runtime cannot tell."""
        return []

    def close(self) -> None:
        pass


class Backend:
    """Base class of backend plugins; subclasses set the class attributes and ``load``."""

    name: ClassVar[str] = ""
    formats: ClassVar[tuple[str, ...]] = ()
    variants: ClassVar[tuple[str, ...]] = ("cpu",)
    default_variant: ClassVar[str] = "cpu"
    module: ClassVar[str] = ""  # python module that must be importable, e.g. "onnxruntime"
    install_hint: ClassVar[str] = ""  # e.g. "pip install 'fcbench[onnx]'"
    options: ClassVar[tuple[str, ...]] = ()  # option keys ``load`` accepts (a profile's [options])
    # modules ``load`` imports; bench imports them before timing ``load``, so a cell's init time is
    # loading the model, not importing its runtime (that is recorded apart, as import_ms)
    runtime_modules: ClassVar[tuple[str, ...]] = ()

    def import_runtime(self) -> float:
        """Import ``runtime_modules``; the milliseconds it took (about 0 once they are imported)."""
        t = time.perf_counter()
        for name in self.runtime_modules:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise FcbenchError(f"{self.name}: cannot import {name} ({exc}); {self.install_hint or 'install it'}",
                                   exit_code=1) from exc
        return (time.perf_counter() - t) * 1e3

    def check_request(self, artifact: Path, variant: str, threads: int | None,
                      options: dict[str, Any]) -> Path:
        """The checks every ``load`` starts with: option keys, variant, runtime and variant
        present here (exit 1 when not), file present, thread count. Returns the artifact path."""
        for key in options:
            if key not in self.options:
                raise FcbenchError(f"{self.name}: unknown option '{key}'{suggest(key, self.options)}; "
                                   f"options: {', '.join(self.options) or 'none'}")
        if variant not in self.variants:
            raise FcbenchError(f"{self.name} has no variant '{variant}'; variants: {', '.join(self.variants)}")
        ok, reason = self.variant_available(variant)
        if not ok:
            raise FcbenchError(reason, exit_code=1)
        path = Path(artifact)
        if not path.is_file():
            raise FcbenchError(f"{self.name}: {path} " + ("is not a file" if path.exists() else "does not exist"))
        if threads is not None and threads < 1:
            raise FcbenchError(f"{self.name}: threads must be >= 1, got {threads}")
        return path

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not cls.module:
            return True, ""
        return module_available(cls.module, cls.install_hint)

    def variant_available(self, variant: str) -> tuple[bool, str]:
        """Whether a variant can run on this host (e.g. a CUDA provider, a GPU delegate)."""
        if variant not in self.variants:
            return False, f"{self.name} has no variant '{variant}'; variants: {', '.join(self.variants)}"
        return self.available()

    def accepts(self, artifact: Path, manifest: Manifest, variant: str) -> tuple[bool, str]:
        """Whether this variant applies to this artifact at all (e.g. an ExecuTorch program exported
        for XNNPACK is not a portable-kernels program); a matrix skips, not fails, a cell that does not."""
        return True, ""

    def can_run(self, artifact: Path, manifest: Manifest, variant: str) -> tuple[bool, str]:
        """Runtime installed, variant available on this host, and applicable to this artifact
        (``available``, ``variant_available``, ``accepts``, in that order): (ok, the first reason not)."""
        ok, reason = self.available()
        if ok:
            ok, reason = self.variant_available(variant)
        if ok:
            ok, reason = self.accepts(artifact, manifest, variant)
        return ok, reason

    def precisions(self, variant: str) -> tuple[str, ...]:
        """Inference precisions this variant can be asked for (``bench --precision``)."""
        return ("f32",)

    def precision_options(self, precision: str) -> dict[str, Any]:
        """Backend options that ask for ``precision`` (one of ``precisions``)."""
        return {}

    def interleaved_options(self, variant: str, options: dict[str, Any]) -> dict[str, Any]:
        """The options for sessions timed *in turn* in one process (``compare A B``): by default ``options``
        as given. A runtime whose idle sessions disturb the one being timed changes them here."""
        return options

    def requested_placement(self, variant: str) -> str:
        """The placement label (as ``Session.placement`` reports it) that counts as "ran where the
        user asked" for this variant; matched case-insensitively as a substring."""
        return variant

    def versions(self) -> dict[str, str]:
        """Runtime package versions to stamp on result rows: by default, the installed
        distribution(s) that provide ``module`` (e.g. ``ai_edge_litert`` -> ``ai-edge-litert``)."""
        if not self.module:
            return {}
        return {dist: metadata.version(dist) for dist in _distributions().get(self.module.split(".")[0], ())}

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        raise NotImplementedError
