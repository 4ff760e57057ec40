"""The one exception type users see.

The CLI turns a :class:`FcbenchError` into a single line on stderr and exit code 2
(usage or input error) or 1 (a run that failed). Messages say what, where and how to fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FcbenchError(Exception):
    """An error a user can act on. ``exit_code`` 2 means bad input or usage."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotApplicable(FcbenchError):
    """This backend cannot run this artifact here (format, variant, runtime): a matrix skips the
    cell with the message; a single run reports it as a usage error."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (runtimes' errors run to pages), or its
    type name when the message is empty."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def distinct_reasons(reasons: Iterable[str], most: int = 3) -> str:
    """Distinct reasons in order, the first ``most`` of them (a matrix skipped for one cause says it once)."""
    seen = list(dict.fromkeys(reasons))
    return "; ".join(seen[:most]) + (f"; and {len(seen) - most} more" if len(seen) > most else "")
