"""Backend plugins, named profiles (``NAME.toml``) and ``--backend`` resolution.

``--backend`` takes a profile name (``tflite-xnnpack``), ``plugin:variant``
(``onnxruntime:cpu``), a plugin name (its default variant), or ``all``.
Profiles are looked up in ``$FCBENCH_BACKENDS`` (a folder), then ``./backends`` in the working
directory, then the built-in ones shipped in ``fcbench/backends/profiles/``; first found wins
(see :mod:`fcbench.profiles`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcbench import profiles as profile_files
from fcbench.backends.base import Backend, NodePlacement, Session
from fcbench.errors import FcbenchError, suggest
from fcbench.plugins import load, names

__all__ = ["Backend", "BackendSpec", "NodePlacement", "Session", "describe_profiles", "get_backend", "profiles",
           "resolve", "why_not"]


@dataclass
class BackendSpec:
    label: str  # as shown in tables: the profile name or plugin:variant
    plugin: str
    variant: str
    options: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None  # the profile file, when --backend named one
    origin: str | None = None  # where that file was found: env, cwd or builtin (fcbench.profiles)


def profiles() -> dict[str, BackendSpec]:
    """Every named profile by name, first in the search path wins."""
    found: dict[str, BackendSpec] = {}
    for name, f in profile_files.find("backends").items():
        doc = f.read()
        if "plugin" not in doc:
            raise FcbenchError(f"backend profile {f.location}: missing key 'plugin' (e.g. plugin = \"tflite\")")
        found[name] = BackendSpec(label=name, plugin=doc["plugin"], variant=doc.get("variant", ""),
                                  options=dict(doc.get("options", {})), profile=f.location, origin=f.origin)
    return found


def describe_profiles() -> list[dict[str, Any]]:
    """One row per named profile for listings: where it came from and what it hides.

    ``origin`` is ``env`` ($FCBENCH_BACKENDS), ``cwd`` (./backends) or ``builtin``;
    ``overrides`` lists the same-named files further down the search path.
    """
    rows = []
    for name, f in profile_files.find("backends").items():
        doc = f.read()
        rows.append({"name": name, "plugin": doc.get("plugin", ""), "variant": doc.get("variant", ""),
                     "description": doc.get("description", ""), "origin": f.origin, "path": f.location,
                     "overrides": list(f.shadows)})
    return rows


def get_backend(plugin: str) -> Backend:
    cls = load("backend", plugin)
    return cls()


def why_not(spec: BackendSpec, artifact: Path, manifest: Any) -> tuple[Backend, str]:
    """The backend a spec names, and '' when it can run this artifact here, else why not: it does not load
    the format, or its runtime or variant is absent here, or the variant does not apply to this artifact.
    bench (a skipped cell), eval (a skipped matrix cell) and inspect (an error) share this one check."""
    backend = get_backend(spec.plugin)
    if manifest.format not in backend.formats:
        return backend, f"{spec.plugin} does not load {manifest.format} (it loads {', '.join(backend.formats)})"
    ok, reason = backend.can_run(Path(artifact), manifest, spec.variant)
    return backend, "" if ok else reason


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
            raise FcbenchError(f"unknown backend '{text}'{suggest(text, choices)}; profiles "
                               f"({profile_files.describe_search_path('backends')}): {', '.join(profs)}; "
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
