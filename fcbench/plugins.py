"""Plugin discovery through entry points, and the contracts plugins keep.

Built-in plugins are registered in fcbench's own ``pyproject.toml`` exactly as a third-party
package registers its own. Discovery is lazy: names come from package metadata, and a plugin's
module is imported only when that plugin is used or asked whether it is available.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "provider": self.distribution,
            "target": self.value,
        }


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


def _availability(kind: str, ep: metadata.EntryPoint) -> tuple[bool, str]:
    """(available, reason). Plugins may define ``available() -> (bool, reason)``; a plugin
    whose module fails to import is unavailable with the import error as the reason."""
    try:
        obj = ep.load()
    except Exception as exc:  # a broken third-party plugin must not break the listing
        return False, f"import failed: {type(exc).__name__}: {exc}"
    check = getattr(obj, "available", None)
    if callable(check):
        ok, reason = check()
        return bool(ok), "" if ok else str(reason)
    return True, ""


def describe(kind: str | None = None) -> list[PluginInfo]:
    """Every installed plugin (of one kind, or all), with availability and reason."""
    kinds = [kind] if kind else list(KINDS)
    out: list[PluginInfo] = []
    for k in kinds:
        for name, ep in entry_points(k).items():
            ok, reason = _availability(k, ep)
            dist = ep.dist.name if ep.dist is not None else "?"
            out.append(PluginInfo(k, name, ep.value, dist, ok, reason))
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
