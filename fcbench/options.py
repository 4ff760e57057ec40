"""Options of every verb: plain dataclasses shared by the library, the CLI and recipes.

One dataclass per verb is the whole truth about its options. Each field's metadata (set with
:func:`opt`) says how the command line spells it; the CLI builds its commands from these
fields and recipes take the same names, so ``fcbench bench --min-seconds 2`` and a recipe's
``bench: {min_seconds: 2}`` are one option. Values arrive as Python values (library), YAML
values (recipes) or strings (CLI); a field's ``parse`` turns either into the field's type.

This module imports nothing heavy: ``fcbench --help`` reads it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from fcbench.errors import FcbenchError, first_line, suggest


class OptionError(FcbenchError):
    """A bad value for one option: ``key`` (the field name, maybe followed by a sub-key) and ``problem``
    ("must be >= 1, got 0"). Each entry point says where: a recipe names its file and step, the command
    line spells the key as its flag."""

    def __init__(self, key: str, problem: str, where: str = "") -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{where}: {key} {problem}" if where else f"{key} {problem}")

    def at(self, where: str, key: str | None = None) -> OptionError:
        return OptionError(key or self.key, self.problem, where)

# --- parsers: CLI strings or recipe/library values -> the field's value ------------------------


def _strings(value: Any, what: str = "option") -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    raise OptionError(what, f"must be a string or a list, got {value!r}")


def parse_kv(value: Any, what: str = "option") -> dict[str, Any]:
    """``['width=0.25', 'layers=[1,1,1,1]']`` -> ``{'width': 0.25, 'layers': [1, 1, 1, 1]}`` (values read as
    YAML); a mapping is taken as it is."""
    if isinstance(value, dict):
        return dict(value)
    import yaml

    out: dict[str, Any] = {}
    if not isinstance(value, (str, list, tuple)) and value is not None:
        raise OptionError(what, f"must be KEY=VALUE options or a mapping, got {value!r}")
    for item in _strings(value, what):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise OptionError(what, f"'{item}' is not KEY=VALUE (e.g. width=0.25)")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise OptionError(what, f"'{item}': value is not valid YAML ({first_line(exc)})") from exc
    return out


def parse_gate(value: Any, what: str = "--gate") -> dict[str, Any]:
    """``--gate layer=11,lam=0.4`` (comma-separated and/or repeated KEY=VALUE) or a mapping -> a dict; the keys
    and values are checked by :func:`fcbench.video_eval.gate_options` (one place for CLI, recipe and library)."""
    if isinstance(value, dict):
        return dict(value)
    return parse_kv([part for item in _strings(value, what) for part in item.split(",") if part.strip()], what)


def parse_list(value: Any, what: str = "option") -> list[str]:
    """Comma-separated and/or repeated: ``'a,b'``, ``['a', 'b,c']`` -> ``['a', 'b', 'c']``."""
    return [part.strip() for item in _strings(value, what) for part in item.split(",") if part.strip()]


def parse_ints(value: Any, what: str = "option") -> list[int]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    parts = parse_list(value, what)
    try:
        return [int(p) for p in parts]
    except ValueError as exc:
        raise OptionError(what, f"must be comma-separated integers, e.g. 8,14,20, got '{','.join(parts)}'") from exc


# inputs fcbench makes tensors of: each size at most MAX_SIZE, and at most MAX_ELEMENTS numbers in all
MAX_SIZE = 4096
MAX_ELEMENTS = 1 << 28  # 1 GiB of float32


def check_sizes(sizes: list[int], what: str, example: str) -> list[int]:
    """Sizes of an input (a shape, or H and W) that fcbench can build a tensor of: each in 1..MAX_SIZE and
    MAX_ELEMENTS in all."""
    total = 1
    for s in sizes:
        if not 1 <= s <= MAX_SIZE:
            raise OptionError(what, f"must be sizes in 1..{MAX_SIZE} (e.g. {example}), got {s}")
        total *= s
    if total > MAX_ELEMENTS:
        raise OptionError(what, f"{'x'.join(map(str, sizes))} is {total:,} values, more than the {MAX_ELEMENTS:,} "
                                f"fcbench builds an input of")
    return sizes


def _int_list(value: Any, what: str, example: str) -> list[int]:
    items = value if isinstance(value, (list, tuple)) else str(value).lower().replace(",", "x").split("x")
    try:
        out = []
        for v in items:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError(v)
            out.append(int(v.strip()) if isinstance(v, str) else int(v))
        return out
    except (TypeError, ValueError) as exc:
        raise OptionError(what, f"must be sizes like {example}, got {value!r}") from exc


def parse_input_size(value: Any, what: str = "input_size") -> list[int] | None:
    """A model's input size: ``112``, ``'112x96'`` or ``[112, 96]`` -> ``[H, W]``, each in 1..MAX_SIZE."""
    if value in (None, "", []):
        return None
    sizes = _int_list(value, what, "112 or 112x96")
    if len(sizes) not in (1, 2):
        raise OptionError(what, f"must be H or HxW, e.g. 112 or 112x96, got {value!r}")
    return check_sizes([sizes[0], sizes[-1]], what, "112x96")


def input_size_text(value: Any, what: str = "input_size") -> str | None:
    """``112``, ``'112x96'`` or ``[112, 96]``, checked, as ``'112x96'`` text."""
    sizes = parse_input_size(value, what)
    return "x".join(map(str, sizes)) if sizes else None


def parse_model_options(value: Any, what: str = "model_options") -> dict[str, Any]:
    """Model options KEY=VALUE; ``input_size``, the one every model takes, is checked for a sane size."""
    out = parse_kv(value, what)
    if out.get("input_size") is not None:
        size = out["input_size"]
        checked = parse_input_size(size, f"{what} input_size")
        out["input_size"] = size if isinstance(size, int) and not isinstance(size, bool) else checked
    return out


def parse_shape(value: Any, what: str = "input_shape") -> list[int] | None:
    if value in (None, "", []):
        return None
    shape = _int_list(value, what, "1x3x112x112")
    if len(shape) != 4:
        raise OptionError(what, f"must be 4 sizes, like 1x3x112x112, got {value!r}")
    return check_sizes(shape, what, "1x3x112x112")


