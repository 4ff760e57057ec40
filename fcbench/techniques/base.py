"""The technique contract: what a compression technique plugin is and what it is given.

A technique is a class registered in the ``fcbench.techniques`` entry-point group::

    [project.entry-points."fcbench.techniques"]
    round-weights = "my_package:RoundWeights"

It has a ``name`` (the entry-point name), a lineage ``verb`` (``distill``, ``prune``,
``quantize``, or a generic one such as ``compress``), its options as a dataclass ``Options``
(typed fields with defaults), and ``apply(checkpoint, options, context) -> Checkpoint``, which
returns the changed model's checkpoint object and writes nothing:
``checkpoint.with_model(model)`` turns a changed :class:`torch.nn.Module` (pruned, rounded, ...)
into one, recording a changed architecture so the result loads again with ``build_model()``.
:func:`fcbench.techniques.apply_technique` does the rest (options, saving, manifest, lineage).
A technique whose optional dependency is missing says so in ``available()``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from fcbench.errors import FcbenchError, suggest

if typing.TYPE_CHECKING:
    from fcbench.data.preprocess import Preprocessing
    from fcbench.training.checkpoint import Checkpoint


@dataclass
class TechniqueContext:
    """What a technique may need beyond the checkpoint and its options.

    ``data(preprocessing, batch_size)`` returns an iterable of ``(images, labels)`` batches prepared
    with that preprocessing (calibration, fine-tuning, distillation), or is None when the caller
    gave no data: ask for it with :meth:`require_data`. ``progress(message, fraction)`` reports
    progress (fraction in [0, 1], or None when unknown); techniques never print.
    ``finetune(checkpoint, round, rounds)``, when the caller can train, fine-tunes a changed checkpoint
    (``checkpoint.with_model(model)``) after round ``round`` of ``rounds`` and returns the tuned one
    (same structure; its ``head`` trained too): iterative pruning's schedule."""

    data: Callable[[Preprocessing, int], Iterable[Any]] | None = None
    threads: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: Callable[[str, float | None], None] | None = None
    finetune: Callable[[Checkpoint, int, int], Checkpoint] | None = None

    def report(self, message: str, fraction: float | None = None) -> None:
        if self.progress is not None:
            self.progress(message, fraction)

    def require_data(self, technique: str) -> Callable[[Preprocessing, int], Iterable[Any]]:
        if self.data is None:
            raise FcbenchError(f"technique '{technique}' needs data (calibration or training images); pass --data")
        return self.data


@dataclass
class NoOptions:
    """Options of a technique that takes none."""


class Technique:
    """Base class of technique plugins (subclassing it is optional; keeping the contract is not)."""

    name: ClassVar[str] = ""
    verb: ClassVar[str] = "compress"
    Options: ClassVar[type] = NoOptions

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(usable here, why not): e.g. ``fcbench.plugins.module_available("torch_pruning", ...)``."""
        return True, ""

    def apply(self, checkpoint: Checkpoint, options: Any, context: TechniqueContext) -> Checkpoint:
        raise NotImplementedError


def option_fields(technique: Any) -> dict[str, dataclasses.Field]:
    options_cls = getattr(technique, "Options", NoOptions)
    if not dataclasses.is_dataclass(options_cls):
        raise FcbenchError(f"technique '{technique.name}': its Options is not a dataclass")
    return {f.name: f for f in dataclasses.fields(options_cls) if f.init}


def parse_options(technique: Any, raw: dict[str, Any] | None) -> Any:
    """``raw`` (from the CLI, a recipe or Python) as the technique's ``Options``: every key must be a
    field, every value of the field's type; strings are converted (``"3"`` -> 3 for an int)."""
    fields = option_fields(technique)
    options_cls = technique.Options
    hints = typing.get_type_hints(options_cls)
    values: dict[str, Any] = {}
    valid = ", ".join(sorted(fields)) or "none"
    for key, value in (raw or {}).items():
        if key not in fields:
            raise FcbenchError(f"technique '{technique.name}' has no option '{key}'{suggest(key, fields)}; "
                               f"valid options: {valid}")
        try:
            values[key] = _coerce(value, hints.get(key, Any))
        except (TypeError, ValueError) as exc:
            raise FcbenchError(f"technique '{technique.name}': option '{key}' must be "
                               f"{_type_name(hints.get(key, Any))}, got {value!r}") from exc
    try:
        options = options_cls(**values)
    except (TypeError, ValueError) as exc:  # a field without default, or the dataclass's own check
        raise FcbenchError(f"technique '{technique.name}': {exc}; valid options: {valid}") from exc
    return options


def options_dict(options: Any) -> dict[str, Any]:
    """Options as plain data for the lineage."""
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (int, float, bool, str, Optional/Union, Literal, list[...]); else ValueError."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                continue
        raise ValueError(value)
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]()").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(value)
        item = args[0] if args else Any
        return [_coerce(v, item) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(value)
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError(value)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise ValueError(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ValueError(value)
    return value


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", None) or str(tp).replace("typing.", ""))
