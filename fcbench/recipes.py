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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fcbench.errors import FcbenchError, suggest
from fcbench.hooks import Hooks, or_default
from fcbench.options import from_mapping, option_names

_TOP_KEYS = ("name", "description", "vars", "defaults", "steps")
STEP_KEYS = ("store", "format")  # what every step takes besides its verb's options, as every command does


@dataclass
class RecipeStep:
    verb: str
    options: Any  # the verb's options dataclass
    store: str | None = None  # where this step's rows go (``store:``); None: the caller's default
    format: str = "table"  # how the step's result is shown

    def __iter__(self) -> Iterator[Any]:  # ``verb, options = step``
        return iter((self.verb, self.options))


@dataclass
class Recipe:
    path: Path
    name: str
    description: str
    steps: list[RecipeStep] = field(default_factory=list)


@dataclass
class StepDone:
    index: int
    total: int
    step: RecipeStep
    result: Any


@dataclass
class RecipeResult:
    """Every step's result in order, all stamped with one run id."""

    recipe: str
    run_id: str
    steps: list[StepDone] = field(default_factory=list)

    def to_rows(self) -> list:
        return [row for s in self.steps if s.result is not None and hasattr(s.result, "to_rows")
                for row in s.result.to_rows()]

    def failures(self) -> list[str]:
        out = []
        for s in self.steps:
            check = getattr(s.result, "failures", None)
            if callable(check):
                out += [f"step {s.index} {s.step.verb} {f}" for f in check()]
        return out


def recipe_verbs() -> dict[str, Any]:
    from fcbench.verbs import verbs

    return {name: v for name, v in verbs().items() if v.in_recipes}
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(value: Any, variables: dict[str, Any], where: str) -> Any:
    """``${name}`` in strings becomes the variable's text; a value that is only ``${name}`` takes the
    variable itself, keeping its type (``width: ${width}`` stays a number, ``layers: ${layers}`` a list).
    A reference to no variable, or a ``${...}`` that is not one (``${my-dir}``), is an error naming
    ``where`` (file, step and key), so nothing reaches a step with ``${...}`` left in it."""
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole and whole.group(1) in variables:
            return variables[whole.group(1)]

        def repl(m: re.Match) -> str:
            key = m.group(1)
            if key not in variables:
                raise FcbenchError(
                    f"{where}: unknown variable '${{{key}}}'{suggest(key, variables)}; define it under vars:")
            return str(variables[key])

        out = _REF.sub(repl, value)
        bad = re.search(r"\$\{[^}]*\}?", _REF.sub("", value))
        if bad:
            raise FcbenchError(f"{where}: '{bad.group(0)}' is not a variable reference; a variable's name is "
                               "letters, digits and _, as in ${out}")
        return out
    if isinstance(value, list):
        return [_substitute(v, variables, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, f"{where}.{k}") for k, v in value.items()}
    return value


def _refs(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_REF.findall(value))
    if isinstance(value, list):
        return {r for v in value for r in _refs(v)}
    if isinstance(value, dict):
        return {r for v in value.values() for r in _refs(v)}
    return set()


