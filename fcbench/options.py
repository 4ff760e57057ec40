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
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from fcbench.errors import FcbenchError, suggest

# --- parsers: CLI strings or recipe/library values -> the field's value ------------------------


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def parse_kv(value: Any, what: str = "option") -> dict[str, Any]:
    """``['width=0.25', 'layers=[1,1,1,1]']`` -> ``{'width': 0.25, 'layers': [1, 1, 1, 1]}`` (values read as
    YAML); a mapping is taken as it is."""
    if isinstance(value, dict):
        return dict(value)
    import yaml

    out: dict[str, Any] = {}
    for item in _strings(value):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise FcbenchError(f"{what} '{item}' is not KEY=VALUE (e.g. {what} width=0.25)")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise FcbenchError(f"{what} '{item}': value is not valid YAML ({exc})") from exc
    return out


def parse_list(value: Any, what: str = "option") -> list[str]:
    """Comma-separated and/or repeated: ``'a,b'``, ``['a', 'b,c']`` -> ``['a', 'b', 'c']``."""
    return [part.strip() for item in _strings(value) for part in item.split(",") if part.strip()]


def parse_ints(value: Any, what: str = "option") -> list[int]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return list(value)
    parts = parse_list(value, what)
    try:
        return [int(p) for p in parts]
    except ValueError as exc:
        raise FcbenchError(f"{what} '{','.join(parts)}' must be comma-separated integers, e.g. 8,14,20") from exc


def parse_shape(value: Any, what: str = "--input-shape") -> list[int] | None:
    if value in (None, "", []):
        return None
    if isinstance(value, (list, tuple)):
        shape = [int(v) for v in value]
    else:
        try:
            shape = [int(p) for p in str(value).lower().replace(",", "x").split("x")]
        except ValueError as exc:
            raise FcbenchError(f"{what} '{value}' must be like 1x3x112x112") from exc
    if len(shape) != 4 or min(shape) < 1:
        raise FcbenchError(f"{what} '{value}' must be 4 positive sizes, like 1x3x112x112")
    return shape


def parse_format_options(value: Any, what: str = "--opt") -> dict[str, dict[str, Any]]:
    """``['onnx.opset=17']`` -> ``{'onnx': {'opset': 17}}``; a mapping of mappings is taken as it is."""
    if isinstance(value, dict):
        return {str(k): dict(v) if isinstance(v, dict) else v for k, v in value.items()}
    out: dict[str, dict[str, Any]] = {}
    for key, v in parse_kv(value, what).items():
        fmt, dot, k = key.partition(".")
        if not dot or not fmt or not k:
            raise FcbenchError(f"{what} {key}: write FORMAT.KEY=VALUE, e.g. {what} onnx.opset=17")
        out.setdefault(fmt, {})[k] = v
    return out


PRECISIONS = ("f32", "bf16", "f16", "int8")
ISOLATIONS = ("subprocess", "inprocess")
_PRECISION_ALIASES = {"fp32": "f32", "fp16": "f16", "float32": "f32", "float16": "f16", "i8": "int8"}


def normalize_precision(p: Any, what: str = "--precision") -> str | None:
    return None if p in (None, "") else _PRECISION_ALIASES.get(str(p).lower(), str(p).lower())


# --- field metadata ------------------------------------------------------------------------------

def opt(default: Any = MISSING, *, help: str = "", flags: tuple[str, ...] = (),  # noqa: A002
        parse: Callable[..., Any] | None = None, argument: bool = False, cli: bool = True,
        default_factory: Any = MISSING, metavar: str | None = None) -> Any:
    """A verb option. ``flags`` are extra spellings on the command line (the field's own name with
    dashes always works: ``min_seconds`` is ``--min-seconds``); ``argument`` makes it positional;
    ``cli=False`` keeps it out of the command line (library and recipes only)."""
    meta = {"help": help, "flags": flags, "parse": parse, "argument": argument, "cli": cli, "metavar": metavar}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def option_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if not f.name.startswith("_")]


