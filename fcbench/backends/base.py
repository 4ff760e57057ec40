"""The backend contract: a runtime that loads an artifact and runs it.

A backend plugin is a class registered in the ``fcbench.backends`` entry-point group. Its
module must import cheaply: the runtime itself (onnxruntime, tensorflow, openvino, cv2,
executorch) is imported inside ``load``, so listing plugins never imports a runtime and a
missing runtime disables that one plugin only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fcbench.artifact import Manifest
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

    def precisions(self, variant: str) -> tuple[str, ...]:
        """Inference precisions this variant can be asked for (``bench --precision``)."""
        return ("f32",)

    def precision_options(self, precision: str) -> dict[str, Any]:
        """Backend options that ask for ``precision`` (one of ``precisions``)."""
        return {}

    def requested_placement(self, variant: str) -> str:
        """The placement label (as ``Session.placement`` reports it) that counts as "ran where the
        user asked" for this variant; matched case-insensitively as a substring."""
        return variant

    def versions(self) -> dict[str, str]:
        """Runtime package versions to stamp on result rows."""
        return {}

    def load(self, artifact: Path, manifest: Manifest, variant: str, threads: int | None,
             options: dict[str, Any]) -> Session:
        raise NotImplementedError
