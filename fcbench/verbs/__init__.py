"""The verb registry: one place that says what a verb is, used by the CLI, recipes and plugins.

A verb is an options dataclass (see :mod:`fcbench.options`), a library function
``run(options, ctx, hooks) -> result`` and a renderer. The CLI builds one command per
registered verb from its options' fields; a recipe step is any registered verb, with the same
option names as its command. Verbs are plugins in the ``fcbench.verbs`` entry-point group (the
built-ins in :mod:`fcbench.verbs.builtin` are registered there too), so a package can add one
the way ``llm`` plugins add commands.

A result is a plain object: ``to_rows()`` gives its store rows (``[]`` for verbs that measure
nothing) and an optional ``failures()`` lists what makes the command exit 1.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fcbench.errors import FcbenchError, suggest

GROUP = "fcbench.verbs"


def _resolve(target: str | Callable | None) -> Callable | None:
    if target is None or callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Verb:
    name: str
    config: type  # the options dataclass
    run: str | Callable[..., Any]  # "module:function" (imported when the verb runs) or the function
    help: str = ""
    render: str | Callable[..., Any] | None = None  # (result, fmt) -> list of rich renderables or text
    formats: tuple[str, ...] = ("table", "json")  # what --format takes
    stores: bool = True  # writes result rows: the CLI gives it --store and stores rows as they come
    in_recipes: bool = True

    def runner(self) -> Callable[..., Any]:
        fn = _resolve(self.run)
        assert fn is not None
        return fn

    def renderer(self) -> Callable[..., Any] | None:
        return _resolve(self.render)

    def __call__(self, options: Any, ctx: Any = None, hooks: Any = None) -> Any:
        return self.runner()(options, ctx, hooks)


def verbs() -> dict[str, Verb]:
    """Every registered verb by name (built-in and third-party), in name order."""
    from fcbench.plugins import entry_points

    out: dict[str, Verb] = {}
    for name, ep in entry_points("verb").items():
        try:
            verb = ep.load()
        except Exception as exc:  # a broken third-party verb must not take the others down
            raise FcbenchError(f"verb plugin '{name}' ({ep.value}) cannot be loaded: {exc}") from exc
        if not isinstance(verb, Verb):
            raise FcbenchError(f"verb plugin '{name}' ({ep.value}) is not an fcbench.verbs.Verb")
        out[name] = verb
    return out


def get(name: str) -> Verb:
    known = verbs()
    if name not in known:
        raise FcbenchError(f"unknown verb '{name}'{suggest(name, known)}; verbs: {', '.join(known)}")
    return known[name]
