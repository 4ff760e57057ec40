"""The exporter contract: one class per target format. The format itself (suffixes, companion
files, the backend that checks parity) is a :class:`fcbench.formats.Format` that names its
exporter; the exporter only says which format it writes and which converter it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import module_available

if TYPE_CHECKING:  # the contract imports no torch: a format plugin's module stays light to import
    import torch


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


class _FromFormat:
    """A class attribute read from the exporter's registered format (the one place it is said)."""

    def __init__(self, fact: Callable[[Any], Any]) -> None:
        self.fact = fact

    def __get__(self, obj: Any, owner: type[Exporter]) -> Any:
        if not owner.format:  # the base class
            return None
        from fcbench.formats import get

        return self.fact(get(owner.format))


class Exporter:
    format: ClassVar[str] = ""  # the name of the registered format it writes (fcbench.formats)
    suffix = _FromFormat(lambda f: f.suffix)  # the suffix written, from the format
    module: ClassVar[str] = ""  # python module the converter needs
    install_hint: ClassVar[str] = ""
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
