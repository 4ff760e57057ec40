"""The format registry: what fcbench knows about each kind of model file, in one place.

A :class:`Format` says how a file of that kind is named (its suffixes), how to recognise one
by its bytes, which files are read with it (OpenVINO's ``.bin``), which exporter writes it
(``fcbench convert --to NAME``), which backend runs it when none is named (eval, the convert
parity check), how strict the parity check is, and where its declared input is read from.

Formats are plugins: fcbench's own (``fcbench-ckpt``, ``onnx``, ``tflite``, ``openvino``,
``ptl``, ``pte``) are registered in its ``pyproject.toml`` under the entry-point group
``fcbench.formats`` exactly as a third-party package registers its own, each entry point naming
a ``Format`` object. Discovery is lazy and light: this module and the modules holding
``Format`` objects import no runtime and no torch; an exporter (``"module:Class"``) and an input
reader are imported only when used.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcbench.errors import FcbenchError, suggest

if TYPE_CHECKING:
    from fcbench.artifact import Manifest
    from fcbench.conversion.base import Exporter

__all__ = ["CHECKPOINT", "Format", "artifact_formats", "by_suffix", "default_backend", "exportable", "get",
           "is_artifact", "names"]

# the training checkpoint's format: made by train (no exporter), loaded by fcbench itself, not
# through a runtime; every other format is an artifact that bench and eval run in a backend
CHECKPOINT = "fcbench-ckpt"
HEAD_BYTES = 64  # what ``magic`` is shown of a file
# the convert parity check passes when the cosine of the flattened outputs is at least this and the max
# abs difference is within this share of the reference's largest magnitude (a format may set its own)
PARITY_MIN_COSINE = 0.9999
PARITY_MAX_REL_DIFF = 1e-3


def _import(target: str, what: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        return getattr(obj, attr) if attr else obj
    except (ImportError, AttributeError) as exc:
        raise FcbenchError(f"{what} '{target}' cannot be imported: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Format:
    """One kind of model file. Instances are what the ``fcbench.formats`` entry points name; the
    entry-point name must be ``name``. What the fields cannot say, a subclass overrides
    (``recognise``, ``companions``, ``default_backend``)."""

    name: str  # as in manifests (``format``), ``convert --to`` and result rows
    suffixes: tuple[str, ...]  # lower case with the dot; the first is the one written
    description: str = ""
    # (first HEAD_BYTES bytes, path) -> whether the bytes are this format's; None: trust the suffix
    magic: Callable[[bytes, Path], bool] | None = field(default=None, compare=False, repr=False)
    companion_suffixes: tuple[str, ...] = ()  # files beside it, same stem, read with it (OpenVINO: .bin)
    exporter: str | None = None  # "module:Class" of an fcbench.conversion.base.Exporter; None: convert does not make it
    backend: str = ""  # the backend that runs it when none is named: "plugin:variant" (or "plugin": its default)
    # "module:function": path -> (input shape, dtype) as the file declares them; None: the file does not say
    input_reader: str | None = None
    # the convert parity check: backend options for its run, and what passes (see PARITY_MIN_COSINE)
    parity_options: Mapping[str, Any] = field(default_factory=dict, compare=False)
    parity_min_cosine: float = PARITY_MIN_COSINE
    parity_max_rel_diff: float = PARITY_MAX_REL_DIFF
    order: int = 1000  # listing order (``convert --to all``): built-ins 10..60, third-party after them by name

    def __post_init__(self) -> None:
        if not self.name or not self.suffixes:
            raise FcbenchError(f"format {self.name or '?'}: a format needs a name and at least one suffix")
        for s in (*self.suffixes, *self.companion_suffixes):
            if not s.startswith(".") or s != s.lower():
                raise FcbenchError(f"format {self.name}: suffix '{s}' must be lower case and start with '.'")

    @property
    def suffix(self) -> str:
        """The suffix written (the first of ``suffixes``)."""
        return self.suffixes[0]

    def matches(self, path: str | Path) -> bool:
        """Whether the file name ends in one of the suffixes (any case)."""
        name = Path(path).name.lower()
        return any(name.endswith(s) and len(name) > len(s) for s in self.suffixes)

    def recognise(self, path: str | Path) -> bool:
        """Whether ``path`` is a file whose bytes are this format's (its magic), whatever its name."""
        path = Path(path)
        if not path.is_file():
            return False
        if self.magic is None:
            return True
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        try:
            return bool(self.magic(head, path))
        except (OSError, ValueError):
            return False

    def companions(self, path: str | Path) -> list[str]:
        """Names of the files beside ``path`` that are read with it (e.g. ``model.bin``), whether or
        not they are there; ``present_companions`` keeps those that are."""
        return [Path(path).with_suffix(s).name for s in self.companion_suffixes]

    def present_companions(self, path: str | Path) -> list[str]:
        """The companions that are beside ``path`` now (what a manifest records as ``companion_files``)."""
        return [c for c in self.companions(path) if (Path(path).parent / c).is_file()]

    def default_backend(self, manifest: Manifest | None = None) -> str:
        """The backend label (``plugin:variant``) this format runs in when none is named. An exporter
        that writes a program for one variant only records it as ``extra.backend_variant`` (an
        ExecuTorch program for XNNPACK or for portable kernels); that variant is then the one used."""
        plugin, _, variant = self.backend.partition(":")
        if not plugin:
            return ""
        chosen = (manifest.extra.get("backend_variant") if manifest is not None else None) or variant
        return f"{plugin}:{chosen}" if chosen else plugin

    def exporter_class(self) -> type[Exporter]:
        """The exporter class, imported now. Raises FcbenchError when the format has none."""
        if not self.exporter:
            raise FcbenchError(f"format '{self.name}' is not made by convert; convert makes: "
                               f"{', '.join(f.name for f in exportable())}")
        cls = _import(self.exporter, f"format '{self.name}': exporter")
        if getattr(cls, "format", None) != self.name:
            raise FcbenchError(f"format '{self.name}': exporter {self.exporter} says it writes format "
                               f"'{getattr(cls, 'format', None)}'; set its class attribute format = '{self.name}'")
        return cls

    def read_input(self, path: str | Path) -> tuple[list[int], str] | None:
        """(input shape, dtype) as the file declares them; None when the format does not store them."""
        if not self.input_reader:
            return None
        return _import(self.input_reader, f"format '{self.name}': input reader")(Path(path))

    def available(self) -> tuple[bool, str]:
        """Whether this format can be made here: its exporter's converter is installed (formats
        without an exporter are always available). Used by ``fcbench plugins --kind format``."""
        if not self.exporter:
            return True, ""
        try:
            return self.exporter_class().available()
        except FcbenchError as exc:
            return False, str(exc)


