"""Named TOML profiles of one kind (``backends`` now, ``devices`` next): where they are found.

A profile is a ``NAME.toml`` file. For a kind such as ``backends`` the search path is, in order:

1. ``$FCBENCH_BACKENDS`` (a folder), when set;
2. ``./backends`` in the working directory (user overrides);
3. the profiles shipped inside fcbench (``fcbench/backends/profiles/*.toml``, package data read
   through :mod:`importlib.resources`, so they are there in an installed wheel too).

The first file of a name wins, so a user's ``./backends/ort-cpu.toml`` replaces the built-in
one. Each found file remembers where it came from (``origin``: ``env``, ``cwd`` or ``builtin``)
and which files of the same name it hides.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fcbench.errors import FcbenchError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # importlib.abc before 3.11

# kind -> environment variable naming a folder of user profiles
KINDS: dict[str, str] = {"backends": "FCBENCH_BACKENDS", "devices": "FCBENCH_DEVICES"}
ORIGINS = ("env", "cwd", "builtin")


@dataclass(frozen=True)
class ProfileFile:
    kind: str  # "backends" or "devices"
    name: str  # the file's stem, as given on the command line
    origin: str  # "env", "cwd" or "builtin"
    location: str  # the file, as text for messages and listings
    resource: Traversable = field(repr=False, compare=False)
    shadows: tuple[str, ...] = ()  # locations of same-named files later in the search path

    def read(self) -> dict[str, Any]:
        """The parsed TOML document; a file that is not TOML is a one-line FcbenchError."""
        try:
            return tomllib.loads(self.resource.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise FcbenchError(f"{self.kind[:-1]} profile {self.location}: not valid TOML ({exc})") from exc


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise FcbenchError(f"unknown profile kind '{kind}'; kinds: {', '.join(KINDS)}")
    return kind


def builtin_dir(kind: str) -> Traversable:
    """The package-data folder of built-in profiles of ``kind`` (it may not exist yet)."""
    return resources.files("fcbench") / _kind(kind) / "profiles"


def search_path(kind: str) -> list[tuple[str, Traversable]]:
    """(origin, folder) in lookup order; folders that do not exist are kept (nothing is found there)."""
    out: list[tuple[str, Traversable]] = []
    env = os.environ.get(KINDS[_kind(kind)])
    if env:
        out.append(("env", Path(env)))
    out.append(("cwd", Path.cwd() / kind))
    out.append(("builtin", builtin_dir(kind)))
    return out


def _toml_files(folder: Traversable) -> list[Traversable]:
    try:
        if not folder.is_dir():
            return []
        return sorted((f for f in folder.iterdir() if f.name.endswith(".toml") and f.is_file()),
                      key=lambda f: f.name)
    except OSError:  # unreadable folder: nothing found there
        return []


def find(kind: str) -> dict[str, ProfileFile]:
    """Every profile of ``kind`` by name, the first in the search path winning; sorted by name."""
    hits: dict[str, list[tuple[str, Traversable]]] = {}
    for origin, folder in search_path(kind):
        for f in _toml_files(folder):
            hits.setdefault(f.name[: -len(".toml")], []).append((origin, f))
    out = {}
    for name in sorted(hits):
        (origin, f), *rest = hits[name]
        out[name] = ProfileFile(kind, name, origin, str(f), f, tuple(str(r) for _, r in rest))
    return out


def describe_search_path(kind: str) -> str:
    """Where profiles of ``kind`` are looked for, in one phrase for messages."""
    env = KINDS[_kind(kind)]
    parts = [f"${env} ({os.environ[env]})"] if os.environ.get(env) else []
    return ", ".join([*parts, f"./{kind}", "built-in"])
