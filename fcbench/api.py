"""The Python API: everything the command line does, as calls that return results.

    import fcbench

    run = fcbench.train(fcbench.TrainConfig(model="r18", epochs=2, out="runs/a"))
    conv = fcbench.convert(fcbench.ConvertConfig(checkpoint=str(run), to=["onnx"]))
    cells = fcbench.bench(fcbench.BenchConfig(artifacts=[str(conv.outcomes[0].file)], backends=["ort-cpu"]))
    quality = fcbench.evaluate(fcbench.EvalConfig(checkpoints=[str(run)]))
    with fcbench.Store("results/mine.sqlite") as store:
        for result in (run, cells, quality):
            store.add(result)

Each verb is ``verb(options, ctx=None, hooks=None) -> result`` (or ``verb(**options)``): ``options`` is
the verb's dataclass (the same fields as the command's options and a recipe step's keys), ``ctx`` a
:class:`RunContext` whose run id every row shares, ``hooks`` a :class:`Hooks` to hear rows, events, notes
and progress as they happen. Nothing is printed and nothing is stored unless the caller does it: results
have ``to_rows()`` and ``Store.add(result)`` writes them (``Store`` takes an SQLite path, or a
``postgresql://user@host:port/db`` URL for a shared store).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fcbench.hooks import Hooks
from fcbench.options import (
    BenchConfig,
    ConvertConfig,
    DistillConfig,
    EvalConfig,
    InspectConfig,
    OptimizeConfig,
    OptionError,
    ProfileConfig,
    PruneConfig,
    QuantizeConfig,
    TrainConfig,
    check_options,
    from_mapping,
)
from fcbench.results.context import RunContext


def _options(cls: type, options: Any, kwargs: dict[str, Any], verb: str) -> Any:
    if isinstance(options, dict) and "options" in {f.name for f in dataclasses.fields(cls)}:
        # a verb whose options have a field called options (convert's per-format --opt): options={...} is that
        kwargs, options = {**kwargs, "options": options}, None
    if options is not None and kwargs:
        raise TypeError(f"{verb}: pass an options object or keyword options, not both")
    if options is None:
        return from_mapping(cls, kwargs, verb)
    if not isinstance(options, cls):
        raise TypeError(f"{verb}: options must be a {cls.__name__}, got {type(options).__name__}")
    try:  # checked again: fields may have been changed since the object was made
        check_options(options)
        if hasattr(options, "validate"):
            options.validate()
    except OptionError as exc:
        raise exc.at(verb) from None
    return options


def _run(name: str, cls: type, options: Any, ctx: RunContext | None, hooks: Hooks | None,
         kwargs: dict[str, Any]) -> Any:
    from fcbench.verbs import get

    return get(name)(_options(cls, options, kwargs, name), ctx, hooks)


def create_model(name: str, **options: Any):
    """A registered architecture (``fcbench plugins --kind model``) with its knobs, e.g. ``width=0.25``."""
    from fcbench.models import create

    return create(name, **options)


def train(options: TrainConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
          **kwargs: Any):
    """Train; returns a ``TrainResult`` (path-like: the final checkpoint) with one row per epoch."""
    return _run("train", TrainConfig, options, ctx, hooks, kwargs)


def distill(options: DistillConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
            **kwargs: Any):
    """Train a student with a frozen teacher; returns a ``DistillResult`` (path-like: the student's checkpoint;
    ``.teacher``, ``.method``, and the teacher's run when it was trained first)."""
    return _run("distill", DistillConfig, options, ctx, hooks, kwargs)


def evaluate(options: EvalConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
             **kwargs: Any):
    """Quality of checkpoints/artifacts on a dataset; returns an ``EvalResult`` (``.metrics`` for one), or with
    ``video=True`` a ``fcbench.video_eval.VideoEvalResult`` (a detector on video without and with motion gating), or
    with ``pipeline=[DET, EMB]`` a ``fcbench.pipeline_eval.PipelineEvalResult`` (detect -> embed -> identify; a
    ``PipelineBenchResult`` with ``backends=["all"]``)."""
    return _run("eval", EvalConfig, options, ctx, hooks, kwargs)


def convert(options: ConvertConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
            **kwargs: Any):
    """Export a checkpoint to formats; returns a ``ConvertResult`` (one outcome per format, with parity)."""
    return _run("convert", ConvertConfig, options, ctx, hooks, kwargs)


def bench(options: BenchConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
          **kwargs: Any):
    """Time artifacts x backends; returns a ``BenchResult`` (its cells, and rows for the ones that ran)."""
    return _run("bench", BenchConfig, options, ctx, hooks, kwargs)


def inspect(options: InspectConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
            **kwargs: Any):
    """Per-node placement and precision of an artifact on a backend, as the runtime reports it."""
    return _run("inspect", InspectConfig, options, ctx, hooks, kwargs)


def profile(options: ProfileConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
            **kwargs: Any):
    """Params, MACs and FLOPs of a model."""
    return _run("profile", ProfileConfig, options, ctx, hooks, kwargs)


def prune(options: PruneConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
          **kwargs: Any):
    """Prune a checkpoint (``method`` channel or l1-unstructured, ``ratio``, ...); returns a ``PruneResult``
    (path-like: the pruned checkpoint) with params and MACs before and after and, unstructured, the sparsity."""
    return _run("prune", PruneConfig, options, ctx, hooks, kwargs)


def quantize(options: QuantizeConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
             **kwargs: Any):
    """Quantize a checkpoint or float artifact (``method`` ort-static, ...); returns a ``QuantizeResult``
    (path-like: the quantized artifact) with its size before and after and its fidelity to the float parent."""
    return _run("quantize", QuantizeConfig, options, ctx, hooks, kwargs)


def optimize(options: OptimizeConfig | None = None, ctx: RunContext | None = None, hooks: Hooks | None = None,
             **kwargs: Any):
    """Search compression candidates for ``backends`` within ``max_drop``; returns an ``OptimizeResult``
    (path-like: the chosen artifact) with every candidate measured and the Pareto frontier."""
    return _run("optimize", OptimizeConfig, options, ctx, hooks, kwargs)


def run_recipe(path: str, variables: dict[str, Any] | None = None, ctx: RunContext | None = None,
               hooks: Hooks | None = None):
    """Run a recipe file; returns a ``RecipeResult`` with every step's result."""
    from fcbench.recipes import load_recipe
    from fcbench.recipes import run_recipe as _run_recipe

    return _run_recipe(load_recipe(path, variables), hooks=hooks, ctx=ctx)
