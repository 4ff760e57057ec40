"""Recipes: YAML pipelines that chain verbs with shared options.

    name: quickstart
    vars: {out: runs/quickstart}          # ${out} is substituted in every string below
    defaults: {store: results/fcbench.sqlite}   # given to every step whose verb takes the key
    steps:
      - train: {model: r18, epochs: 2, out: "${out}"}
      - eval: {checkpoint: "${out}/model.pt", data: synthetic:pairs}
      - convert: {checkpoint: "${out}/model.pt", to: "onnx,tflite"}
      - bench: {artifacts: "${out}/model.*", backends: "all", threads: 2}   # patterns expand when run
      - results: {}

The whole file is validated before any step runs: an unknown top-level key, verb or step
key is one error naming the key and the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from fcbench.bench.run import BenchConfig, normalize_precision
from fcbench.errors import FcbenchError, suggest
from fcbench.evaluate import EvalConfig
from fcbench.train.config import TrainConfig, from_mapping

_TOP_KEYS = ("name", "description", "vars", "defaults", "steps")


@dataclass
class ResultsStep:
    """Show the rows this recipe run wrote."""

    format: str = "table"
    store: str | None = None
    all_runs: bool = False


@dataclass
class ConvertStep:
    """Export a checkpoint to edge formats, as ``fcbench convert`` (each with a manifest and parity)."""

    checkpoint: str = ""
    to: str | list[str] = "all"
    out: str | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # {format: {key: value}}

    def validate(self) -> ConvertStep:
        from fcbench.convert import parse_formats

        if not self.checkpoint:
            raise FcbenchError("convert: 'checkpoint' is required")
        formats = parse_formats(self.to)
        for fmt, opts in (self.options or {}).items():
            if fmt not in formats or not isinstance(opts, dict):
                raise FcbenchError(f"convert: options are {{format: {{key: value}}}} for the formats in 'to' "
                                   f"({', '.join(formats)}); got '{fmt}'")
        return self


VERBS: dict[str, type] = {"train": TrainConfig, "eval": EvalConfig, "convert": ConvertStep, "bench": BenchConfig,
                          "results": ResultsStep}


def _as_list(value: Any) -> Any:
    """'a,b' -> ['a', 'b'] for list-valued keys written as one string (bench backends, artifacts)."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


@dataclass
class Recipe:
    path: Path
    name: str
    description: str
    steps: list[tuple[str, Any]] = field(default_factory=list)


def _substitute(value: Any, variables: dict[str, Any], where: str) -> Any:
    """``${name}`` in strings becomes the variable's text; a value that is only ``${name}`` takes the
    variable itself, keeping its type (``width: ${width}`` stays a number, ``layers: ${layers}`` a list)."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)
        if whole and whole.group(1) in variables:
            return variables[whole.group(1)]

        def repl(m: re.Match) -> str:
            key = m.group(1)
            if key not in variables:
                raise FcbenchError(
                    f"{where}: unknown variable '${{{key}}}'{suggest(key, variables)}; define it under vars:")
            return str(variables[key])

        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", repl, value)
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    return value


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Parse and validate a recipe; ``overrides`` replace entries of its ``vars``."""
    path = Path(path)
    if not path.is_file():
        raise FcbenchError(f"recipe {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise FcbenchError(f"{path}:{at} is not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(doc, dict):
        raise FcbenchError(f"{path}: a recipe is a mapping with keys {', '.join(_TOP_KEYS)}")
    for key in doc:
        if key not in _TOP_KEYS:
            raise FcbenchError(
                f"{path}: unknown key '{key}'{suggest(str(key), _TOP_KEYS)}; valid: {', '.join(_TOP_KEYS)}")
    variables = dict(doc.get("vars") or {})
    for key in overrides or {}:
        if key not in variables:
            raise FcbenchError(
                f"{path}: --set {key}: no such variable{suggest(key, variables)}; vars: {', '.join(variables)}")
    variables.update(overrides or {})
    defaults = doc.get("defaults") or {}
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        raise FcbenchError(f"{path}: 'steps' must be a non-empty list of verbs ({', '.join(VERBS)})")
    recipe = Recipe(path=path, name=str(doc.get("name", path.stem)), description=str(doc.get("description", "")))
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict) or len(step) != 1:
            raise FcbenchError(f"{path}: step {i} must be a mapping with exactly one verb ({', '.join(VERBS)})")
        verb, opts = next(iter(step.items()))
        where = f"{path}: step {i} ({verb})"
        if verb not in VERBS:
            raise FcbenchError(
                f"{path}: step {i}: unknown verb '{verb}'{suggest(str(verb), VERBS)}; verbs: {', '.join(VERBS)}")
        opts = opts or {}
        if not isinstance(opts, dict):
            raise FcbenchError(f"{where}: options must be a mapping")
        cls = VERBS[verb]
        names = {f.name for f in fields(cls) if not f.name.startswith("_")}
        merged = {k: v for k, v in defaults.items() if k in names}
        merged.update(opts)
        merged = _substitute(merged, variables, where)
        if cls is BenchConfig:
            merged.update({k: _as_list(merged[k]) for k in ("artifacts", "backends") if k in merged})
            merged["precision"] = normalize_precision(merged.get("precision"))
        cfg = from_mapping(cls, merged, where)
        if hasattr(cfg, "validate"):
            try:
                cfg.validate()
            except FcbenchError as exc:
                raise FcbenchError(f"{where}: {exc}") from exc
        recipe.steps.append((verb, cfg))
    return recipe


def _expand(patterns: list[str], where: str) -> list[str]:
    """Artifacts named in a recipe, where ``*``/``?`` patterns (``${out}/model.*``) expand when the step runs;
    the manifests and companion files of the artifacts found are left out, as on the command line."""
    import glob

    from fcbench.artifact import owned_files

    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise FcbenchError(f"{where}: '{pattern}' matches no file; did an earlier step write it?")
        files += matches
    return owned_files(files)[0]


def run_recipe(recipe: Recipe, on_step: Callable[[int, str, Any, Any], None] | None = None) -> str:
    """Run every step in order; return the run id stamped on all rows."""
    from fcbench.evaluate import evaluate
    from fcbench.results.context import RunContext
    from fcbench.train.loop import train

    ctx = RunContext(recipe=recipe.name)
    for i, (verb, cfg) in enumerate(recipe.steps, 1):
        if verb == "train":
            result: Any = train(cfg, ctx)
        elif verb == "eval":
            result = evaluate(cfg, ctx)
        elif verb == "convert":
            from fcbench.convert import convert, parse_formats

            result = convert(cfg.checkpoint, parse_formats(cfg.to), cfg.out, cfg.options)
        elif verb == "bench":
            from fcbench.bench.run import bench

            files = _expand(cfg.artifacts, f"{recipe.path}: step {i} (bench)")
            result = bench(replace(cfg, artifacts=files), ctx)
        else:
            result = None
        if on_step:
            on_step(i, verb, cfg, result if verb != "results" else ctx)
    return ctx.run_id
