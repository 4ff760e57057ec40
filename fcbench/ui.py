"""Console helpers: logs and progress go to stderr, data to stdout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PIPED_WIDTH = 240  # stdout that is not a terminal (CI logs, files): tables are printed whole, not cut at 80


def stdout_console() -> Console:
    """Data goes here: a terminal's own width, or PIPED_WIDTH when piped and $COLUMNS is not set."""
    console = Console(soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return console


def stderr_console() -> Console:
    return Console(stderr=True, log_path=False)


class _NoProgress:
    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass


@contextmanager
def progress_bar(console: Console, enabled: bool = True) -> Iterator[Progress | _NoProgress]:
    if not enabled:
        yield _NoProgress()
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        yield bar
