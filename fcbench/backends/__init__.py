"""Backend plugins, named profiles (``backends/*.toml``) and ``--backend`` resolution.

``--backend`` takes a profile name (``tflite-xnnpack``), ``plugin:variant``
(``onnxruntime:cpu``), a plugin name (its default variant), or ``all``.
Profiles are looked up in ``$FCBENCH_BACKENDS`` (a folder), ``./backends`` and the
``backends/`` folder of the fcbench source tree, first found wins.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import load, names

__all__ = ["Backend", "BackendSpec", "NodePlacement", "Session", "get_backend", "profiles", "resolve"]


@dataclass
class BackendSpec:
    label: str  # as shown in tables: the profile name or plugin:variant
    plugin: str
    variant: str
    options: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None


def profile_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("FCBENCH_BACKENDS"):
        dirs.append(Path(os.environ["FCBENCH_BACKENDS"]))
    dirs.append(Path.cwd() / "backends")
    dirs.append(Path(__file__).resolve().parents[2] / "backends")
    return dirs


def profiles() -> dict[str, BackendSpec]:
    """Every named profile, first folder wins."""
    found: dict[str, BackendSpec] = {}
    for d in profile_dirs():
        for path in sorted(d.glob("*.toml")) if d.is_dir() else []:
            if path.stem in found:
                continue
            try:
                doc = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise FcbenchError(f"backend profile {path}: not valid TOML ({exc})") from exc
            if "plugin" not in doc:
                raise FcbenchError(f"backend profile {path}: missing key 'plugin' (e.g. plugin = \"tflite\")")
            found[path.stem] = BackendSpec(label=path.stem, plugin=doc["plugin"], variant=doc.get("variant", ""),
                                           options=dict(doc.get("options", {})), profile=str(path))
    return found


def get_backend(plugin: str) -> Backend:
    cls = load("backend", plugin)
    return cls()


def resolve(text: str) -> BackendSpec:
    """One --backend item -> spec. Unknown names get the closest suggestion."""
    profs = profiles()
    if text in profs:
        spec = profs[text]
    else:
        plugin, _, variant = text.partition(":")
        known = names("backend")
        if plugin not in known:
            choices = list(profs) + known
            raise FcbenchError(f"unknown backend '{text}'{suggest(text, choices)}; profiles: {', '.join(profs)}; "
                               f"plugins: {', '.join(known)} (plugin:variant also works)")
        spec = BackendSpec(label=text, plugin=plugin, variant=variant)
    if not spec.variant:
        spec.variant = load("backend", spec.plugin).default_variant
        spec.label = f"{spec.plugin}:{spec.variant}" if spec.profile is None else spec.label
    cls = load("backend", spec.plugin)
    if spec.variant not in cls.variants:
        raise FcbenchError(f"backend '{text}': {spec.plugin} has no variant '{spec.variant}'"
                           f"{suggest(spec.variant, cls.variants)}; variants: {', '.join(cls.variants)}")
    return spec


def expand(items: list[str]) -> list[BackendSpec]:
    """Resolve a --backend list; 'all' is every installed plugin x each of its variants."""
    out: list[BackendSpec] = []
    for item in items:
        if item == "all":
            for plugin in names("backend"):
                cls = load("backend", plugin)
                out += [BackendSpec(label=f"{plugin}:{v}", plugin=plugin, variant=v) for v in cls.variants]
        else:
            out.append(resolve(item))
    return out
