"""Console helpers: logs and progress go to stderr, data to stdout."""

from __future__ import annotations

import os

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


def progress(console: Console) -> Progress:
    """A progress bar on ``console`` (stderr): task, bar, done/total, elapsed, remaining, and a line of info."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console)
