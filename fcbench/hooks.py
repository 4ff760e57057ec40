"""How a library verb talks to its caller while it runs, without printing or storing anything itself.

Every verb (``train``, ``evaluate``, ``convert``, ``bench``, ...) takes ``hooks=Hooks(...)``:

- ``on_rows(rows)`` gets result rows the moment they exist (a finished bench cell, an epoch's
  loss). The CLI passes a callback that writes them to the store, which is how a crash
  mid-run loses nothing already measured. A Python caller may leave it out and store the
  returned result at the end (``store.add(result)``).
- ``on_event(kind, payload)`` gets progress events (``"cell"`` with a bench ``Cell``,
  ``"epoch"``, ``"outcome"`` for a conversion, ``"eval"`` for one evaluation, ...).
- ``on_log(message)`` gets one-line notes a user should see (what was assumed, what was left out).
- ``on_progress(task, done, total, info)`` drives a progress bar.
- ``on_rows_to(store, rows)`` gets rows meant for a store the run names itself (a recipe step's
  ``store:``).

All are optional; a verb called with ``Hooks()`` (the default) runs silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class Hooks:
    on_rows: Callable[[list[Any]], None] | None = None
    on_event: Callable[[str, Any], None] | None = None
    on_log: Callable[[str], None] | None = None
    on_progress: Callable[[str, int, int, str], None] | None = None
    # rows meant for a named store (a recipe step's ``store:``); without it they go to ``on_rows``
    on_rows_to: Callable[[str, list[Any]], None] | None = None

    def rows(self, rows: Iterable[Any]) -> None:
        rows = list(rows)
        if rows and self.on_rows is not None:
            self.on_rows(rows)

    def rows_to(self, store: str | None, rows: Iterable[Any]) -> None:
        rows = list(rows)
        if store is not None and self.on_rows_to is not None:
            if rows:
                self.on_rows_to(store, rows)
        else:
            self.rows(rows)

    def event(self, kind: str, payload: Any = None) -> None:
        if self.on_event is not None:
            self.on_event(kind, payload)

    def log(self, message: str) -> None:
        if self.on_log is not None:
            self.on_log(message)

    def progress(self, task: str, done: int, total: int, info: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(task, done, total, info)


def or_default(hooks: Hooks | None) -> Hooks:
    return hooks if hooks is not None else Hooks()
