"""Plugin discovery through entry points, and the contracts plugins keep.

Built-in plugins are registered in fcbench's own ``pyproject.toml`` exactly as a third-party
package registers its own. Discovery is lazy: names come from package metadata, and a plugin's
module is imported only when that plugin is used or asked whether it is available.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

from fcbench.errors import FcbenchError, suggest

KINDS: dict[str, str] = {
    "model": "fcbench.models",
    "dataset": "fcbench.datasets",
    "technique": "fcbench.techniques",
    "backend": "fcbench.backends",
    "device": "fcbench.devices",
    "verb": "fcbench.verbs",
    "format": "fcbench.formats",
}


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    value: str  # "module:attr" as declared
    distribution: str  # which installed package declared it
    available: bool
    reason: str  # why not available ('' when available)
    # with describe(verbose=True): what the plugin takes, e.g. a model's task, input size and options with defaults
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "provider": self.distribution,
            "target": self.value,
        }
        if self.details:
            out["details"] = self.details
        return out


def _group(kind: str) -> str:
    if kind not in KINDS:
        raise FcbenchError(f"unknown plugin kind '{kind}'{suggest(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    return KINDS[kind]


def entry_points(kind: str) -> dict[str, metadata.EntryPoint]:
    """Entry points of one kind by name, without importing anything."""
    eps = metadata.entry_points(group=_group(kind))
    return {ep.name: ep for ep in sorted(eps, key=lambda e: e.name)}


def names(kind: str) -> list[str]:
    return list(entry_points(kind))


def load(kind: str, name: str) -> Any:
    """Import and return the object a plugin's entry point names.

    Unknown names raise FcbenchError with the closest known name suggested.
    """
    eps = entry_points(kind)
    if name not in eps:
        known = ", ".join(eps) or "none installed"
        raise FcbenchError(f"unknown {kind} '{name}'{suggest(name, eps)}; known: {known}")
    try:
        return eps[name].load()
    except ImportError as exc:
        raise FcbenchError(f"{kind} plugin '{name}' cannot be imported: {exc}") from exc


def _availability(kind: str, ep: metadata.EntryPoint, verbose: bool = False) -> tuple[bool, str, dict[str, Any]]:
    """(available, reason, details). Plugins may define ``available() -> (bool, reason)``; a plugin
    whose module fails to import is unavailable with the import error as the reason."""
    try:
        obj = ep.load()
    except Exception as exc:  # a broken third-party plugin must not break the listing
        return False, f"import failed: {type(exc).__name__}: {exc}", {}
    details: dict[str, Any] = {}
    if verbose:
        try:
            details = _details(kind, ep.name, obj)
        except Exception as exc:  # a third-party plugin's odd metadata must not break the listing either
            details = {"error": f"{type(exc).__name__}: {exc}"}
    check = getattr(obj, "available", None)
    if callable(check):
        ok, reason = check()
        return bool(ok), "" if ok else str(reason), details
    return True, "", details


def _default(f: Any) -> Any:
    """A dataclass field's default as plain data (``"required"`` when it has none)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return "required"


def _details(kind: str, name: str, obj: Any) -> dict[str, Any]:
    """What a plugin takes, read from its own metadata (nothing is built or run)."""
    if kind == "model":
        from fcbench.models.registry import options_info

        return options_info(name, obj)
    if kind == "dataset":
        options = obj.options() if callable(getattr(obj, "options", None)) else dict(getattr(obj, "OPTIONS", {}))
        return {"options": options, **({"detects": obj.detects} if getattr(obj, "detects", "") else {})}
    if kind == "technique":
        from fcbench.techniques.base import option_fields

        return {"verb": getattr(obj, "verb", "compress"),
                "options": {n: _default(f) for n, f in option_fields(obj).items()}}
    if kind == "backend":
        return {"formats": list(getattr(obj, "formats", ())), "variants": list(getattr(obj, "variants", ())),
                "default_variant": getattr(obj, "default_variant", ""),
                "options": {k: None for k in getattr(obj, "options", ())}}
    if kind == "format":
        return {"suffixes": list(getattr(obj, "suffixes", ())), "backend": getattr(obj, "backend", "")}
    return {}


def describe(kind: str | None = None, verbose: bool = False) -> list[PluginInfo]:
    """Every installed plugin (of one kind, or all), with availability and reason; ``verbose`` adds each
    one's details (a model's task, input size and options with their defaults; a technique's or a
    dataset's options; a backend's formats and variants; a format's suffixes)."""
    kinds = [kind] if kind else list(KINDS)
    out: list[PluginInfo] = []
    for k in kinds:
        for name, ep in entry_points(k).items():
            ok, reason, details = _availability(k, ep, verbose)
            dist = ep.dist.name if ep.dist is not None else "?"
            out.append(PluginInfo(k, name, ep.value, dist, ok, reason, details))
    return out


def module_available(module: str, install: str) -> tuple[bool, str]:
    """Check that ``module`` can be imported, without importing it.

    ``install`` is the hint shown when it cannot, e.g. "pip install 'fcbench[openvino]'".
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return True, ""
    return False, f"python package '{module}' is not installed; install it with: {install}"


# --- contracts ------------------------------------------------------------------------------

@runtime_checkable
class Device(Protocol):
    """Where a benchmark runs. Drivers: local (here), adb and ssh (planned).

    Relative remote paths are inside the driver's work dir, where ``exec`` runs. A driver may set
    ``python`` (a command as a list, e.g. ``["python3"]``): ``fcbench.devices.runner`` runs the
    bench worker with it (``python3`` when unset)."""

    name: str

    def push(self, local: str, remote: str) -> None: ...

    def pull(self, remote: str, local: str) -> None: ...

    def exec(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]: ...

    def info(self) -> dict[str, Any]: ...

    def cleanup(self) -> None: ...
