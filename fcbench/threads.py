"""torch's thread count is process-wide: a verb that sets it for its own work puts it back when it returns.

``train(threads=1)`` called from a notebook (or one test after another in one process) must not leave every
later torch call in that process on one thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def restores_torch_threads(fn: F) -> F:
    """Decorate a verb so that torch's thread count after the call is what it was before, however it ends."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return wrapper  # type: ignore[return-value]


class TorchThreads:
    """For an object that holds torch for a while (a backend session): set the thread count now, put the one it
    found back on :meth:`restore` (a session's ``close``)."""

    def __init__(self, threads: int | None) -> None:
        import torch

        self._torch = torch
        self.before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def restore(self) -> None:
        if self._torch.get_num_threads() != self.before:
            self._torch.set_num_threads(self.before)