def _resolve_vars(raw: dict[str, Any], path: Path, overridden: set[str]) -> dict[str, Any]:
    """Variables whose values refer to other variables (``out: ${base}/x``), resolved; a reference to no
    variable or a cycle is one error naming the variable."""
    done: dict[str, Any] = {}

    def resolve(name: str, chain: list[str]) -> None:
        if name in done:
            return
        if name in chain:
            raise FcbenchError(f"{path}: vars: {' -> '.join([*chain, name])}: a variable refers to itself")
        for ref in _refs(raw[name]):
            if ref in raw:
                resolve(ref, [*chain, name])
        where = f"{path}: --set {name}" if name in overridden else f"{path}: vars: {name}"
        done[name] = _substitute(raw[name], done, where)

    for name in raw:
        resolve(name, [])
    return done


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Parse and validate a recipe; ``overrides`` replace entries of its ``vars``."""
    path = Path(path)
    if not path.is_file():
        raise FcbenchError(f"recipe {path} is a directory; pass a .yaml file in it" if path.is_dir()
                           else f"recipe {path} does not exist")
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
    for key in ("vars", "defaults"):
        if not isinstance(doc.get(key) or {}, dict):
            raise FcbenchError(f"{path}: '{key}' must be a mapping of NAME: VALUE")
    variables = {str(k): v for k, v in (doc.get("vars") or {}).items()}
    for key in variables:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise FcbenchError(f"{path}: vars: '{key}' cannot be referred to; a variable's name is letters, digits "
                               "and _")
    for key in overrides or {}:
        if key not in variables:
            raise FcbenchError(
                f"{path}: --set {key}: no such variable{suggest(key, variables)}; vars: {', '.join(variables)}")
    variables.update(overrides or {})
    variables = _resolve_vars(variables, path, set(overrides or {}))
    defaults = doc.get("defaults") or {}
    steps = doc.get("steps")
    verbs = recipe_verbs()
    if not isinstance(steps, list) or not steps:
        raise FcbenchError(f"{path}: 'steps' must be a non-empty list of verbs ({', '.join(verbs)})")
    recipe = Recipe(path=path, name=str(doc.get("name", path.stem)), description=str(doc.get("description", "")))
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict) or len(step) != 1:
            raise FcbenchError(f"{path}: step {i} must be a mapping with exactly one verb ({', '.join(verbs)})")
        name, opts = next(iter(step.items()))
        where = f"{path}: step {i} ({name})"
        if name not in verbs:
            raise FcbenchError(
                f"{path}: step {i}: unknown verb '{name}'{suggest(str(name), verbs)}; verbs: {', '.join(verbs)}")
        opts = opts or {}
        if not isinstance(opts, dict):
            raise FcbenchError(f"{where}: options must be a mapping")
        verb = verbs[name]
        names = option_names(verb.config)
        step_keys = [k for k in STEP_KEYS if k not in names and (k != "store" or verb.stores)]
        merged = {k: v for k, v in defaults.items() if k in names or k in step_keys}
        merged.update(opts)
        merged = {k: _substitute(v, variables, f"{where}: {k}") for k, v in merged.items()}
        extra = {k: merged.pop(k) for k in step_keys if k in merged}
        fmt = str(extra.get("format", "table"))
        if fmt not in verb.formats:
            raise FcbenchError(f"{where}: format must be one of {', '.join(verb.formats)}, got '{fmt}'")
        if name == "results" and "pivot" not in merged:
            merged["pivot"] = True  # a recipe's closing table: one line per evaluated artifact
        cfg = from_mapping(verb.config, merged, where)
        if extra.get("store"):  # a store that cannot take rows fails now (and in --check), not after the work
            from fcbench.results.store import check_store

            try:
                check_store(str(extra["store"]), "store:")
            except FcbenchError as exc:
                raise FcbenchError(f"{where}: {exc}") from exc
        recipe.steps.append(RecipeStep(name, cfg, store=extra.get("store"), format=fmt))
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


def run_recipe(recipe: Recipe, hooks: Hooks | None = None, ctx: Any = None) -> RecipeResult:
    """Run every step in order through the verb registry, one run id on every row. Each step's rows go to
    ``hooks.on_rows_to(step.store, rows)`` as they come (the CLI stores them there); each finished step to
    ``hooks.on_event('step', StepDone)``."""
    from fcbench.results.context import RunContext
    from fcbench.verbs import get

    hooks = or_default(hooks)
    ctx = ctx or RunContext(recipe=recipe.name)
    if not ctx.recipe:
        ctx = replace(ctx, recipe=recipe.name)
    result = RecipeResult(recipe.name, ctx.run_id)
    for i, step in enumerate(recipe.steps, 1):
        verb = get(step.verb)
        cfg = step.options
        if step.verb == "bench":
            cfg = replace(cfg, artifacts=_expand(cfg.artifacts, f"{recipe.path}: step {i} (bench)"))
        elif step.verb == "eval":
            cfg = replace(cfg, checkpoints=_expand(cfg.checkpoints, f"{recipe.path}: step {i} (eval)"))
        elif step.verb == "results":
            if cfg.run is None and not cfg.all_runs:
                cfg = replace(cfg, run=ctx.run_id)
            cfg = replace(cfg, title=cfg.title or f"{recipe.name}: run {ctx.run_id}")
        step_hooks = replace(hooks, on_rows=lambda rows, store=step.store: hooks.rows_to(store, rows))
        out = verb.runner()(cfg, replace(ctx, store=str(step.store)) if step.store else ctx, step_hooks)
        done = StepDone(i, len(recipe.steps), replace(step, options=cfg), out)
        result.steps.append(done)
        hooks.event("step", done)
    return result
