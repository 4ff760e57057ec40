"""The exporter contract: one class per target format, found by format name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from fcbench.plugins import module_available


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

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not cls.module:
            return True, ""
        return module_available(cls.module, cls.install_hint)

    def export(self, model: torch.nn.Module, example: torch.Tensor, out: Path, options: dict[str, Any]) -> ExportResult:
        """Write ``model`` (eval mode, fp32) traced with ``example`` (NCHW) to ``out``."""
        raise NotImplementedError
