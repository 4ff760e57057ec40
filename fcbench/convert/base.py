"""The exporter contract: one class per target format, found by format name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import module_available


def option_bool(what: str, name: str, value: Any) -> bool:
    """An exporter option that must be a boolean (YAML/TOML give bools; the library API may pass
    'true'/'false' strings, which ``bool()`` would read as True both)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise FcbenchError(f"{what}: option '{name}' must be true or false, got {value!r}")


@dataclass
class ExportResult:
    file: Path  # the artifact written (for OpenVINO: the .xml; its .bin lies beside it)
    input_layout: str = "NCHW"  # layout the artifact expects (litert-torch models may take NHWC)
    options: dict[str, Any] = field(default_factory=dict)  # options actually used (opset, ...), for lineage
    extra: dict[str, Any] = field(default_factory=dict)  # anything worth keeping in the manifest


class Exporter:
    format: ClassVar[str] = ""  # onnx | tflite | openvino | ptl | pte
    suffix: ClassVar[str] = ""
    module: ClassVar[str] = ""  # python module the converter needs
    install_hint: ClassVar[str] = ""
    default_backend: ClassVar[str] = ""  # backend used for the parity check
    options: ClassVar[tuple[str, ...]] = ()  # option keys ``export`` accepts (``--opt FORMAT.KEY=VALUE``)

    def check_options(self, options: dict[str, Any]) -> None:
        """Reject an unknown option key, naming the closest known one."""
        for key in options:
            if key not in self.options:
                raise FcbenchError(f"{self.format} export: unknown option '{key}'{suggest(key, self.options)}; "
                                   f"options: {', '.join(self.options) or 'none'}")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not cls.module:
            return True, ""
        return module_available(cls.module, cls.install_hint)

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        """Write ``model`` (eval mode, fp32) traced with ``example`` (NCHW) to ``out``."""
        raise NotImplementedError