# --- the registry -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, Format | FcbenchError]:
    """Every registered format by name, in listing order; a plugin that cannot be loaded maps to
    the error saying why (raised when that format is asked for, skipped by the scans)."""
    from fcbench.plugins import entry_points

    found: dict[str, Format | FcbenchError] = {}
    for name, ep in entry_points("format").items():
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the other formats
            found[name] = FcbenchError(f"format plugin '{name}' ({ep.value}) cannot be imported: "
                                       f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(obj, Format):
            found[name] = FcbenchError(f"format plugin '{name}' ({ep.value}) is a {type(obj).__name__}, "
                                       "not a fcbench.formats.Format")
        elif obj.name != name:
            found[name] = FcbenchError(f"format plugin '{name}' ({ep.value}) is named '{obj.name}'; "
                                       "the entry-point name must be the format's name")
        else:
            found[name] = obj

    def key(item: tuple[str, Format | FcbenchError]) -> tuple[int, str]:
        return (item[1].order if isinstance(item[1], Format) else 10**9, item[0])

    return dict(sorted(found.items(), key=key))


def reload() -> None:
    """Forget what was discovered (after installing a format plugin in this process)."""
    _registry.cache_clear()


def get(name: str) -> Format:
    """The format called ``name``; an unknown name raises with the closest one suggested."""
    reg = _registry()
    if name not in reg:
        raise FcbenchError(f"unknown format '{name}'{suggest(name, reg)}; formats: {', '.join(reg)}")
    found = reg[name]
    if isinstance(found, FcbenchError):
        raise found
    return found


def formats() -> list[Format]:
    """Every loadable format, in listing order."""
    return [f for f in _registry().values() if isinstance(f, Format)]


def names() -> list[str]:
    """Every registered format name, in listing order."""
    return list(_registry())


def exportable() -> list[Format]:
    """The formats ``convert`` makes (those with an exporter): onnx, tflite, openvino, ptl, pte,
    then third-party ones."""
    return [f for f in formats() if f.exporter]


def artifact_formats() -> list[Format]:
    """The formats bench and eval run through a backend: all but the training checkpoint."""
    return [f for f in formats() if f.name != CHECKPOINT]


def by_suffix(path: str | Path) -> Format | None:
    """The format a file name says (its suffix, any case; the longest matching suffix wins), or None."""
    best: tuple[int, Format] | None = None
    name = Path(path).name.lower()
    for f in formats():
        for s in f.suffixes:
            if name.endswith(s) and len(name) > len(s) and (best is None or len(s) > best[0]):
                best = (len(s), f)
    return best[1] if best else None


def is_artifact(path: str | Path) -> bool:
    """Whether the file name is that of an artifact a backend runs (not a training checkpoint)."""
    f = by_suffix(path)
    return f is not None and f.name != CHECKPOINT


def default_backend(manifest: Manifest) -> str | None:
    """The backend label an artifact runs in when none is named; None for an unknown format or one
    that names no backend."""
    reg = _registry()
    f = reg.get(manifest.format)
    return (f.default_backend(manifest) or None) if isinstance(f, Format) else None
