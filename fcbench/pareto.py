"""The latency/accuracy Pareto front, shared by ``optimize`` (its candidates) and ``report`` (its points)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def pareto_front(items: Iterable[T], latency: Callable[[T], float | None],
                 accuracy: Callable[[T], float | None]) -> list[T]:
    """The items no other beats on both latency (lower) and accuracy (higher), fastest first; items without
    either figure are left out. Of items equal on both, the first is kept."""
    rated = [x for x in items if latency(x) is not None and accuracy(x) is not None]
    rated.sort(key=lambda x: (latency(x), -accuracy(x)))  # type: ignore[operator]
    front: list[T] = []
    best = -math.inf
    for x in rated:
        if accuracy(x) > best:  # type: ignore[operator]
            front.append(x)
            best = accuracy(x)  # type: ignore[assignment]
    return front