def from_mapping(cls: type, mapping: dict[str, Any], where: str) -> Any:
    """Build a verb's options from a mapping (a recipe step, or parsed command-line values): unknown
    keys are one clear error naming the valid ones; each value goes through its field's parser."""
    names = option_names(cls)
    values: dict[str, Any] = {}
    by_name = {f.name: f for f in fields(cls)}
    for key, value in mapping.items():
        if key not in names:
            raise FcbenchError(f"{where}: unknown key '{key}'{suggest(key, names)}; valid keys: {', '.join(names)}")
        parse = by_name[key].metadata.get("parse")
        try:
            values[key] = parse(value, key) if parse is not None and value is not None else value
        except FcbenchError as exc:
            raise FcbenchError(f"{where}: {exc}") from exc
    try:
        cfg = cls(**values)
    except TypeError as exc:
        raise FcbenchError(f"{where}: {exc}") from exc
    if hasattr(cfg, "validate"):
        try:
            cfg.validate()
        except FcbenchError as exc:
            if str(exc).startswith(where):
                raise
            raise FcbenchError(f"{where}: {exc}") from exc
    return cfg


def as_dict(cfg: Any) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if not f.name.startswith("_")}


# --- the built-in verbs' options ----------------------------------------------------------------

@dataclass
class TrainConfig:
    model: str = opt("r18", help="Model name (fcbench plugins --kind model)")
    model_options: dict[str, Any] = opt(default_factory=dict, flags=("-o", "--model-opt"), parse=parse_kv,
                                        help="Model option KEY=VALUE, e.g. width=0.25")
    weights: str | None = opt(None, help="Start from these weights (fcbench checkpoint or plain state_dict)")
    head: str = opt("arcface", help="arcface, cosface or softmax (ignored for classification models)")
    head_options: dict[str, Any] = opt(default_factory=dict, flags=("--head-opt",), parse=parse_kv,
                                       help="Head option KEY=VALUE, e.g. s=64 m=0.5")
    data: Any = opt("synthetic:faces", help="Dataset: synthetic[:kind], NAME:PATH or a path")
    data_options: dict[str, Any] = opt(default_factory=dict, flags=("--data-opt",), parse=parse_kv,
                                       help="Dataset option KEY=VALUE")
    epochs: int = opt(10)
    batch_size: int = opt(64)
    lr: float = opt(0.1)
    head_lr: float | None = opt(None, help="Head optimizer lr (default: --lr); the head has its own optimizer")
    optimizer: str = opt("sgd", help="sgd or adamw")
    momentum: float = opt(0.9)
    weight_decay: float = opt(5e-4)
    schedule: str = opt("step", help="step, cosine or constant")
    milestones: list[int] = opt(default_factory=list, parse=parse_ints,
                                help="Epochs of x gamma steps, e.g. 8,14,20,25")
    gamma: float = opt(0.1)
    warmup_epochs: float = opt(0.0)
    max_steps: int | None = opt(None, help="Stop after this many optimizer steps in total")
    workers: int = opt(0, help="DataLoader worker processes")
    seed: int = opt(0)
    out: str = opt("runs/train", help="Output folder for the run's checkpoints; one run per folder: a folder "
                                      "that holds another run is refused (see --resume, --overwrite)")
    resume: str | None = opt(None, help="'auto' (continue the run in --out from its latest epoch; start it if there "
                                        "is none) or an epoch checkpoint; the options must be the run's")
    overwrite: bool = opt(False, help="Delete the run already in --out (init.pt, epoch-*.pt, model.pt and their "
                                      "manifests) and start a new one")
    amp: str = opt("auto", help="auto (on with CUDA), on, off")
    device: str = opt("auto", help="auto, cpu, cuda, cuda:N")
    threads: int | None = opt(None)

    def validate(self) -> TrainConfig:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.optimizer in ("sgd", "adamw"), f"optimizer must be sgd or adamw, got '{self.optimizer}'"),
            (self.schedule in ("step", "cosine", "constant"),
             f"schedule must be step, cosine or constant, got '{self.schedule}'"),
            (self.amp in ("auto", "on", "off"), f"amp must be auto, on or off, got '{self.amp}'"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise FcbenchError(f"train: {msg}")
        return self


@dataclass
class PluginsConfig:
    kind: str | None = opt(None, help="model, dataset, format, technique, backend, device or verb")
    verbose: bool = opt(False, flags=("-v",), help="Also list what each plugin takes: a model's task, input size "
                                                  "and options with defaults; a technique's or dataset's options")


@dataclass
class ProfileConfig:
    model: str = opt("", argument=True, help="Model name, e.g. r18, mbf, resnet18")
    model_options: dict[str, Any] = opt(default_factory=dict, flags=("-o", "--model-opt"), parse=parse_kv,
                                        help="Model option KEY=VALUE (repeatable)")
    input_size: str | None = opt(None, help="H or HxW; default: the model's own")

    def size(self) -> tuple[int, int] | None:
        if not self.input_size:
            return None
        try:
            parts = [int(p) for p in str(self.input_size).lower().split("x")]
        except ValueError as exc:
            raise FcbenchError(f"--input-size '{self.input_size}' must be H or HxW, e.g. 112 or 112x96") from exc
        return parts[0], parts[-1]


@dataclass
class EvalConfig:
    """``checkpoints`` x ``backends`` is the matrix ``fcbench eval`` runs; ``checkpoint``/``backend`` name
    one cell (what :func:`fcbench.evaluation.evaluate` runs) and fill the lists when those are empty."""

    checkpoints: list[str] = opt(default_factory=list, argument=True, parse=parse_list,
                                 help="fcbench checkpoint (.pt), a plain state_dict with --model, or converted "
                                      "artifacts (.onnx .tflite .xml .ptl .pte)")
    model: str | None = opt(None, help="Architecture of a plain state_dict")  # e.g. insightface backbone.pth
    model_options: dict[str, Any] = opt(default_factory=dict, flags=("-o", "--model-opt"), parse=parse_kv,
                                        help="Model option KEY=VALUE (with --model)")
    data: Any = opt("synthetic:pairs", help="Dataset: synthetic[:kind], NAME:PATH or a path")
    data_options: dict[str, Any] = opt(default_factory=dict, flags=("--data-opt",), parse=parse_kv,
                                       help="Dataset option KEY=VALUE")
    protocol: str = opt("auto", help="auto, verification, classification, identification")
    batch_size: int = opt(64)
    nfolds: int = opt(10, help="Folds of the verification protocol")
    workers: int = opt(0)
    threads: int | None = opt(None)
    backends: list[str] = opt(default_factory=list, flags=("--backend",), parse=parse_list,
                              help="Runtime(s) for artifacts, comma-separated (profiles or plugin:variant); "
                                   "default: each format's own (onnxruntime:cpu, tflite:xnnpack, ...)")
    infer_manifest: bool = opt(False, help="Artifact without a manifest: infer one")
    max_drop: float | None = opt(None, help="Fail (exit 1) when the headline metric (accuracy, top-1, rank-1) is "
                                            "more than this many percentage points below the float parent's")
    roc: str | None = opt(None, help="Verification: write the whole ROC (far,tar,threshold) to this CSV file")
    checkpoint: str = opt("", cli=False)
    backend: str | None = opt(None, cli=False)

    def __post_init__(self) -> None:
        if self.checkpoint and not self.checkpoints:
            self.checkpoints = [self.checkpoint]
        if self.backend and not self.backends:
            self.backends = [self.backend]

    def validate(self) -> EvalConfig:
        from pathlib import Path

        if not self.checkpoints and not self.checkpoint:
            raise FcbenchError("eval: give a checkpoint or artifact to evaluate")
        if self.max_drop is not None and self.max_drop < 0:
            raise FcbenchError(f"--max-drop must be >= 0 percentage points, got {self.max_drop}")
        if self.roc is not None:
            if len(self.checkpoints) != 1 or len(self.backends) > 1:
                raise FcbenchError("--roc writes one curve: give one artifact and one backend")
            if self.protocol not in ("auto", "verification"):
                raise FcbenchError(f"--roc needs the verification protocol (pairs); --protocol is {self.protocol}")
            if not Path(self.roc).parent.exists():
                raise FcbenchError(f"--roc: folder {Path(self.roc).parent} does not exist")
        return self


@dataclass
class ConvertConfig:
    checkpoint: str = opt("", argument=True, help="fcbench checkpoint (.pt with its manifest), or a Keras model "
                                                   "(.keras, .h5, SavedModel folder) for --to tflite")
    to: list[str] = opt(default_factory=lambda: ["all"], parse=parse_list,
                        help="Formats, comma-separated (onnx,tflite,openvino,ptl,pte and any format plugin: "
                             "fcbench plugins --kind format), or all")
    out: str | None = opt(None, help="Output folder (default: beside the checkpoint)")
    options: dict[str, dict[str, Any]] = opt(default_factory=dict, flags=("--opt",), parse=parse_format_options,
                                             help="Exporter option FORMAT.KEY=VALUE, e.g. onnx.opset=17, "
                                                  "tflite.optimize=latency (Keras)")
    preprocessing: str | None = opt(None, help="Keras models: face, imagenet or cifar (default: by input size)")
    check: bool = opt(False, help="Write nothing: list, per format, every op it will not take, with where it "
                                  "comes from in the model")

    def validate(self) -> ConvertConfig:
        from fcbench.conversion import parse_formats

        if not self.checkpoint:
            raise FcbenchError("convert: 'checkpoint' is required")
        formats = parse_formats(self.to)
        for fmt, opts in (self.options or {}).items():
            if fmt not in formats or not isinstance(opts, dict):
                raise FcbenchError(f"convert: options are {{format: {{key: value}}}} (--opt FORMAT.KEY=VALUE) for the "
                                   f"formats in 'to' ({', '.join(formats)}); got '{fmt}'")
        return self


@dataclass
class BenchConfig:
    artifacts: list[str] = opt(default_factory=list, argument=True, parse=parse_list,
                               help="Artifacts (files with a manifest), e.g. out/model.onnx")
    backends: list[str] = opt(default_factory=lambda: ["all"], flags=("--backend",), parse=parse_list,
                              help="Comma-separated profiles, plugin:variant, or all")
    threads: int | None = opt(None, help="Threads per runtime (default: all cores)")
    warmup: int = opt(10, help="Untimed queries before timing")
    runs: int = opt(50, help="Minimum timed queries")
    min_seconds: float = opt(1.0, help="Minimum timed duration")
    max_seconds: float | None = opt(None, help="Stop once runs are met and this passed")
    batch: int = opt(1)
    infer_manifest: bool = opt(False, help="Artifacts without a manifest: infer one from the file, print what was "
                                           "assumed")
    preprocessing: str | None = opt(None, help="With --infer-manifest: face, imagenet or cifar")
    input_shape: list[int] | None = opt(None, parse=parse_shape,
                                        help="With --infer-manifest: e.g. 1x3x112x112 (for .ptl/.pte)")
    require_placement: float | None = opt(None, help="Fail a cell whose requested device/delegate ran less than "
                                                     "this fraction of the nodes (0..1), naming the first that fell "
                                                     "back")
    precision: str | None = opt(None, parse=normalize_precision,
                                help="Ask each runtime for f32, bf16, f16 or int8; one that cannot honour it is "
                                     "skipped, saying what it can")
    pipeline: bool = opt(False, help="Also time what an app sees per image: read, decode, preprocess, infer, "
                                     "postprocess (needs --images)")
    images: str | None = opt(None, help="Folder of JPEG/PNG images for --pipeline")
    isolation: str = opt("subprocess", help="subprocess: each cell in a fresh bench worker process (python -m "
                                            "fcbench.worker) on the local device; inprocess: in this process. "
                                            "--pipeline always runs in-process")
    in_process: bool = opt(False, help="Same as --isolation inprocess")
    worker_logs: str | None = opt(None, help="Where a failed worker's stdout, stderr and output are kept "
                                             "(default: results/worker-logs)")
    worker_timeout: float | None = opt(None, help="Fail a cell whose bench worker runs longer than this many "
                                                  "seconds (load, warm-up and timing together); default: no limit")
    _images: Any = field(default=None, repr=False)  # --images, read once by bench()

    def __post_init__(self) -> None:
        if self.in_process:
            self.isolation = "inprocess"

    def validate(self) -> BenchConfig:
        for ok, msg in [(self.warmup >= 0, "--warmup must be >= 0"), (self.runs >= 1, "--runs must be >= 1"),
                        (self.min_seconds >= 0, "--min-seconds must be >= 0"),
                        (self.batch >= 1, "--batch must be >= 1"),
                        (self.threads is None or self.threads >= 1, "--threads must be >= 1"),
                        (self.worker_timeout is None or self.worker_timeout > 0, "--worker-timeout must be > 0"),
                        (self.isolation in ISOLATIONS,
                         f"--isolation must be one of {', '.join(ISOLATIONS)}, got '{self.isolation}'"),
                        (self.precision is None or self.precision in PRECISIONS,
                         f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'"),
                        (self.require_placement is None or 0 <= self.require_placement <= 1,
                         f"--require-placement must be a fraction in [0, 1], got {self.require_placement}"),
                        (bool(self.artifacts), "give at least one artifact"),
                        (not self.pipeline or bool(self.images), "--pipeline needs --images DIR (JPEG/PNG files)"),
                        (self.pipeline or not self.images, "--images is for --pipeline")]:
            if not ok:
                raise FcbenchError(f"bench: {msg}")
        return self


@dataclass
class CompressConfig:
    checkpoint: str = opt("", argument=True, help="fcbench checkpoint (.pt with its manifest)")
    technique: str = opt("", help="A technique plugin (fcbench plugins --kind technique)")
    options: dict[str, Any] = opt(default_factory=dict, flags=("--opt",), parse=parse_kv,
                                  help="Technique option KEY=VALUE (repeatable)")
    out: str | None = opt(None, help="Output checkpoint (default: <stem>-<technique>.pt beside the input)")
    threads: int | None = opt(None)
    seed: int = opt(0)

    def validate(self) -> CompressConfig:
        if not self.checkpoint:
            raise FcbenchError("compress: give the checkpoint to compress")
        if not self.technique:
            raise FcbenchError("compress: --technique is required (fcbench plugins --kind technique lists them)")
        return self


@dataclass
class InspectConfig:
    artifact: str = opt("", argument=True, help="An artifact (with its manifest, or --infer-manifest)")
    backend: str = opt("", help="A profile or plugin:variant, e.g. tflite:xnnpack")
    threads: int | None = opt(None)
    infer_manifest: bool = opt(False, help="Infer a missing manifest from the file")

    def validate(self) -> InspectConfig:
        if not self.backend:
            raise FcbenchError("inspect: --backend is required (a profile or plugin:variant, e.g. tflite:xnnpack)")
        return self


@dataclass
class ResultsConfig:
    run: str | None = opt(None, help="A run id, or 'last'")
    kind: str | None = opt(None, help="speed, quality or train")
    model: str | None = opt(None)
    metric: str | None = opt(None)
    limit: int | None = opt(None, help="Only the newest N rows")
    store: str | None = opt(None, help="Results store (SQLite file). Default: results/fcbench.sqlite")
    pivot: bool = opt(False, help="Quality rows as one line per evaluated artifact, a column per metric")
    all_runs: bool = opt(False, cli=False)  # in a recipe: every run in the store, not only this recipe's
    title: str = opt("", cli=False)


@dataclass
class RunConfig:
    recipe: str = opt("", argument=True, help="Recipe YAML, e.g. recipes/quickstart.yaml")
    set: dict[str, Any] = opt(default_factory=dict, flags=("--set",), parse=parse_kv,
                              help="Override a recipe variable KEY=VALUE")
    check: bool = opt(False, help="Validate the recipe and stop")


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
