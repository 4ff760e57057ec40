"""Model factories, their metadata, and ``create``/``describe``.

A model is a factory ``fn(**opts) -> nn.Module`` registered in the ``fcbench.models``
entry-point group and decorated with :func:`register_model`, which records the task, the
default input size and preprocessing, and the default options (read from the signature).
``create`` validates option names, resolves defaults that depend on other options, builds
the module, optionally loads weights, and stamps the module with its metadata.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from fcbench import plugins
from fcbench.data.preprocess import CIFAR, FACE, IMAGENET, Preprocessing
from fcbench.errors import FcbenchError, suggest

TASKS = ("embedding", "classification", "detection")

Resolver = Callable[[dict[str, Any]], dict[str, Any]]
PreFn = Callable[[dict[str, Any], tuple[int, int]], Preprocessing]


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`register_model` records about a factory."""

    task: str
    input_size: tuple[int, int]
    defaults: dict[str, Any]
    accepts_any: bool = False  # factory takes **kwargs: option names are not checked
    preprocessing: Preprocessing | PreFn | None = None
    resolve: Resolver | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Defaults + opts, normalised to JSON types, with option-dependent defaults filled in."""
        out = {**copy.deepcopy(self.defaults), **opts}
        out = _jsonable(out)
        if self.resolve is not None:
            out = _jsonable(self.resolve(out))
        if "input_size" in out and out["input_size"] is None:
            out["input_size"] = list(self.input_size)
        if out.get("input_size") is not None:
            out["input_size"] = _size(out["input_size"])
        return out

    def input_size_of(self, opts: dict[str, Any]) -> tuple[int, int]:
        size = opts.get("input_size")
        return tuple(size) if size is not None else tuple(self.input_size)  # type: ignore[return-value]

    def preprocessing_of(self, opts: dict[str, Any]) -> Preprocessing:
        size = self.input_size_of(opts)
        pre = self.preprocessing
        if callable(pre):
            return pre(opts, size)
        if pre is None:
            if self.task == "embedding":
                pre = FACE
            else:
                pre = CIFAR if opts.get("cifar_stem") else IMAGENET
        return replace(pre, size=size)


def _size(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise FcbenchError(f"input_size must be N or [H, W], got {value!r}") from exc
    if h < 1 or w < 1:
        raise FcbenchError(f"input_size must be positive, got {value!r}")
    return [h, w]


def _jsonable(obj: Any) -> Any:
    """Tuples -> lists, recursively (so resolved options round-trip through JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def register_model(
    task: str,
    input_size: tuple[int, int] = (112, 112),
    preprocessing: Preprocessing | PreFn | None = None,
    resolve: Resolver | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorate a factory ``fn(**opts) -> nn.Module`` with fcbench metadata.

    ``preprocessing`` is a :class:`Preprocessing` (its size is replaced by the input size) or
    ``fn(options, (H, W)) -> Preprocessing``; by default FACE for embedding models and
    IMAGENET (CIFAR when ``cifar_stem`` is on) for classifiers. ``resolve(options) -> options``
    fills defaults that depend on other options (e.g. ``num_classes=None`` -> 10 or 1000).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fn.fcbench_spec = _spec_from_signature(fn, task, input_size, preprocessing, resolve)  # type: ignore[attr-defined]
        return fn

    return deco


def _spec_from_signature(fn: Callable[..., Any], task: str, input_size: Any, preprocessing: Any,
                         resolve: Resolver | None) -> ModelSpec:
    defaults: dict[str, Any] = {}
    accepts_any = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind == p.VAR_KEYWORD:
            accepts_any = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            defaults[p.name] = None if p.default is p.empty else p.default
    return ModelSpec(task=task, input_size=tuple(int(s) for s in input_size), defaults=_jsonable(defaults),
                     accepts_any=accepts_any, preprocessing=preprocessing, resolve=resolve)


def _spec(name: str, factory: Any) -> ModelSpec:
    spec = getattr(factory, "fcbench_spec", None)
    if isinstance(spec, ModelSpec):
        return spec
    if not callable(factory):
        raise FcbenchError(f"model plugin '{name}' is not a factory function (got {type(factory).__name__})")
    # An undecorated third-party factory: guess the task from its options.
    params = inspect.signature(factory).parameters
    task = "embedding" if "embedding_size" in params else "classification"
    size = params["input_size"].default if "input_size" in params else None
    size = tuple(size) if isinstance(size, (list, tuple)) else ((112, 112) if task == "embedding" else (224, 224))
    return _spec_from_signature(factory, task, size, None, None)


def _check_names(name: str, spec: ModelSpec, opts: dict[str, Any]) -> None:
    if spec.accepts_any:
        return
    for key in opts:
        if key not in spec.defaults:
            valid = ", ".join(sorted(spec.defaults)) or "none"
            raise FcbenchError(
                f"model '{name}' has no option '{key}'{suggest(key, spec.defaults)}; valid options: {valid}, weights "
                "(defaults: fcbench plugins --kind model --verbose)"
            )


def describe(name: str, **opts: Any) -> dict[str, Any]:
    """Task, input size, preprocessing (as a dict) and resolved default options, without building."""
    spec = _spec(name, plugins.load("model", name))
    _check_names(name, spec, opts)
    resolved = spec.resolved(opts)
    return {
        "name": name,
        "task": spec.task,
        "input_size": list(spec.input_size_of(resolved)),
        "preprocessing": spec.preprocessing_of(resolved).to_dict(),
        "options": resolved,
    }


def options_info(name: str, factory: Any | None = None) -> dict[str, Any]:
    """What ``fcbench plugins --kind model --verbose`` lists: task, default input size and every option with
    the default it takes when not given (options that depend on others, such as ``num_classes``, resolved
    for the plain case). ``any_options`` says the factory also takes options it does not name."""
    spec = _spec(name, factory if factory is not None else plugins.load("model", name))
    resolved = spec.resolved({})
    return {"task": spec.task, "input_size": list(spec.input_size_of(resolved)), "options": resolved,
            **({"any_options": True} if spec.accepts_any else {})}


def create(name: str, weights: str | Path | None = None, **opts: Any) -> nn.Module:
    """Build model ``name`` (any entry point of group ``fcbench.models``) with ``opts``.

    ``weights`` loads a state-dict file (plain, or under a "model"/"state_dict" key) strictly.
    The module gets ``fcbench_name``, ``fcbench_task``, ``fcbench_options`` (resolved, JSON-able:
    ``create(name, **model.fcbench_options)`` rebuilds it), ``output_size``, ``input_size`` and
    ``preprocessing``.
    """
    factory = plugins.load("model", name)
    spec = _spec(name, factory)
    _check_names(name, spec, opts)
    resolved = spec.resolved(opts)
    try:
        json.dumps(resolved)
    except (TypeError, ValueError) as exc:
        raise FcbenchError(f"model '{name}': options must be JSON values (numbers, strings, lists): {exc}") from exc
    try:
        model = factory(**copy.deepcopy(resolved))
    except FcbenchError:
        raise
    except (TypeError, ValueError) as exc:
        raise FcbenchError(f"model '{name}' cannot be built with options {opts}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise FcbenchError(f"model plugin '{name}' returned {type(model).__name__}, not a torch.nn.Module")
    model.fcbench_name = name
    model.fcbench_task = spec.task
    model.fcbench_options = resolved
    model.input_size = spec.input_size_of(resolved)
    model.preprocessing = spec.preprocessing_of(resolved)
    if getattr(model, "output_size", None) is None:
        model.output_size = _output_size(model, spec, resolved)
    if weights is not None:
        load_weights(model, weights, name)
    return model


def _output_size(model: nn.Module, spec: ModelSpec, opts: dict[str, Any]) -> int | None:
    key = "embedding_size" if spec.task == "embedding" else "num_classes"
    if isinstance(opts.get(key), int):
        return int(opts[key])
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m.out_features
    return last


def _tensors(d: dict) -> bool:
    import torch

    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Load a state dict from ``path``: plain, or under a "model"/"state_dict" key."""
    return _read_weights(path)[0]


def _read_weights(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """The state dict of ``path`` and, for an fcbench checkpoint of a changed (pruned) architecture, its
    ``structure`` (see :mod:`fcbench.training.checkpoint`)."""
    import torch

    from fcbench.paths import input_file, not_a_checkpoint

    path = input_file(path, "weights file", hint="it takes a state dict saved with torch.save (.pt/.pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, foreign formats
        raise FcbenchError("weights file " + not_a_checkpoint(path, exc, "a torch state dict")) from exc
    structure = None
    if isinstance(obj, dict) and not _tensors(obj):
        if isinstance(obj.get("structure"), list):
            structure = obj["structure"]
        # an fcbench checkpoint keeps the weights under "state_dict" ("model" names the architecture);
        # other trainers use "model" or "state_dict" for the weights themselves
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict) and _tensors(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise FcbenchError(f"weights file {path} holds no state dict (a dict of tensors, or one under 'model')")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, structure


def load_weights(model: nn.Module, path: str | Path, name: str | None = None) -> None:
    """Load ``path`` into ``model`` with strict keys and shapes, or raise a FcbenchError that lists misfits.
    An fcbench checkpoint of a pruned model first gives ``model`` its recorded shapes."""
    state, structure = _read_weights(path)
    if structure:
        from fcbench.training.checkpoint import apply_structure

        apply_structure(model, structure, path)
    name = name or getattr(model, "fcbench_name", type(model).__name__)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
                  if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{label} {len(keys)}: {', '.join(keys[:3])}{more}")
        opts = getattr(model, "fcbench_options", None)
        raise FcbenchError(f"weights {path} do not fit model '{name}'"
                           + (f" with options {opts}" if opts else "") + f": {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def names() -> list[str]:
    """Names of all installed models."""
    return plugins.names("model")


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(round(channels * float(width) / divisor)) * divisor)


def check_positive(name: str, **values: float) -> None:
    """Raise FcbenchError for any value <= 0 (width, growth rate, ...)."""
    for key, value in values.items():
        if value is None or value <= 0:
            raise FcbenchError(f"model '{name}': option {key} must be > 0, got {value!r}")


def check_layers(name: str, layers: Any, count: int) -> list[int]:
    """Validate a per-stage block-count list of length ``count``."""
    try:
        out = [int(n) for n in layers]
    except (TypeError, ValueError) as exc:
        raise FcbenchError(f"model '{name}': layers must be a list of {count} integers, got {layers!r}") from exc
    if len(out) != count or any(n < 0 for n in out):
        raise FcbenchError(f"model '{name}': layers must be {count} non-negative integers, got {layers!r}")
    return out


def classifier_resolve(small: tuple[int, int] = (32, 32)) -> Resolver:
    """Resolver for classifiers: ``input_size``/``num_classes`` None -> CIFAR or ImageNet defaults."""

    def resolve(opts: dict[str, Any]) -> dict[str, Any]:
        cifar = bool(opts.get("cifar_stem"))
        if opts.get("input_size") is None and cifar:
            opts["input_size"] = list(small)
        if "num_classes" in opts and opts["num_classes"] is None:
            opts["num_classes"] = 10 if cifar else 1000
        return opts

    return resolve
