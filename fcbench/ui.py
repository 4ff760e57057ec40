"""Console helpers: logs and progress go to stderr, data to stdout.

Strings from users and runtimes (paths, reasons, install hints such as ``fcbench[openvino]``) are never
read as rich markup: pass them through :func:`plain` (or build :class:`rich.text.Text`)."""

from __future__ import annotations

import os
import re
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # a runtime's colour codes inside a message
PIPED_WIDTH = 240  # stdout that is not a terminal (CI logs, files): tables are printed whole, not cut at 80


def plain(value: Any) -> str:
    """``value`` as text that rich prints literally (``[red]`` in a path stays ``[red]``)."""
    return escape(_ANSI.sub("", "" if value is None else str(value)))


def literal(value: Any, style: str = "") -> Text:
    """A table cell or title that is exactly ``value``, optionally in a style."""
    return Text(_ANSI.sub("", "" if value is None else str(value)), style=style)


def stdout_console(file: IO[str] | None = None) -> Console:
    """Data goes here: a terminal's own width, or PIPED_WIDTH when piped and $COLUMNS is not set."""
    console = Console(file=file, soft_wrap=True, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH
    return _own_width(console)


def _own_width(console: Console) -> Console:
    """A terminal's width read from the console's own stream: while a verb runs, descriptors 1 and 2 point at
    its log, and rich would otherwise ask only those (and stdin) for a width."""
    if console.is_terminal and "COLUMNS" not in os.environ:
        try:
            console.width = os.get_terminal_size(console.file.fileno()).columns
        except (AttributeError, OSError, ValueError):
            pass
    return console


def stderr_console(file: IO[str] | None = None) -> Console:
    """fcbench's own log lines; ``file`` is the terminal's stderr while a verb's chatter goes to its log."""
    if file is not None:
        return _own_width(Console(file=file, log_path=False, emoji=False))
    return Console(stderr=True, log_path=False, emoji=False)


def progress(console: Console) -> Progress:
    """A progress bar on ``console`` (stderr): task, bar, done/total, elapsed, remaining, and a line of info."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}", markup=False),
                    console=console, redirect_stdout=False, redirect_stderr=False)  # chatter: the run's log