def parse_format_options(value: Any, what: str = "--opt") -> dict[str, dict[str, Any]]:
    """``['onnx.opset=17']`` -> ``{'onnx': {'opset': 17}}``; a mapping of mappings is taken as it is."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(v, dict):
                raise OptionError(what, f"are {{format: {{key: value}}}} (FORMAT.KEY=VALUE on the command line); "
                                        f"'{k}' is {v!r}, not a mapping")
        return {str(k): dict(v) for k, v in value.items()}
    out: dict[str, dict[str, Any]] = {}
    for key, v in parse_kv(value, what).items():
        fmt, dot, k = key.partition(".")
        if not dot or not fmt or not k:
            raise OptionError(what, f"'{key}': write FORMAT.KEY=VALUE, e.g. onnx.opset=17")
        out.setdefault(fmt, {})[k] = v
    return out


PRECISIONS = ("f32", "bf16", "f16", "int8")
ISOLATIONS = ("subprocess", "inprocess")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
AMP = ("auto", "on", "off")
HEADS = ("arcface", "cosface", "softmax")  # fcbench.models.heads.HEADS (a test keeps the two equal)
PROTOCOLS = ("auto", "verification", "classification", "identification", "detection")
PREPROCESSINGS = ("face", "imagenet", "cifar")  # fcbench.infer.PRESETS (a test keeps the two equal)
MAX_THREADS = 1024
MAX_WORKERS = 256
MAX_BATCH = 65536
MAX_SEED = 2**32 - 1  # numpy's seeds are 0 .. 2**32 - 1
_PRECISION_ALIASES = {"fp32": "f32", "fp16": "f16", "float32": "f32", "float16": "f16", "i8": "int8"}


def normalize_precision(p: Any, what: str = "--precision") -> str | None:
    return None if p in (None, "") else _PRECISION_ALIASES.get(str(p).lower(), str(p).lower())


# --- field metadata ------------------------------------------------------------------------------

def opt(default: Any = MISSING, *, help: str = "", flags: tuple[str, ...] = (),  # noqa: A002
        parse: Callable[..., Any] | None = None, argument: bool = False, cli: bool = True,
        default_factory: Any = MISSING, metavar: str | None = None,
        min: float | None = None, max: float | None = None,  # noqa: A002
        gt: float | None = None, lt: float | None = None, range: tuple[float, float] | None = None,  # noqa: A002
        choices: tuple[str, ...] | None = None, item_min: float | None = None, required: bool = True) -> Any:
    """A verb option. ``flags`` are extra spellings on the command line (the field's own name with
    dashes always works: ``min_seconds`` is ``--min-seconds``); ``argument`` makes it positional;
    ``cli=False`` keeps it out of the command line (library and recipes only); ``required=False`` lets the
    command line leave a positional out (the verb's own check then says what is missing).

    What values it takes, checked by :func:`check_options` wherever options are made (command line,
    recipe, library): the field's type (``int``, ``float``, ``bool``, ``str``, lists, ``X | None``);
    ``min``/``max`` (inclusive), ``gt``/``lt`` (exclusive) or ``range=(min, max)`` for numbers;
    ``choices`` for a string; ``item_min`` for each number of a list."""
    if range is not None:
        min, max = range  # noqa: A001
    meta = {"help": help, "flags": flags, "parse": parse, "argument": argument, "cli": cli, "metavar": metavar,
            "min": min, "max": max, "gt": gt, "lt": lt, "choices": choices, "item_min": item_min,
            "required": required}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def option_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if not f.name.startswith("_")]


def flag(cls: type, key: str) -> str:
    """How the command line spells option ``key`` (``batch_size`` -> ``--batch-size``, ``backends`` ->
    ``--backend``); a key that is not a field (``model_options input_size``) keeps its tail."""
    name, _, rest = key.partition(" ")
    by_name = {f.name: f for f in fields(cls)}
    if name not in by_name:
        return key
    md = by_name[name].metadata
    if md.get("argument"):
        spelled = name.upper()
    else:
        long = [f for f in md.get("flags", ()) if f.startswith("--")]
        spelled = long[0] if long else "--" + name.replace("_", "-")
    return f"{spelled} {rest}" if rest else spelled


# --- checking values: one function for the command line, recipes and the library ----------------

@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a plugin's annotations that do not resolve: its values are taken as they are
        return {}


def _split_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(hint))
    return hint, False


def _bounds(md: Mapping[str, Any]) -> str:
    lo = md.get("min") if md.get("min") is not None else md.get("gt")
    hi = md.get("max") if md.get("max") is not None else md.get("lt")
    if lo is not None and hi is not None:
        return (f"in {'[' if md.get('min') is not None else '('}{lo}, {hi}"
                f"{']' if md.get('max') is not None else ')'}")
    if lo is not None:
        return f">= {lo}" if md.get("min") is not None else f"> {lo}"
    if hi is not None:
        return f"<= {hi}" if md.get("max") is not None else f"< {hi}"
    return ""


def _in_bounds(v: float, md: Mapping[str, Any]) -> bool:
    return not ((md.get("min") is not None and v < md["min"]) or (md.get("max") is not None and v > md["max"])
                or (md.get("gt") is not None and v <= md["gt"]) or (md.get("lt") is not None and v >= md["lt"]))


def _number(value: Any, kind: type, key: str) -> Any:
    """``value`` as an int or a finite float; strings that spell one are read (the command line's values,
    a recipe's ``lr: 1e-3``, which YAML reads as a string); anything else is one error naming the type."""
    want = "an integer" if kind is int else "a number"
    v = value
    if isinstance(v, str):
        try:
            v = int(v.strip()) if kind is int else float(v.strip())
        except ValueError:
            raise OptionError(key, f"must be {want}, got {value!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise OptionError(key, f"must be {want}, got {value!r}")
    if kind is int:
        if isinstance(v, float):
            if not v.is_integer():
                raise OptionError(key, f"must be {want}, got {value!r}")
            v = int(v)
        return v
    v = float(v)
    if not math.isfinite(v):
        raise OptionError(key, f"must be a finite number, got {value!r}")
    return v


def _check_value(value: Any, hint: Any, md: Mapping[str, Any], key: str) -> Any:
    """One field's value checked (and read from a string where the type says how) against its type and
    the field's limits; returns the value to keep."""
    base, optional = _split_optional(hint)
    if value is None:
        if optional or base is Any:
            return None
        raise OptionError(key, "must be given (it has no 'none' value)")
    origin = typing.get_origin(base) or base
    if base is Any:
        if md.get("choices") and value not in md["choices"]:
            raise OptionError(key, f"must be one of {', '.join(map(str, md['choices']))}, got {value!r}")
        return value
    if base in (int, float):
        v = _number(value, base, key)
        if not _in_bounds(v, md):
            raise OptionError(key, f"must be {_bounds(md)}, got {v}")
        return v
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise OptionError(key, f"must be true or false, got {value!r}")
    if base is str:
        choices = md.get("choices")
        if isinstance(value, bool) and choices and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # a run id or a name YAML read as a number
        elif not isinstance(value, str):
            raise OptionError(key, f"must be a string, got {value!r}")
        if choices and value not in choices:
            raise OptionError(key, f"must be one of {', '.join(choices)}, got '{value}'{suggest(value, choices)}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise OptionError(key, f"must be a list, got {value!r}")
        (item,) = typing.get_args(base) or (Any,)
        out = []
        for i, v in enumerate(value):
            if item in (int, float):
                v = _number(v, item, f"{key}[{i}]")
                if md.get("item_min") is not None and v < md["item_min"]:
                    raise OptionError(key, f"values must be >= {md['item_min']}, got {v}")
            elif item is str and not isinstance(v, str):
                raise OptionError(f"{key}[{i}]", f"must be a string, got {v!r}")
            out.append(v)
        return out
    if origin is dict:
        if not isinstance(value, dict):
            raise OptionError(key, f"must be a mapping of KEY: VALUE, got {value!r}")
        return value
    return value


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def check_options(cfg: Any) -> Any:
    """Every field of a verb's options read through its parser, checked against its type and limits
    (see :func:`opt`), in place. Raises :class:`OptionError` naming the field; the caller says where.
    Options dataclasses call it when they are made, so the command line, recipes and the library check
    alike; it imports nothing heavy."""
    hints = _hints(type(cfg))
    for f in fields(cfg):
        if f.name.startswith("_"):
            continue
        value = getattr(cfg, f.name)
        parse = f.metadata.get("parse")
        if parse is not None and value is not None:
            value = parse(value, f.name)
        setattr(cfg, f.name, _check_value(value, hints.get(f.name, Any), f.metadata, f.name))
    return cfg


class Checked:
    """Base of the built-in options dataclasses: :func:`check_options` runs when one is made (and on
    ``dataclasses.replace``). A subclass's ``__post_init__`` calls ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        try:
            check_options(self)
        except OptionError as exc:
            raise exc.at(type(self).__name__) from None


def from_mapping(cls: type, mapping: dict[str, Any], where: str) -> Any:
    """Build a verb's options from a mapping (a recipe step, or parsed command-line values): unknown
    keys are one clear error naming the valid ones; each value goes through its field's parser and
    :func:`check_options` (type and limits), then the options' own ``validate()``. Every error is one
    line starting with ``where`` and naming the key."""
    names = option_names(cls)
    for key in mapping:
        if key not in names:
            raise FcbenchError(f"{where}: unknown key '{key}'{suggest(str(key), names)}; "
                               f"valid keys: {', '.join(names)}")
    try:
        cfg = cls(**mapping)
        if not isinstance(cfg, Checked):  # a plugin's plain dataclass: same checks
            check_options(cfg)
    except OptionError as exc:
        raise exc.at(where) from None
    except FcbenchError as exc:
        raise FcbenchError(f"{where}: {exc}", exit_code=exc.exit_code) from None
    except TypeError as exc:
        raise FcbenchError(f"{where}: {exc}") from exc
    if hasattr(cfg, "validate"):
        try:
            cfg.validate()
        except OptionError as exc:
            raise exc.at(where) from None
        except FcbenchError as exc:
            if str(exc).startswith(where):
                raise
            raise FcbenchError(f"{where}: {exc}", exit_code=exc.exit_code) from None
    return cfg


# --- exporter options (``--opt FORMAT.KEY=VALUE``): declared as plain data by each exporter ----------

@dataclass(frozen=True)
class OptionSpec:
    """One option of an exporter: its type (``int``, ``float``, ``bool``, ``str`` or ``Any``), default and
    limits, the same ones :func:`opt` takes. An exporter's ``options`` maps names to these (a plain tuple
    of names still works: then only the names are checked)."""

    type: Any
    default: Any = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def meta(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "gt": self.gt, "lt": self.lt, "choices": self.choices}


def check_format_options(fmt: str, declared: Any, values: dict[str, Any], key: str = "options") -> dict[str, Any]:
    """``values`` for format ``fmt`` checked against what its exporter ``declared`` (names, or names ->
    :class:`OptionSpec`): an unknown name says the closest one; a value of the wrong type or out of range
    names the option. Returns the values, with the declared defaults filled in. Raises
    :class:`OptionError` (key ``options FORMAT.NAME``)."""
    names = list(declared)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in declared:
            raise OptionError(f"{key} {fmt}.{name}", f"is unknown{suggest(str(name), names)}; "
                                                     f"{fmt} options: {', '.join(names) or 'none'}")
        spec = declared[name] if isinstance(declared, Mapping) else None
        out[name] = (_check_value(value, spec.type, spec.meta(), f"{key} {fmt}.{name}")
                     if isinstance(spec, OptionSpec) else value)
    if isinstance(declared, Mapping):
        for name, spec in declared.items():
            if name not in out and isinstance(spec, OptionSpec) and spec.default is not None:
                out[name] = spec.default
    return out


def exporter_options(fmt: str, declared: Any, values: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`check_format_options` for an exporter's ``export``: errors read ``FORMAT export: ...``."""
    try:
        return check_format_options(fmt, declared, dict(values or {}))
    except OptionError as exc:
        raise exc.at(f"{fmt} export", f"option '{exc.key.partition('.')[2]}'") from None


def as_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if not f.name.startswith("_")}


# --- the built-in verbs' options ----------------------------------------------------------------

@dataclass
class TrainConfig(Checked):
    model: str = opt("r18", help="Model name (fcbench plugins --kind model)")
    model_options: dict[str, Any] = opt(default_factory=dict, flags=("-o", "--model-opt"), parse=parse_model_options,
                                        help="Model option KEY=VALUE, e.g. width=0.25")
    weights: str | None = opt(None, help="Start from these weights (fcbench checkpoint or plain state_dict)")
    head: str = opt("arcface", choices=HEADS, help="arcface, cosface or softmax (ignored for classification models)")
    head_options: dict[str, Any] = opt(default_factory=dict, flags=("--head-opt",), parse=parse_kv,
                                       help="Head option KEY=VALUE, e.g. s=64 m=0.5")
    data: Any = opt("synthetic:faces", help="Dataset: synthetic[:kind], NAME:PATH or a path")
    data_options: dict[str, Any] = opt(default_factory=dict, flags=("--data-opt",), parse=parse_kv,
                                       help="Dataset option KEY=VALUE")
    epochs: int = opt(10, min=1)
    batch_size: int = opt(64, range=(1, MAX_BATCH))
    lr: float = opt(0.1, gt=0)
    head_lr: float | None = opt(None, gt=0, help="Head optimizer lr (default: --lr); the head has its own optimizer")
    optimizer: str = opt("sgd", choices=OPTIMIZERS, help="sgd or adamw")
    momentum: float = opt(0.9, min=0, lt=1, help="SGD momentum, in [0, 1)")
    weight_decay: float = opt(5e-4, range=(0, 1))
    schedule: str = opt("step", choices=SCHEDULES, help="step, cosine or constant")
    milestones: list[int] = opt(default_factory=list, parse=parse_ints, item_min=1,
                                help="Epochs of x gamma steps, e.g. 8,14,20,25")
    gamma: float = opt(0.1, gt=0, max=1, help="Learning-rate factor at each milestone, in (0, 1]")
    warmup_epochs: float = opt(0.0, min=0)
    max_steps: int | None = opt(None, min=1, help="Stop after this many optimizer steps in total")
    workers: int = opt(0, range=(0, MAX_WORKERS), help="DataLoader worker processes")
    seed: int = opt(0, range=(0, MAX_SEED))
    out: str = opt("runs/train", help="Output folder for the run's checkpoints; one run per folder: a folder "
                                      "that holds another run is refused (see --resume, --overwrite)")
    resume: str | None = opt(None, help="'auto' (continue the run in --out from its latest epoch; start it if there "
                                        "is none) or an epoch checkpoint; the options must be the run's")
    overwrite: bool = opt(False, help="Delete the run already in --out (init.pt, epoch-*.pt, model.pt and their "
                                      "manifests) and start a new one")
    amp: str = opt("auto", choices=AMP, help="auto (on with CUDA), on, off")
    device: str = opt("auto", help="auto, cpu, cuda, cuda:N")
    threads: int | None = opt(None, range=(1, MAX_THREADS))

    def validate(self) -> TrainConfig:
        check_options(self)
        if self.warmup_epochs > self.epochs:
            raise OptionError("warmup_epochs", f"must be <= epochs ({self.epochs}), got {self.warmup_epochs}")
        return self


@dataclass
class DistillConfig(TrainConfig):
    """``train``'s options (for the student) plus the teacher and the distillation method(s)."""

    model: str = opt("r18", cli=False, help="Set from student")
    weights: str | None = opt(None, cli=False, help="Set from student when it is a checkpoint")
    out: str = opt("runs/distill", help="Output folder for the student's run (one run per folder, as for train); "
                                        "a teacher fcbench trains goes to OUT/teacher")
    teacher: str = opt("", help="fcbench checkpoint, insightface backbone.pth (with --teacher-model) or a model name: "
                                "the newest trained checkpoint of it on the same data in the store, else trained first")
    teacher_model: str | None = opt(None, help="Architecture of a plain state_dict teacher (e.g. r100)")
    teacher_options: dict[str, Any] = opt(default_factory=dict, flags=("--teacher-opt",), parse=parse_model_options,
                                          help="Teacher model option KEY=VALUE (with a model name or --teacher-model)")
    student: str = opt("r18", help="Student: a model name (options with -o) or a checkpoint to start from")
    method: str = opt("embedding-mse", help="Distillation method(s), '+'-joined: kd, embedding-mse, adaptive-margin, "
                                            "triplet-l2, triplet-cos, margin, angular, ekd (fcbench plugins --kind "
                                            "technique -v)")
    method_options: dict[str, Any] = opt(default_factory=dict, flags=("--method-opt",), parse=parse_kv,
                                         help="Method option KEY=VALUE, e.g. weight=100; METHOD.KEY=VALUE in a "
                                              "combination, e.g. embedding-mse.weight=50")
    no_copy_centres: bool = opt(False, help="adaptive-margin: do not copy the teacher's class centres")
    fixed_margin: bool = opt(False, help="adaptive-margin: the head's own margin instead of the per-sample one")
    train_centres: bool = opt(False, help="adaptive-margin: train the copied centres instead of freezing them")
    teacher_epochs: int | None = opt(None, min=1, help="Epochs of a teacher fcbench trains (default: --epochs)")
    teacher_lr: float | None = opt(None, gt=0, help="Learning rate of a teacher fcbench trains (default: --lr)")

    def validate(self) -> DistillConfig:
        super().validate()
        if not self.teacher:
            raise OptionError("teacher", "is required: a checkpoint, a plain state_dict with --teacher-model, "
                                         "or a model name such as r34")
        if self.model != "r18" or self.weights:
            raise OptionError("model", "distill takes the student as student (a model name or a checkpoint), "
                                       "not model/weights")
        from fcbench.distillation import parse_methods

        parse_methods(self)  # method names, their options and flags: checked when the options are made
        return self

    def train_config(self, **changes: Any) -> TrainConfig:
        """The ``train`` options of this run (the student's, or with ``changes`` a teacher's)."""
        values = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        return TrainConfig(**{**values, **changes})


@dataclass
class PluginsConfig(Checked):
    kind: str | None = opt(None, help="model, dataset, format, technique, backend, device or verb")
    verbose: bool = opt(False, flags=("-v",), help="Also list what each plugin takes: a model's task, input size "
                                                  "and options with defaults; a technique's or dataset's options")


@dataclass
class DevicesConfig(Checked):
    words: list[str] = opt(default_factory=list, argument=True, parse=parse_list,
                           help="list, or check NAME[,NAME...|all]")


@dataclass
class ProfileConfig(Checked):
    model: str = opt("", argument=True, help="Model name, e.g. r18, mbf, resnet18")
    model_options: dict[str, Any] = opt(default_factory=dict, flags=("-o", "--model-opt"), parse=parse_model_options,
                                        help="Model option KEY=VALUE (repeatable)")
    input_size: str | None = opt(None, parse=input_size_text,
                                 help=f"H or HxW (each 1..{MAX_SIZE}); default: the model's own")

    def size(self) -> tuple[int, int] | None:
        sizes = parse_input_size(self.input_size, "input_size")
        return (sizes[0], sizes[1]) if sizes else None


@dataclass
class EvalConfig(Checked):
    """``checkpoints`` x ``backends`` is the matrix ``fcbench eval`` runs; ``checkpoint``/``backend`` name
    one cell (what :func:`fcbench.evaluation.evaluate` runs) and fill the lists when those are empty."""

    checkpoints: list[str] = opt(default_factory=list, argument=True, parse=parse_list, required=False,
                                 help="fcbench checkpoint (.pt), a plain state_dict with --model, or converted "
                                      "artifacts (.onnx .tflite .xml .ptl .pte); none with --pipeline")
    model: str | None = opt(None, help="Architecture of a plain state_dict")  # e.g. insightface backbone.pth
    model_options: dict[str, Any] = opt(default_factory=dict, flags=("-o", "--model-opt"), parse=parse_model_options,
                                        help="Model option KEY=VALUE (with --model)")
    data: Any = opt("synthetic:pairs", help="Dataset: synthetic[:kind], NAME:PATH or a path")
    data_options: dict[str, Any] = opt(default_factory=dict, flags=("--data-opt",), parse=parse_kv,
                                       help="Dataset option KEY=VALUE")
    protocol: str = opt("auto", choices=PROTOCOLS, help="auto, verification, classification, identification, detection")
    batch_size: int = opt(64, range=(1, MAX_BATCH))
    nfolds: int = opt(10, range=(1, 1000), help="Folds of the verification protocol (1: train and test on all)")
    workers: int = opt(0, range=(0, MAX_WORKERS))
    threads: int | None = opt(None, range=(1, MAX_THREADS))
    backends: list[str] = opt(default_factory=list, flags=("--backend",), parse=parse_list,
                              help="Runtime(s) for artifacts, comma-separated (profiles or plugin:variant); "
                                   "default: each format's own (onnxruntime:cpu, tflite:xnnpack, ...)")
    infer_manifest: bool = opt(False, help="Artifact without a manifest: infer one")
    max_drop: float | None = opt(None, range=(0, 100),
                                 help="Fail (exit 1) when the headline metric (accuracy, top-1, rank-1) is "
                                      "more than this many percentage points below the float parent's")
    roc: str | None = opt(None, help="Verification: write the whole ROC (far,tar,threshold) to this CSV file")
    flip: bool = opt(False, help="Flip test, as insightface and the papers report LFW/CFP/AgeDB: each image's "
                                 "embedding plus its mirror's, L2-normalised (verification, identification)")
    label: str = opt("", help="A short name for the data in tables (e.g. LFW-style), kept in the rows' extra.label: "
                              "results --pivot then shows one line per artifact, a column per label and metric")
    device: str | None = opt(None, help="Run the artifact on this device of the inventory (fcbench devices list): "
                                        "the inputs go there, the outputs come back and are scored here")
    video: bool = opt(False, help="Detector on video (synthetic:video, video:FILE, cdnet:DIR): mAP and ms per frame "
                                  "without and with motion gating (--gate), frames skipped, time saved. A checkpoint "
                                  "runs in PyTorch; the front of a pair from convert --split-at runs in --backend")
    gate: dict[str, Any] = opt(default_factory=dict, parse=parse_gate, metavar="KEY=VALUE,...",
                               help="With --video, the motion gate: layer (m, default 11), lam (0.4), alpha (0.9), "
                                    "alpha_moving (1.0), e.g. --gate layer=11,lam=0.4,alpha=0.9")
    pipeline: list[str] = opt(default_factory=list, parse=parse_list, metavar="DET,EMB",
                              help="Detect -> embed -> identify: a detector (checkpoint, or the front of a "
                                   "convert --split-at pair) and a face embedder (checkpoint or artifact); with "
                                   "--gallery and --probe. --backend DET_BACKEND,EMB_BACKEND: one runtime per stage")
    gallery: str | None = opt(None, metavar="DIR",
                              help="With --pipeline: one folder per identity holding its photo(s); a "
                                   "distractors/ folder holds photos of people not enrolled")
    probe: str | None = opt(None, metavar="VIDEO|DIR",
                            help="With --pipeline: the video (synthetic:video, video:FILE, cdnet:DIR, with "
                                 "--data-opt) or a folder of frames to identify the faces of")
    min_score: float = opt(0.5, range=(0, 1), help="With --pipeline: the detections scoring at least this are "
                                                     "faces to identify")
    checkpoint: str = opt("", cli=False)
    backend: str | None = opt(None, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint and not self.checkpoints:
            self.checkpoints = [self.checkpoint]
        if self.backend and not self.backends:
            self.backends = [self.backend]

    def validate(self) -> EvalConfig:
        from pathlib import Path

        check_options(self)
        if self.pipeline or self.gallery or self.probe:
            if not self.pipeline:
                raise FcbenchError("--gallery and --probe belong to eval --pipeline DET,EMB; add --pipeline")
            from fcbench.pipeline_eval import check_pipeline_config

            check_pipeline_config(self)
            return self
        if not self.checkpoints and not self.checkpoint:
            raise FcbenchError("eval: give a checkpoint or artifact to evaluate")
        if self.roc is not None:
            if len(self.checkpoints) != 1 or len(self.backends) > 1:
                raise FcbenchError("--roc writes one curve: give one artifact and one backend")
            if self.protocol not in ("auto", "verification"):
                raise FcbenchError(f"--roc needs the verification protocol (pairs); --protocol is {self.protocol}")
            if not Path(self.roc).parent.exists():
                raise FcbenchError(f"--roc: folder {Path(self.roc).parent} does not exist")
        if self.gate and not self.video:
            raise FcbenchError("--gate sets the motion gate of eval --video; add --video or drop --gate")
        if self.video:
            from fcbench.video_eval import check_video_config, gate_options

            check_video_config(self)
            gate_options(self.gate)
        if self.device:
            from fcbench.devices.inventory import load_device_profile

            load_device_profile(self.device)  # an unknown name lists the known ones
            if any(Path(c).suffix in (".pt", ".pth") for c in self.checkpoints):
                raise FcbenchError("eval --device runs converted artifacts (.onnx .tflite .xml .ptl .pte) on the "
                                   "device; a checkpoint runs here: convert it first, or leave out --device")
        return self


@dataclass
class ConvertConfig(Checked):
    checkpoint: str = opt("", argument=True, help="fcbench checkpoint (.pt with its manifest), or a Keras model "
                                                   "(.keras, .h5, SavedModel folder) for --to tflite")
    to: list[str] = opt(default_factory=lambda: ["all"], parse=parse_list,
                        help="Formats, comma-separated (onnx,tflite,openvino,ptl,pte and any format plugin: "
                             "fcbench plugins --kind format), or all")
    out: str | None = opt(None, help="Output folder (default: beside the checkpoint)")
    options: dict[str, dict[str, Any]] = opt(default_factory=dict, flags=("--opt",), parse=parse_format_options,
                                             help="Exporter option FORMAT.KEY=VALUE, e.g. onnx.opset=17, "
                                                  "tflite.nhwc=true; Keras: tflite.optimize (default none: "
                                                  "float; quantize with fcbench quantize X.tflite --method "
                                                  "tflite-dynamic)")
    preprocessing: str | None = opt(None, choices=PREPROCESSINGS,
                                    help="Keras models: face, imagenet or cifar (default: by input size)")
    check: bool = opt(False, help="Write nothing: list, per format, every op it will not take, with where it "
                                  "comes from in the model")
    split_at: int | None = opt(None, range=(0, 1000), metavar="M",
                               help="A detector for motion gating: two artifacts per format, MODEL.front.FMT (image "
                                    "-> layer M's feature map) and MODEL.back.FMT (feature map -> raw output), for "
                                    "eval --video --backend")

    def validate(self) -> ConvertConfig:
        from fcbench.conversion import parse_formats

        if not self.checkpoint:
            raise FcbenchError("convert: 'checkpoint' is required")
        check_options(self)
        formats = parse_formats(self.to)
        for fmt, opts in self.options.items():
            if fmt not in formats:
                raise OptionError(f"options {fmt}", f"names no format in 'to' ({', '.join(formats)})"
                                                    f"{suggest(fmt, formats)}; options are FORMAT.KEY=VALUE for the "
                                                    "formats in 'to'")
            checked = check_format_options(fmt, self.declared_options(fmt), opts)
            self.options[fmt] = {k: checked[k] for k in opts}  # read as typed (a YAML 'true' string is True)
        return self

    def declared_options(self, fmt: str) -> Any:
        """What format ``fmt``'s exporter declares it takes (a Keras model's tflite conversion its own);
        imports the exporter's module, which imports no torch."""
        from fcbench.conversion import exporter_class, is_keras_source

        if fmt == "tflite" and is_keras_source(self.checkpoint):
            from fcbench.conversion.tflite import KERAS_OPTIONS

            return KERAS_OPTIONS
        return exporter_class(fmt).options


@dataclass
class BenchConfig(Checked):
    artifacts: list[str] = opt(default_factory=list, argument=True, parse=parse_list,
                               help="Artifacts (files with a manifest), e.g. out/model.onnx")
    backends: list[str] = opt(default_factory=lambda: ["all"], flags=("--backend",), parse=parse_list,
                              help="Comma-separated profiles, plugin:variant, or all")
    threads: int | None = opt(None, range=(1, MAX_THREADS), help="Threads per runtime (default: all cores)")
    warmup: int = opt(10, min=0, help="Untimed queries before timing")
    runs: int = opt(50, min=1, help="Minimum timed queries")
    min_seconds: float = opt(1.0, min=0, help="Minimum timed duration")
    max_seconds: float | None = opt(None, gt=0, help="Stop once runs are met and this passed")
    batch: int = opt(1, range=(1, MAX_SIZE))
    infer_manifest: bool = opt(False, help="Artifacts without a manifest: infer one from the file, print what was "
                                           "assumed")
    preprocessing: str | None = opt(None, choices=PREPROCESSINGS, help="With --infer-manifest: face, imagenet or cifar")
    input_shape: list[int] | None = opt(None, parse=parse_shape,
                                        help="With --infer-manifest: e.g. 1x3x112x112 (for .ptl/.pte)")
    require_placement: float | None = opt(None, range=(0, 1),
                                          help="Fail a cell whose requested device/delegate ran less than "
                                               "this fraction of the nodes (0..1), naming the first that fell back")
    precision: str | None = opt(None, parse=normalize_precision, choices=PRECISIONS,
                                help="Ask each runtime for f32, bf16, f16 or int8; one that cannot honour it is "
                                     "skipped, saying what it can")
    pipeline: bool = opt(False, help="Also time what an app sees per image: read, decode, preprocess, infer, "
                                     "postprocess (needs --images)")
    images: str | None = opt(None, help="Folder of JPEG/PNG images for --pipeline")
    isolation: str = opt("subprocess", choices=ISOLATIONS,
                         help="subprocess: each cell in a fresh bench worker process (python -m "
                              "fcbench.worker) on the local device; inprocess: in this process. "
                              "--pipeline always runs in-process")
    in_process: bool = opt(False, help="Same as --isolation inprocess")
    worker_logs: str | None = opt(None, help="Where a failed worker's stdout, stderr and output are kept "
                                             "(default: results/worker-logs)")
    worker_timeout: float | None = opt(None, gt=0, help="Fail a cell whose bench worker runs longer than this many "
                                                  "seconds (load, warm-up and timing together); default: no limit")
    device: list[str] = opt(default_factory=list, parse=parse_list,
                            help="Bench on these devices of the inventory (./devices/NAME.toml; fcbench devices "
                                 "list), comma-separated, or all: devices at once, cells of one device in turn")
    affinity: str | None = opt(None, help="With --device: CPU mask (hex, e.g. f0), auto (the big cores) or none; "
                                          "default: the device profile's")
    _images: Any = field(default=None, repr=False)  # --images, read once by bench()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.in_process:
            self.isolation = "inprocess"

    def validate(self) -> BenchConfig:
        check_options(self)
        if self.input_shape is not None:
            check_sizes([self.batch, *self.input_shape[1:]], "batch", "--batch 1 with --input-shape 1x3x112x112")
        for ok, msg in [(bool(self.artifacts), "give at least one artifact"),
                        (not self.pipeline or bool(self.images), "--pipeline needs --images DIR (JPEG/PNG files)"),
                        (self.pipeline or not self.images, "--images is for --pipeline"),
                        (not (self.device and self.pipeline), "--pipeline times this machine's image reading: "
                                                              "leave out --device"),
                        (not (self.device and self.isolation == "inprocess"), "--device runs cells on the "
                                                                              "device: leave out --in-process"),
                        (not self.affinity or bool(self.device), "--affinity is for --device")]:
            if not ok:
                raise FcbenchError(f"bench: {msg}")
        if self.affinity and self.affinity not in ("auto", "none"):
            try:
                int(self.affinity.lower().removeprefix("0x"), 16)
            except ValueError:
                raise OptionError("affinity", f"must be auto, none or a hex CPU mask (e.g. f0), got "
                                              f"'{self.affinity}'") from None
        if self.device:
            from fcbench.devices.inventory import expand_devices

            expand_devices(self.device)  # unknown names, listing the known ones
        return self


@dataclass
class CompressConfig(Checked):
    checkpoint: str = opt("", argument=True, help="fcbench checkpoint (.pt with its manifest)")
    technique: str = opt("", help="A technique plugin (fcbench plugins --kind technique)")
    options: dict[str, Any] = opt(default_factory=dict, flags=("--opt",), parse=parse_kv,
                                  help="Technique option KEY=VALUE (repeatable)")
    out: str | None = opt(None, help="Output checkpoint (default: <stem>-<technique>.pt beside the input)")
    threads: int | None = opt(None, range=(1, MAX_THREADS))
    seed: int = opt(0, range=(0, MAX_SEED))

    def validate(self) -> CompressConfig:
        check_options(self)
        if not self.checkpoint:
            raise FcbenchError("compress: give the checkpoint to compress")
        if not self.technique:
            raise FcbenchError("compress: --technique is required (fcbench plugins --kind technique lists them)")
        from fcbench.techniques import get_technique, parse_options

        parse_options(get_technique(self.technique), self.options)  # unknown or mistyped options, before any work
        return self


PRUNE_METHODS = ("l1-unstructured", "channel")
IMPORTANCES = ("l1", "l2", "bn-scale", "taylor")  # fcbench.pruning.ChannelPrune.Options.importance
SCOPES = ("global", "layer")


@dataclass
class PruneConfig(Checked):
    checkpoint: str = opt("", argument=True, help="fcbench checkpoint (.pt with its manifest)")
    method: str = opt("channel", help="channel (structured: channels removed), l1-unstructured (weights zeroed, "
                                      "shapes kept), or another technique plugin whose verb is prune")
    ratio: float = opt(0.5, gt=0, lt=1, help="Fraction to prune: of the channels (channel) or of the weights "
                                             "(l1-unstructured)")
    importance: str | None = opt(None, choices=IMPORTANCES, help="channel: l1, l2 (default), bn-scale or taylor "
                                                                 "(gradients of the checkpoint's training loss on "
                                                                 "--data)")
    round_to: int | None = opt(None, min=1, help="channel: channel counts a multiple of N (SIMD widths)")
    scope: str | None = opt(None, choices=SCOPES, help="global or layer (default: global for l1-unstructured, "
                                                        "layer for channel)")
    data: str | None = opt(None, help="Labelled images (as train's --data, the set the checkpoint was trained on) "
                                      "for --importance taylor and --finetune-epochs")
    data_options: dict[str, Any] = opt(default_factory=dict, flags=("--data-opt",), parse=parse_kv,
                                       help="Dataset option KEY=VALUE")
    batches: int | None = opt(None, min=1, help="taylor: batches of --data whose loss gradients rank the channels "
                                                "(default 4)")
    iterative: int | None = opt(None, range=(1, 100), help="channel: prune in K rounds, each removing its share "
                                                            "(the final widths are one-shot's)")
    finetune_epochs: int | None = opt(None, range=(0, 10000),
                                      help="channel: epochs of fine-tuning on --data (the train loop) after each "
                                           "round")
    lr: float | None = opt(None, gt=0, help="Fine-tuning learning rate (default 0.01; used with --finetune-epochs)")
    finetune_distill: str | None = opt(None, help="channel: fine-tune as a distillation student of the unpruned "
                                                  "input (a distill method, e.g. embedding-mse), beside the "
                                                  "training loss")
    finetune_distill_options: dict[str, Any] = opt(default_factory=dict, flags=("--finetune-distill-opt",),
                                                   parse=parse_kv, help="--finetune-distill's method option "
                                                                        "KEY=VALUE, e.g. weight=1000")
    batch_size: int = opt(32, range=(1, MAX_BATCH), help="Batch size of fine-tuning")
    bench: str | None = opt(None, help="After pruning, convert the input and the result to this backend's format "
                                       "(a profile or plugin, e.g. ort-cpu, onnxruntime, openvino) and time both in "
                                       "turn: p50 latency before and after, the ratio with its 95 % interval")
    out: str | None = opt(None, help="Output checkpoint (default: <stem>-pruned.pt beside the input)")
    threads: int | None = opt(None, range=(1, MAX_THREADS))
    seed: int = opt(0, range=(0, MAX_SEED))

    def technique_options(self) -> dict[str, Any]:
        """The technique's options: the ratio and whichever of the others were given."""
        given = {"ratio": self.ratio, "importance": self.importance, "round_to": self.round_to, "scope": self.scope,
                 "batches": self.batches, "iterative": self.iterative, "finetune_epochs": self.finetune_epochs}
        if self.finetune_epochs:
            given["lr"] = self.lr_value
            given["finetune_distill"] = self.finetune_distill
            if self.finetune_distill and self.finetune_distill_options:
                given["finetune_distill_options"] = dict(self.finetune_distill_options)
        return {k: v for k, v in given.items() if v is not None}

    @property
    def lr_value(self) -> float:
        return 0.01 if self.lr is None else self.lr

    def validate(self) -> PruneConfig:
        check_options(self)
        if not self.checkpoint:
            raise FcbenchError("prune: give the checkpoint to prune, e.g. fcbench prune runs/demo/model.pt")
        from fcbench.techniques import names

        methods = sorted({*PRUNE_METHODS, *names("prune")}, key=lambda n: (n not in PRUNE_METHODS, n))
        if self.method not in methods:
            raise OptionError("method", f"must be one of {', '.join(methods)}, got '{self.method}'"
                                        f"{suggest(self.method, methods)}")
        if self.method == "l1-unstructured":
            for key in ("importance", "round_to", "batches", "iterative", "finetune_epochs"):
                if getattr(self, key) is not None:
                    raise OptionError(key, "is for --method channel; l1-unstructured takes --ratio and --scope")
        taylor = self.importance == "taylor"
        if taylor and not self.data:
            raise OptionError("importance", "taylor ranks channels by the gradients of the checkpoint's training "
                                            "loss and needs --data (the labelled images it was trained on, e.g. "
                                            "--data synthetic:faces); or use --importance l2, l1 or bn-scale")
        if self.finetune_epochs and not self.data:
            raise OptionError("finetune_epochs", "needs --data (the labelled images to fine-tune on, e.g. "
                                                 "--data synthetic:faces)")
        _check_finetune_distill(self.finetune_distill, self.finetune_distill_options, self.finetune_epochs)
        if self.batches is not None and not taylor:
            raise OptionError("batches", "is for --importance taylor")
        # --data, --lr and --batch-size without taylor or fine-tuning are left unused (a recipe's defaults give
        # them to every step that takes them)
        return self


def _check_finetune_distill(method: str | None, options: dict[str, Any], epochs: int | None) -> None:
    """prune's and optimize's ``--finetune-distill`` (and its ``--finetune-distill-opt``), checked before any
    work by distill's own parser: method names and their options."""
    if options and not method:
        raise OptionError("finetune_distill_options", "are --finetune-distill's: name the method too")
    if method is None:
        return
    if not epochs:
        raise OptionError("finetune_distill", "distils during fine-tuning: give --finetune-epochs too")
    from fcbench.distillation import parse_methods

    try:
        parse_methods(DistillConfig(teacher="-", method=str(method), method_options=dict(options)))
    except FcbenchError as exc:
        raise OptionError("finetune_distill", f"is not valid: {str(exc).removeprefix('distill: ')}") from None


@dataclass
class QuantizeConfig(Checked):
    input: str = opt("", argument=True, help="fcbench checkpoint (.pt) or a float artifact made by convert "
                                             "(.onnx, .xml, .tflite), each with its manifest")
    method: str = opt("", help="ort-dynamic, ort-static, ... (fcbench plugins --kind technique lists every "
                               "method whose verb is quantize)")
    calib_data: str | None = opt(None, help="Calibration images (a dataset spec, as eval's --data); the methods "
                                            "that calibrate need it, the others use it for the fidelity check")
    calib_options: dict[str, Any] = opt(default_factory=dict, flags=("--calib-opt",), parse=parse_kv,
                                        help="Calibration dataset option KEY=VALUE (repeatable)")
    calib_size: int = opt(128, min=1, help="Calibration images to use at most (evenly spaced over the set)")
    per_channel: bool | None = opt(None, help="Per-channel weight scales (default: the method's)")
    keep_float: list[str] = opt(default_factory=list, parse=parse_list,
                                help="Layers (node names) to leave in float, comma-separated")
    keep_sensitive: int = opt(0, min=0, help="Find the K layers whose quantization hurts the outputs most "
                                             "and leave them in float")
    options: dict[str, Any] = opt(default_factory=dict, flags=("--opt",), parse=parse_kv,
                                  help="Method option KEY=VALUE (repeatable); fcbench plugins --kind technique "
                                       "--verbose lists them")
    max_drop: float | None = opt(None, min=0, help="Accuracy control (methods that have it, e.g. openvino-ptq): "
                                                   "at most this many points below the float parent on --eval-data")
    eval_data: str | None = opt(None, help="Validation data for --max-drop (a dataset spec, as eval's --data)")
    eval_options: dict[str, Any] = opt(default_factory=dict, flags=("--eval-opt",), parse=parse_kv,
                                       help="Validation dataset option KEY=VALUE (repeatable)")
    backend: str | None = opt(None, help="Backend for the fidelity check (default: the method's runtime)")
    bench: str | None = opt(None, metavar="BACKEND", help="Time the float model and the quantized one side by side "
                                                          "on this backend (a profile or plugin:variant); when "
                                                          "the quantized one is not faster, say why")
    bench_seconds: float = opt(2.0, gt=0, help="With --bench: timed seconds per model")
    out: str | None = opt(None, help="Output file (default: <stem>-<method><suffix> beside the input)")
    threads: int | None = opt(None, range=(1, MAX_THREADS))
    seed: int = opt(0, range=(0, MAX_SEED))

    def validate(self) -> QuantizeConfig:
        check_options(self)
        if not self.input:
            raise FcbenchError("quantize: give the model to quantize, e.g. fcbench quantize runs/demo/model.pt "
                               "--method ort-static --calib-data synthetic:faces")
        from fcbench.quantization import method_names

        methods = method_names()
        if not self.method:
            raise OptionError("method", f"is required: one of {', '.join(methods)}")
        if self.method not in methods:
            raise OptionError("method", f"must be one of {', '.join(methods)}, got '{self.method}'"
                                        f"{suggest(self.method, methods)}")
        if self.keep_float and self.keep_sensitive:
            raise OptionError("keep_sensitive", "and --keep-float both choose the float layers: give one")
        from fcbench.quantization import get_method
        from fcbench.techniques import parse_options

        method = get_method(self.method)
        parse_options(method, self.options)  # unknown or mistyped options, before any work
        if self.max_drop is not None and not getattr(method, "accuracy_control", False):
            keepers = [n for n in methods if getattr(get_method(n), "accuracy_control", False)]
            raise OptionError("max_drop", f"is accuracy control, which {self.method} does not have; methods that do: "
                                          f"{', '.join(keepers) or 'none installed'} (or check afterwards with "
                                          "fcbench eval ARTIFACT --max-drop)")
        if (self.max_drop is None) != (self.eval_data is None):
            raise OptionError("max_drop" if self.max_drop is None else "eval_data",
                              "is needed too: accuracy control takes --max-drop P and --eval-data D together")
        return self


def parse_floats(value: Any, what: str = "option") -> list[float]:
    items = parse_list(value, what)
    try:
        return [float(v) for v in items]
    except ValueError as exc:
        raise FcbenchError(f"--{what.replace('_', '-')}: numbers, comma-separated, e.g. 0.25,0.5; "
                           f"got {value!r}") from exc


@dataclass
class OptimizeConfig(Checked):
    checkpoint: str = opt("", argument=True, help="fcbench checkpoint (.pt with its manifest)")
    backends: list[str] = opt(default_factory=list, flags=("--backend",), parse=parse_list,
                              help="Target backend(s): profile or plugin:variant, comma-separated")
    max_drop: float | None = opt(None, range=(0, 100), help="Accuracy budget: points below the float parent")
    metric: str | None = opt(None, help="Metric the budget is on (default: the headline: accuracy, top1, rank1)")
    data: str = opt("", help="Evaluation data (as eval's --data)")
    data_options: dict[str, Any] = opt(default_factory=dict, flags=("--data-opt",), parse=parse_kv)
    nfolds: int = opt(10, range=(1, 1000))
    calib_data: str | None = opt(None, help="Calibration images (default: --data)")
    calib_options: dict[str, Any] = opt(default_factory=dict, flags=("--calib-opt",), parse=parse_kv)
    calib_size: int = opt(128, min=1)
    methods: list[str] = opt(default_factory=list, parse=parse_list,
                             help="Only these quantization methods (default: every one the backends run)")
    keep_sensitive: int = opt(2, min=0, help="A method that misses the budget is tried again with its K most "
                                             "sensitive layers in float (0: never)")
    prune: list[float] = opt(default_factory=list, parse=parse_floats, metavar="RATIOS",
                             help="Also try channel-pruned models at these ratios, e.g. 0.25,0.5")
    round_to: int | None = opt(8, min=1, help="Pruned channel counts a multiple of N")
    finetune_epochs: int = opt(0, min=0, help="Fine-tune each pruned model this many epochs on --train-data")
    finetune_lr: float = opt(0.01, gt=0)
    finetune_distill: str | None = opt(None, help="Fine-tune each pruned model as a distillation student of the "
                                                  "unpruned checkpoint (a distill method, e.g. embedding-mse)")
    finetune_distill_options: dict[str, Any] = opt(default_factory=dict, flags=("--finetune-distill-opt",),
                                                   parse=parse_kv, help="--finetune-distill's method option "
                                                                        "KEY=VALUE, e.g. weight=1000")
    train_data: str | None = opt(None, help="Training data for --finetune-epochs (as train's --data)")
    train_options: dict[str, Any] = opt(default_factory=dict, flags=("--train-opt",), parse=parse_kv)
    budget_minutes: float = opt(60.0, gt=0, help="Stop starting candidates after this many minutes")
    bench_seconds: float = opt(1.0, gt=0, help="Timed seconds per candidate")
    out: str | None = opt(None, help="Folder for the candidates (default: <stem>-optimize beside the checkpoint)")
    threads: int | None = opt(None, range=(1, MAX_THREADS))
    seed: int = opt(0, range=(0, MAX_SEED))

    def validate(self) -> OptimizeConfig:
        check_options(self)
        if not self.checkpoint:
            raise FcbenchError("optimize: give the checkpoint, e.g. fcbench optimize runs/demo/model.pt --backend "
                               "openvino --max-drop 1 --data synthetic:pairs")
        if not self.backends:
            raise OptionError("backends", "is required: the backend(s) to optimize for, e.g. openvino,onnxruntime")
        if self.max_drop is None:
            raise OptionError("max_drop", "is required: how many points below the float parent are acceptable")
        if not self.data:
            raise OptionError("data", "is required: the evaluation data the budget is measured on")
        from fcbench.backends import expand

        expand(self.backends)  # unknown backends, with the closest name
        for r in self.prune:
            if not 0 < r < 1:
                raise OptionError("prune", f"ratios must be in (0, 1), got {r:g}")
        if self.finetune_epochs and not self.train_data:
            raise OptionError("train_data", "is needed for --finetune-epochs (the data to fine-tune on)")
        if self.finetune_epochs and not self.prune:
            raise OptionError("finetune_epochs", "fine-tunes pruned models: give --prune RATIOS too")
        _check_finetune_distill(self.finetune_distill, self.finetune_distill_options, self.finetune_epochs)
        if self.methods:
            from fcbench.quantization import method_names

            known = method_names()
            for m in self.methods:
                if m not in known:
                    raise OptionError("methods", f"'{m}' is not a quantization method{suggest(m, known)}; "
                                                 f"methods: {', '.join(known)}")
        return self


@dataclass
class InspectConfig(Checked):
    artifact: str = opt("", argument=True, help="An artifact (with its manifest, or --infer-manifest)")
    backend: str = opt("", help="A profile or plugin:variant, e.g. tflite:xnnpack")
    threads: int | None = opt(None, range=(1, MAX_THREADS))
    infer_manifest: bool = opt(False, help="Infer a missing manifest from the file")

    def validate(self) -> InspectConfig:
        check_options(self)
        if not self.backend:
            raise FcbenchError("inspect: --backend is required (a profile or plugin:variant, e.g. tflite:xnnpack)")
        return self


@dataclass
class ResultsConfig(Checked):
    run: str | None = opt(None, help="A run id, 'last' or 'last~N' (N runs before the last)")
    kind: str | None = opt(None, help="speed, quality, train or compress")
    model: str | None = opt(None)
    metric: str | None = opt(None, help="A metric, or several comma-separated (accuracy,rank1)")
    limit: int | None = opt(None, min=1, help="Only the newest N rows")
    store: str | None = opt(None, help="Results store: an SQLite file or a postgresql://user@host:port/db URL. "
                                        "Default: results/fcbench.sqlite")
    pivot: bool = opt(False, help="Quality rows as one line per evaluated artifact, a column per metric")
    all_runs: bool = opt(False, cli=False)  # in a recipe: every run in the store, not only this recipe's
    title: str = opt("", cli=False)


@dataclass
class RunConfig(Checked):
    recipe: str = opt("", argument=True, help="Recipe YAML, e.g. recipes/quickstart.yaml")
    set: dict[str, Any] = opt(default_factory=dict, flags=("--set",), parse=parse_kv,
                              help="Override a recipe variable KEY=VALUE")
    check: bool = opt(False, help="Validate the recipe and stop")


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)


# --- compare ---------------------------------------------------------------------------------------

# default limits: latency in per cent of the base median, quality figures in percentage points (100 x the
# metric's difference; cosine in hundredths). A metric's own name (tar@far=1e-03, top3) beats its family's.
COMPARE_THRESHOLDS: dict[str, float] = {"latency": 5.0, "accuracy": 0.5, "top1": 0.5, "top5": 0.5, "rank1": 0.5,
                                        "rank5": 0.5, "auc": 0.5, "eer": 0.5, "tar@far": 1.0,
                                        "open_set_tar@far": 1.0, "cosine": 0.5}


def metric_family(metric: str) -> str:
    """The threshold family of a metric name: ``tar@far=1e-03`` -> ``tar@far``, ``cosine_to_parent_p1`` ->
    ``cosine``, ``top3`` -> ``top3``."""
    for fam in ("open_set_tar@far", "tar@far"):
        if metric.startswith(fam):
            return fam
    if metric.startswith("cosine"):
        return "cosine"
    return metric


def known_threshold(name: str) -> bool:
    fam = metric_family(name)
    return fam in COMPARE_THRESHOLDS or any(fam.startswith(p) and fam[len(p):].isdigit() for p in ("top", "rank"))


def parse_thresholds(items: list[str], what: str = "threshold") -> dict[str, float]:
    """``['latency=5', 'top1=0.5', 'tar@far=1e-03=1']`` -> ``{'latency': 5.0, ...}`` (the last ``=`` splits);
    unknown metric names are one error listing the known ones."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = str(item).rpartition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError(what, f"'{item}' is not METRIC=LIMIT (e.g. latency=10 or top1=0.5)")
        if not known_threshold(name):
            known = list(COMPARE_THRESHOLDS)
            raise OptionError(what, f"'{name}' is not a metric compare knows{suggest(name, known)}; known: "
                                    f"{', '.join(known)} (or a full name such as tar@far=1e-03, top3)")
        try:
            limit = float(raw.strip().rstrip("%"))
        except ValueError:
            raise OptionError(what, f"'{item}': the limit must be a number, e.g. {name}=0.5") from None
        if not math.isfinite(limit) or limit < 0:
            raise OptionError(what, f"'{item}': the limit must be a finite number >= 0")
        out[name] = limit
    return out


@dataclass
class CompareConfig(Checked):
    base: str = opt("", argument=True, help="BASE: a CSV/JSON export (fcbench results --format csv), a results "
                                              "store (path or URL), a run id in --store (last, last~1, an id), or "
                                              "a model file (then NEW is one too: both are timed now, in turn)")
    new: str = opt("", argument=True, help="NEW: the same kinds as BASE")
    threshold: list[str] = opt(default_factory=list, parse=parse_list, metavar="METRIC=LIMIT",
                               help="A limit, repeatable: latency=PERCENT (default 5), top1/accuracy/rank1/auc/eer"
                                    "=POINTS (default 0.5), tar@far=POINTS (1), cosine=HUNDREDTHS (0.5)")
    history: int | None = opt(None, range=(2, 10000), help="Also check each NEW row over the last N runs of the "
                                                           "same row in the store for a change point (slow drift)")
    store: str | None = opt(None, help="Results store for run ids and --history (SQLite file or URL). Default: "
                                       "results/fcbench.sqlite")
    seed: int = opt(0, range=(0, MAX_SEED), help="Seed of the bootstrap")
    backend: list[str] = opt(default_factory=list, parse=parse_list,
                             help="BASE and NEW model files: the backend(s) they are timed on, in turn (A/B). "
                                  "Default: the format's default backend")
    threads: int | None = opt(None, range=(1, MAX_THREADS), help="BASE and NEW model files: threads per runtime "
                                                                  "(default: all cores)")
    runs: int = opt(50, min=1, help="BASE and NEW model files: minimum timed queries of each")
    min_seconds: float = opt(2.0, min=0, help="BASE and NEW model files: minimum timed seconds of each (longer "
                                              "narrows the interval)")
    repeats: int = opt(5, range=(1, 100), help="BASE and NEW model files: A/B runs, each in a fresh bench "
                                               "worker, pooled (each process's sessions land a few per cent apart; "
                                               "more runs average that out)")
    worker_timeout: float | None = opt(None, gt=0, help="BASE and NEW model files: fail if the bench worker runs "
                                                        "longer than this many seconds")

    def limits(self) -> dict[str, float]:
        return {**COMPARE_THRESHOLDS, **parse_thresholds(self.threshold)}

    def validate(self) -> CompareConfig:
        check_options(self)
        self.limits()  # BASE and NEW are checked when they are read
        return self
@dataclass
class ReportConfig(Checked):
    """``fcbench report``: one self-contained HTML page of the rows in a results store."""

    store: str | None = opt(None, help="Results store (SQLite file). Default: results/fcbench.sqlite")
    runs: list[str] = opt(default_factory=list, flags=("--run",), parse=parse_list,
                          help="Only these runs: ids, 'last' or 'last~N' (repeat or comma-separate); default: all")
    out: str = opt("report.html", help="The HTML file to write (one file, opens with no network)")
    title: str = opt("", help="The page's title. Default: fcbench report of STORE")
    compare: list[str] = opt(default_factory=list, parse=parse_list,
                             help="Two runs BASE,NEW whose compare verdicts the page shows (needs fcbench compare)")
