"""fcbench's own verbs, registered in ``pyproject.toml`` (``fcbench.verbs``) like a third party's.

Each is its options class, the library function that runs it and its renderer. The small
adapters below exist only where a verb's options choose between library calls (``convert`` of a
Keras file or ``--check``); everything else is the library function itself. Imports are lazy:
this module is read by ``fcbench --help``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError, distinct_reasons
from fcbench.options import (
    BenchConfig,
    CompareConfig,
    CompressConfig,
    ConvertConfig,
    DevicesConfig,
    DistillConfig,
    EvalConfig,
    InspectConfig,
    OptimizeConfig,
    PluginsConfig,
    ProfileConfig,
    PruneConfig,
    QuantizeConfig,
    ReportConfig,
    ResultsConfig,
    RunConfig,
    TrainConfig,
)
from fcbench.verbs import Verb

TABLE_FORMATS = ("table", "json", "csv", "markdown")


# --- small results of the verbs that measure nothing -----------------------------------------------

@dataclass
class PluginsResult:
    plugins: list[Any] = field(default_factory=list)  # fcbench.plugins.PluginInfo
    verbose: bool = False  # the plugins carry their details (options and defaults)

    def to_rows(self) -> list:
        return []


@dataclass
class ProfileResult:
    model: str
    options: dict[str, Any]
    input_size: list[int]
    params: int
    macs: int
    flops: int

    def to_rows(self) -> list:
        return []


@dataclass
class InspectResult:
    artifact: str
    backend: str
    nodes: list[Any]  # NodePlacement
    placement: str
    precision: str

    def to_rows(self) -> list:
        return []


@dataclass
class ResultsResult:
    store: str
    rows: list[dict[str, Any]]
    title: str = ""
    pivot: bool = False

    def to_rows(self) -> list:
        return []  # rows already in the store


@dataclass
class ConvertResult:
    """One outcome per format (``ConvertOutcome``), or with ``check`` the per-format preflight."""

    checkpoint: str
    outcomes: list[Any] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)

    def to_rows(self) -> list:
        return []  # conversion writes artifacts and manifests (with parity), not store rows

    def failures(self) -> list[str]:
        bad = [f"{o.format}: {o.status}: {o.reason}" for o in self.outcomes if o.status in ("failed", "parity-failed")]
        return bad + [f"{c.format}: blocked" for c in self.checks if c.status == "blocked"]

    def __iter__(self):
        return iter(self.outcomes)


# --- adapters -------------------------------------------------------------------------------------

def run_plugins(cfg: PluginsConfig, ctx=None, hooks=None) -> PluginsResult:
    from fcbench.plugins import describe

    return PluginsResult(describe(cfg.kind, verbose=bool(cfg.verbose)), verbose=bool(cfg.verbose))


def run_profile(cfg: ProfileConfig, ctx=None, hooks=None) -> ProfileResult:
    from fcbench.models import create
    from fcbench.models import profile as profile_model

    if not cfg.model:
        raise FcbenchError("profile: give a model name, e.g. fcbench profile r18")
    opts = dict(cfg.model_options)
    size = cfg.size()
    if size:
        opts.setdefault("input_size", list(size))
    m = create(cfg.model, **opts)
    size = size or tuple(m.input_size)
    prof = profile_model(m, input_size=size)
    return ProfileResult(cfg.model, dict(m.fcbench_options), list(size), prof["params"], prof["macs"], prof["flops"])


def run_train(cfg: TrainConfig, ctx=None, hooks=None):
    from fcbench.training.loop import train

    return train(cfg, ctx, hooks)


def run_distill(cfg: DistillConfig, ctx=None, hooks=None):
    from fcbench.distillation import distill

    return distill(cfg, ctx, hooks)


def run_eval(cfg: EvalConfig, ctx=None, hooks=None):
    from fcbench.evaluation import evaluate_all

    return evaluate_all(cfg, ctx, hooks)


def run_convert(cfg: ConvertConfig, ctx=None, hooks=None) -> ConvertResult:
    from fcbench.conversion import check_checkpoint, convert, convert_keras_source, is_keras_source, parse_formats
    from fcbench.hooks import or_default

    hooks = or_default(hooks)
    cfg.validate()
    formats = parse_formats(cfg.to)
    result = ConvertResult(checkpoint=cfg.checkpoint)
    if cfg.check:
        result.checks = check_checkpoint(cfg.checkpoint, formats)
        return result
    if is_keras_source(cfg.checkpoint):
        if cfg.split_at is not None:
            raise FcbenchError("--split-at cuts an fcbench detector checkpoint; a Keras model has no split: drop it")
        outcome, assumed = convert_keras_source(cfg.checkpoint, formats, cfg.out, cfg.options, cfg.preprocessing)
        if assumed:
            hooks.log(f"{Path(cfg.checkpoint).name}: assumed " + "; ".join(assumed))
        hooks.event("outcome", outcome)
        result.outcomes = [outcome]
        return result
    if cfg.preprocessing:
        raise FcbenchError("--preprocessing is for Keras models; an fcbench checkpoint records its own")
    result.outcomes = convert(cfg.checkpoint, formats, cfg.out, cfg.options,
                              on_outcome=lambda o: hooks.event("outcome", o), split_at=cfg.split_at)
    if result.outcomes and all(o.status == "skipped" for o in result.outcomes):  # asked to convert, did nothing
        why = "; ".join(f"{o.format}: {o.reason}" for o in result.outcomes)
        raise FcbenchError(f"convert: nothing converted: {why}; install an exporter (fcbench plugins --kind "
                           "format) or pick --to another format")
    return result


def run_compress(cfg: CompressConfig, ctx=None, hooks=None):
    """Apply one technique plugin to a checkpoint: a new checkpoint whose lineage ends with its step."""
    from fcbench.hooks import or_default
    from fcbench.results.context import RunContext
    from fcbench.techniques import apply_technique
    from fcbench.techniques.base import TechniqueContext

    hooks = or_default(hooks)
    cfg.validate()
    result = apply_technique(cfg.checkpoint, cfg.technique, cfg.options, cfg.out,
                             context=TechniqueContext(threads=cfg.threads, seed=cfg.seed,
                                                      progress=lambda msg, frac: hooks.log(msg)))
    result.ctx = ctx or RunContext()
    hooks.rows(result.to_rows())
    return result


@dataclass
class PruneResult:
    """What ``prune`` made: the technique's result (its compress row) with params and MACs before and
    after at the model's input size, and for unstructured pruning the sparsity of the written weights."""

    technique: Any  # fcbench.techniques.TechniqueResult
    input_size: list[int]
    macs_before: int
    macs_after: int
    sparsity: float | None = None  # fraction of zero conv/linear weights (l1-unstructured)
    note: str = ""
    finetune: list[dict[str, Any]] = field(default_factory=list)  # per round: {round, epochs, loss per epoch}
    bench: dict[str, Any] | None = None  # --bench: backend, format, p50_ms_before/after, latency_ratio, threads

    @property
    def output(self) -> Path:
        return self.technique.output

    @property
    def params_ratio(self) -> float:
        return self.technique.params_after / max(self.technique.params_before, 1)

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / max(self.macs_before, 1)

    def __fspath__(self) -> str:
        return str(self.technique.output)

    def to_dict(self) -> dict[str, Any]:
        return {**self.technique.to_dict(), "input_size": self.input_size, "macs_before": self.macs_before,
                "macs_after": self.macs_after, "params_ratio": self.params_ratio, "macs_ratio": self.macs_ratio,
                "sparsity": self.sparsity, "note": self.note, "finetune": self.finetune, "bench": self.bench}

    def to_rows(self, ctx=None) -> list:
        rows = self.technique.to_rows(ctx)
        for row in rows:
            row.extra.update(macs_before=self.macs_before, macs_after=self.macs_after, sparsity=self.sparsity)
            if self.finetune:
                row.extra["finetune"] = self.finetune
            if self.bench:
                row.extra["bench"] = self.bench
        return rows


def _prune_data(cfg: PruneConfig, preprocessing: Any) -> Any:
    """``data(preprocessing, batch_size)`` over ``--data`` (opened once here, so a bad set stops the run before
    any work), or None without ``--data``."""
    if not cfg.data:
        return None
    import torch
    from torch.utils.data import DataLoader

    from fcbench.data import open_dataset

    dataset = open_dataset(cfg.data, preprocessing=preprocessing, **cfg.data_options)
    if not hasattr(dataset, "num_classes"):
        raise FcbenchError(f"prune: --data {cfg.data} has no class labels (is it a verification pair set?); give "
                           "the labelled images the checkpoint was trained on, e.g. --data synthetic:faces")

    def batches(pre: Any, batch_size: int) -> Any:
        ds = dataset if pre == preprocessing else open_dataset(cfg.data, preprocessing=pre, **cfg.data_options)
        return DataLoader(ds, batch_size=max(1, min(batch_size, len(ds))), shuffle=True,
                          generator=torch.Generator().manual_seed(cfg.seed))

    return batches


class _KeepHead:
    """Loss hook of prune's fine-tuning: starts the train loop's head from the pruned checkpoint's (its class
    centres), when the data has that head's classes; adds no loss term."""

    name = "prune-finetune"

    def __init__(self, head_state: dict[str, Any] | None, log: Any) -> None:
        self.head_state, self.log = head_state, log

    def setup(self, model: Any, head: Any, dataset: Any, device: Any) -> None:
        spec = self.head_state or {}
        if head is None or not spec.get("state_dict"):
            return None
        if int(spec.get("num_classes", -1)) != int(dataset.num_classes):
            self.log(f"fine-tuning: --data has {dataset.num_classes} classes, the checkpoint's head "
                     f"{spec.get('num_classes')}; a new head is trained")
            return None
        head.load_state_dict(spec["state_dict"])
        return None

    def __call__(self, inputs: Any) -> dict[str, Any]:
        return {}


class _DistilledFinetune(_KeepHead):
    """Loss hook of prune's fine-tuning with ``--finetune-distill``: the pruned checkpoint's head, as
    :class:`_KeepHead`, plus the distillation terms of the unpruned model as the teacher (fcbench.distillation's
    :class:`~fcbench.distillation.Distiller`)."""

    def __init__(self, head_state: dict[str, Any] | None, log: Any, distiller: Any) -> None:
        super().__init__(head_state, log)
        self.distiller = distiller
        self.name = f"prune-finetune+{distiller.name}"
        self.ce_weight = distiller.ce_weight
        self.row_extra = dict(distiller.row_extra)

    def setup(self, model: Any, head: Any, dataset: Any, device: Any) -> Any:
        super().setup(model, head, dataset, device)
        return self.distiller.setup(model, head, dataset, device)

    def margin(self, x: Any, y: Any) -> Any:
        return self.distiller.margin(x, y)

    def __call__(self, inputs: Any) -> dict[str, Any]:
        return self.distiller(inputs)


def _prune_teacher(cfg: PruneConfig, src: Path, folder: Path) -> Any:
    """``--finetune-distill``'s :class:`~fcbench.distillation.Distiller` factory: the unpruned ``src`` as the
    frozen teacher and the named method(s), checked against the checkpoint before any pruning."""
    from fcbench.artifact import sha256_file
    from fcbench.distillation import Distiller, Plan, Teacher, _check_plan, parse_methods
    from fcbench.options import DistillConfig
    from fcbench.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(src)
    model = ckpt.build_model().eval()
    methods = parse_methods(DistillConfig(teacher=str(src), method=str(cfg.finetune_distill),
                                          method_options=dict(cfg.finetune_distill_options)))
    head = (ckpt.head or {}).get("name", "arcface")
    _check_plan(methods, Plan(model.fcbench_task, model.fcbench_task, int(model.output_size),
                              int(model.output_size), ckpt.head, head), f"(the unpruned {src.name})")
    lineage = ckpt.manifest.lineage_summary() if ckpt.manifest else ""
    teacher = Teacher(src, sha256_file(src), model, ckpt.head, "checkpoint", lineage)
    return lambda: Distiller(teacher, methods, "+".join(m.name for m in methods), folder)


def _finetuner(cfg: PruneConfig, folder: Path, ctx: Any, hooks: Any, record: list[dict[str, Any]],
               distiller: Any = None) -> Any:
    """``finetune(checkpoint, round, rounds)`` for the channel technique: ``--finetune-epochs`` epochs of the train
    loop (``train --weights``) in ``folder``; each round's epoch losses go to ``record``. ``distiller`` (a
    factory, with ``--finetune-distill``) adds the unpruned model's distillation terms."""
    from fcbench.hooks import Hooks
    from fcbench.options import TrainConfig
    from fcbench.training.checkpoint import load_checkpoint, save_checkpoint
    from fcbench.training.loop import train

    def finetune(ckpt: Any, round_: int, rounds: int) -> Any:
        start = folder / f"round-{round_}.pt"
        save_checkpoint(start, ckpt.build_model(), head_state=ckpt.head)
        head = ckpt.head or {}
        tcfg = TrainConfig(model=ckpt.model_name, model_options=dict(ckpt.model_options), weights=str(start),
                           head=head.get("name", "arcface"), head_options=dict(head.get("options") or {}),
                           data=cfg.data, data_options=dict(cfg.data_options), epochs=cfg.finetune_epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr_value, threads=cfg.threads, seed=cfg.seed + round_,
                           out=str(folder / f"finetune-{round_}"))
        how = f", distilled from the unpruned model ({cfg.finetune_distill})" if distiller else ""
        hooks.log(f"fine-tuning round {round_}/{rounds}: {cfg.finetune_epochs} epoch(s) on {cfg.data}{how}")
        hook = _DistilledFinetune(ckpt.head, hooks.log, distiller()) if distiller else _KeepHead(ckpt.head, hooks.log)
        result = train(tcfg, ctx, Hooks(on_log=hooks.log, on_progress=hooks.on_progress), loss_hook=hook)
        record.append({"round": round_, "epochs": cfg.finetune_epochs,
                       "loss": [float(r.value) for r in result.rows]})
        return load_checkpoint(result.checkpoint)

    return finetune


def _bench_target(text: str) -> tuple[Any, str]:
    """``--bench``'s backend spec and the format it is timed in (the backend's own first format), checked before
    any work: an unknown or absent backend, or a format convert cannot make here, is one error (exit 2)."""
    from fcbench.backends import get_backend, resolve
    from fcbench.conversion import exporter_class

    spec = resolve(text)
    backend = get_backend(spec.plugin)
    ok, reason = backend.variant_available(spec.variant)
    if not ok:
        raise FcbenchError(f"prune: --bench {text} cannot run here: {reason}; pick another backend "
                           "(fcbench plugins --kind backend)")
    fmt = backend.formats[0]
    ok, reason = exporter_class(fmt).available()
    if not ok:
        raise FcbenchError(f"prune: --bench {text} times {fmt} files, which convert cannot make here: {reason}")
    return spec, fmt


def _bench_before_after(cfg: PruneConfig, spec: Any, fmt: str, dense: Path, pruned: Path, hooks: Any) -> dict[str, Any]:
    """Convert ``dense`` and ``pruned`` to ``fmt`` in a temporary folder and time both *in turn* on ``spec`` in
    one bench worker (A/B, as ``fcbench compare A B`` of two files): p50 before and after, and the ratio as the
    rounds' estimate with its 95 % interval, so a slow moment of the machine slows both sides alike."""
    import shutil
    import tempfile

    from fcbench.benchmark.run import ab_run, load_artifact, run_interleaved
    from fcbench.compare.stats import compare_ab
    from fcbench.conversion import convert
    from fcbench.quantization.why import why_not_faster

    folder = Path(tempfile.mkdtemp(prefix="fcbench-prune-bench-"))
    threads = cfg.threads or os.cpu_count() or 1
    try:
        files = []
        for name, ckpt in (("before", dense), ("after", pruned)):
            (outcome,) = convert(ckpt, [fmt], folder / name)
            if outcome.status != "ok":
                raise FcbenchError(f"prune: wrote {pruned}; --bench {spec.label}: converting the {name} model to "
                                   f"{fmt}: {outcome.status}: {outcome.reason}", exit_code=1)
            files.append(str(outcome.file))
        hooks.log(f"timing the dense and the pruned {fmt} in turn on {spec.label}")
        bcfg = BenchConfig(artifacts=files, backends=[spec.label], threads=cfg.threads, warmup=5, runs=20,
                           min_seconds=0.5)
        cells = run_interleaved([load_artifact(f, bcfg) for f in files], spec, bcfg, threads)
        bad = [c for c in cells if c.status != "ok" or c.stats is None]
        if bad or len(cells) != 2:
            why = "; ".join(f"{Path(c.artifact).parent.name}: {c.status}: {c.reason}" for c in bad) or "no cells"
            raise FcbenchError(f"prune: wrote {pruned}; --bench {spec.label} failed: {why}", exit_code=1)
        b, a = cells
        before, after = b.stats.p50_ms, a.stats.p50_ms
        ab = compare_ab([ab_run(b, a)])
        # judged on the ratio the result reports (the rounds' estimate), not on the two p50s
        why_not = why_not_faster(Path(files[1]), Path(files[0]), spec.label, before * ab.ratio, before, threads)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"backend": spec.label, "format": fmt, "threads": cfg.threads, "p50_ms_before": before,
            "p50_ms_after": after, "latency_ratio": ab.ratio, "latency_ratio_ci": [ab.ci_low, ab.ci_high],
            "rounds": ab.rounds, "why_not_faster": why_not}


def run_prune(cfg: PruneConfig, ctx=None, hooks=None) -> PruneResult:
    """Prune a checkpoint with a built-in ``prune`` technique: a new checkpoint whose lineage ends with
    ``prune(<method>)``. With ``--iterative``/``--finetune-epochs`` the rounds' checkpoints live in a temporary
    folder removed at the end."""
    import shutil
    import tempfile

    from fcbench.hooks import or_default
    from fcbench.models import profile
    from fcbench.paths import input_file
    from fcbench.pruning import UNSTRUCTURED_NOTE, sparsity
    from fcbench.results.context import RunContext
    from fcbench.techniques import apply_technique
    from fcbench.techniques.base import TechniqueContext
    from fcbench.training.checkpoint import load_checkpoint

    hooks = or_default(hooks)
    cfg.validate()
    ctx = ctx or RunContext()
    src = input_file(cfg.checkpoint, "checkpoint", verb="prune", suffixes=(".pt", ".pth"),
                     hint="train writes OUT/model.pt")
    out = Path(cfg.out) if cfg.out else src.with_name(f"{src.stem}-pruned.pt")
    target = _bench_target(cfg.bench) if cfg.bench else None
    before = load_checkpoint(src).build_model()
    size = tuple(before.preprocessing.size)
    macs_before = profile(before, input_size=size)["macs"]
    data = _prune_data(cfg, before.preprocessing)
    del before
    finetuned: list[dict[str, Any]] = []
    folder = Path(tempfile.mkdtemp(prefix="fcbench-prune-")) if cfg.finetune_epochs else None
    try:
        teacher = _prune_teacher(cfg, src, folder) if folder and cfg.finetune_distill else None
        context = TechniqueContext(threads=cfg.threads, seed=cfg.seed, data=data,
                                   progress=lambda msg, frac: hooks.log(msg),
                                   finetune=_finetuner(cfg, folder, ctx, hooks, finetuned, teacher)
                                   if folder else None)
        result = apply_technique(src, cfg.method, cfg.technique_options(), out, context=context)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    after = load_checkpoint(result.output).build_model()  # measured on what was written
    macs_after = profile(after, input_size=size)["macs"]  # at the input's size, as macs_before
    unstructured = cfg.method == "l1-unstructured"
    result.ctx = ctx
    pruned = PruneResult(result, list(size), int(macs_before), int(macs_after),
                         sparsity(after) if unstructured else None, UNSTRUCTURED_NOTE if unstructured else "",
                         finetune=finetuned)
    if target is not None:
        try:
            pruned.bench = _bench_before_after(cfg, *target, src, result.output, hooks)
        except FcbenchError:
            hooks.rows(pruned.to_rows())  # the pruned checkpoint is written: its row is kept
            raise
    hooks.rows(pruned.to_rows())
    return pruned


def run_bench(cfg: BenchConfig, ctx=None, hooks=None):
    from dataclasses import replace

    from fcbench.artifact import artifacts_only
    from fcbench.benchmark.run import bench
    from fcbench.hooks import or_default

    hooks = or_default(hooks)
    cfg.validate()
    for a in cfg.artifacts:
        _artifact_file(a, "bench")
    if cfg.worker_logs and cfg.isolation == "subprocess" and not cfg.pipeline:
        from fcbench.paths import output_dir

        output_dir(cfg.worker_logs, "bench: --worker-logs")
    cfg = replace(cfg, artifacts=artifacts_only(cfg.artifacts, hooks.log))
    _some_cell_can_run(cfg)
    result = bench(cfg, ctx, hooks)
    if all(c.status == "skipped" for c in result.cells):  # skipped for a reason only running finds (precision)
        raise FcbenchError("bench: nothing ran, every cell was skipped: " + distinct_reasons(
            f"{Path(c.artifact).name} on {c.backend}: {c.reason}" for c in result.cells)
            + "; pick a --backend that loads these artifacts here (fcbench plugins --kind backend)")
    return result


def _some_cell_can_run(cfg: BenchConfig) -> None:
    """Before anything runs: when no artifact x backend pair of the matrix can run here, say why (exit 2)
    instead of a table of skipped cells."""
    from fcbench.backends import expand, get_backend, why_not
    from fcbench.benchmark.run import load_artifact

    if not cfg.artifacts:
        raise FcbenchError("bench: no artifact left to bench (manifests and companion files are read with their "
                           "artifact); pass the artifact files, e.g. out/model.onnx")
    specs = expand(cfg.backends)
    reasons = []
    for a in cfg.artifacts:
        path, manifest = load_artifact(a, cfg)
        for spec in specs:
            if "all" in cfg.backends and manifest.format not in get_backend(spec.plugin).formats:
                reasons.append(f"{path.name}: no installed backend loads {manifest.format}")
                continue
            why = why_not(spec, path, manifest)[1]
            if not why:
                return
            reasons.append(f"{path.name} on {spec.label}: {why}")
    raise FcbenchError("bench: nothing to run, every cell would be skipped: " + distinct_reasons(reasons)
                       + "; pick a --backend that loads these artifacts here (fcbench plugins --kind backend)")


def _artifact_file(path: str, verb: str) -> Path:
    """An artifact path a verb reads: one line for a missing file, a directory or an empty file."""
    from fcbench.formats import artifact_formats
    from fcbench.paths import input_file

    suffixes = tuple(s for f in artifact_formats() for s in f.suffixes)
    return input_file(path, "artifact", verb=verb, suffixes=suffixes,
                      hint="convert writes artifacts beside the checkpoint, or in --out")


def run_inspect(cfg: InspectConfig, ctx=None, hooks=None) -> InspectResult:
    from fcbench.backends import expand, why_not
    from fcbench.benchmark.placement import placement_summary, precision_summary
    from fcbench.benchmark.run import load_artifact
    from fcbench.hooks import or_default

    hooks = or_default(hooks)
    cfg.validate()
    _artifact_file(cfg.artifact, "inspect")
    path, manifest = load_artifact(cfg.artifact, BenchConfig(artifacts=[cfg.artifact],
                                                             infer_manifest=cfg.infer_manifest),
                                   lambda p, a: hooks.log(f"{p.name}: no manifest; assumed " + "; ".join(a)))
    (spec,) = expand([cfg.backend])
    plugin, why = why_not(spec, path, manifest)
    if why:
        raise FcbenchError(f"inspect: {spec.label} cannot run {path.name}: {why}")
    session = plugin.load(path, manifest, spec.variant, cfg.threads, dict(spec.options))
    try:
        rows = session.placement()
    finally:
        session.close()
    return InspectResult(str(path), spec.label, rows, placement_summary(rows), precision_summary(rows))


def run_results(cfg: ResultsConfig, ctx=None, hooks=None) -> ResultsResult:
    from fcbench.results.store import DEFAULT_STORE, Store, is_url

    path = cfg.store if is_url(cfg.store) else Path(cfg.store) if cfg.store else DEFAULT_STORE
    if isinstance(path, Path) and not path.exists():
        raise FcbenchError(f"results store {path} does not exist yet; run a verb first or pass --store")
    if isinstance(path, Path) and path.is_dir():
        raise FcbenchError(f"results store {path} is a directory; pass --store the .sqlite file in it, e.g. "
                           f"{path / DEFAULT_STORE.name}")
    with Store(path) as s:
        path = s.path  # a URL without its password, for the title
        last = bool(cfg.run) and (cfg.run == "last" or cfg.run.startswith("last~"))
        run = s.resolve_run(cfg.run, "results: --run") if last and s.run_ids() else cfg.run
        metrics = [m.strip() for m in (cfg.metric or "").split(",") if m.strip()]
        rows = s.query(run_id=run, kind=cfg.kind, model=cfg.model,
                       metric=metrics[0] if len(metrics) == 1 else None, limit=None if len(metrics) > 1 else cfg.limit)
        if len(metrics) > 1:
            rows = [r for r in rows if r["metric"] in metrics]
            rows = rows[-cfg.limit:] if cfg.limit else rows
        # nothing matched what was asked: say why (exit 2); a recipe's own run with no rows yet is no error
        own_run = ctx is not None and bool(getattr(ctx, "recipe", "")) and run == getattr(ctx, "run_id", None)
        if not rows and not own_run:
            raise FcbenchError(s.why_empty({"run_id": run, "kind": cfg.kind, "model": cfg.model,
                                            "metric": cfg.metric}))
    return ResultsResult(str(path), rows, title=cfg.title or f"results in {path}", pivot=bool(cfg.pivot))


def run_recipe_verb(cfg: RunConfig, ctx=None, hooks=None):
    from fcbench.recipes import load_recipe, run_recipe

    rec = load_recipe(cfg.recipe, cfg.set)
    if cfg.check:
        from fcbench.hooks import or_default

        or_default(hooks).log(f"{cfg.recipe}: {len(rec.steps)} steps, valid")
        return None
    return run_recipe(rec, hooks=hooks, ctx=ctx)


_R = "fcbench.render.views"

PLUGINS = Verb("plugins", PluginsConfig, run_plugins, "List installed plugins (built-in and third-party alike) "
               "and whether each can be used.", f"{_R}:plugins", ("table", "json"), stores=False, in_recipes=False)
PROFILE = Verb("profile", ProfileConfig, run_profile, "Params, MACs and FLOPs (= 2 x MACs) of a model at an input "
               "size, and the options it was built with. Every model's task, input size and options with their "
               "defaults: fcbench plugins --kind model --verbose.", f"{_R}:profile", ("table", "json"), stores=False)
TRAIN = Verb("train", TrainConfig, run_train, "Train a model (single process, or DDP under torchrun). Writes "
             "OUT/model.pt + manifest.", f"{_R}:train", ("table",))
DISTILL = Verb("distill", DistillConfig, run_distill, "Train a student with a frozen teacher (knowledge "
               "distillation): train's options plus --teacher, --student and --method. Writes OUT/model.pt whose "
               "lineage ends with distill(<method>), naming the teacher's sha256.", f"{_R}:train", ("table",))
EVAL = Verb("eval", EvalConfig, run_eval, "Measure quality on a dataset, in PyTorch or through runtimes; rows go to "
            "the results store. One artifact and one backend: every metric. Several (artifacts x backends): a "
            "matrix of the headline metric beside the float parent's, one cell each; a cell that fails says why "
            "and the matrix goes on.", f"{_R}:eval_result", TABLE_FORMATS)
CONVERT = Verb("convert", ConvertConfig, run_convert, "Export a checkpoint to edge formats, each with a manifest and "
               "a parity check against PyTorch.", f"{_R}:convert", ("table", "json"), stores=False)
BENCH = Verb("bench", BenchConfig, run_bench, "Time artifacts through backends (single-stream); one row per cell, "
             "streamed into the store.", f"{_R}:bench", TABLE_FORMATS)
COMPRESS = Verb("compress", CompressConfig, run_compress, "Apply a compression technique plugin to a checkpoint; "
                "the new checkpoint's lineage ends with its step.", f"{_R}:compress", ("table", "json"))
PRUNE = Verb("prune", PruneConfig, run_prune, "Prune a checkpoint: channel (structured, Torch-Pruning's dependency "
             "graph; channels removed; importance l1, l2, bn-scale or taylor; iterative with fine-tuning) or "
             "l1-unstructured (weights zeroed). Shows params and MACs before and after, and with --bench the "
             "measured latency; the new checkpoint's lineage ends with prune(<method>).", f"{_R}:prune",
             ("table", "json"))
QUANTIZE = Verb("quantize", QuantizeConfig, "fcbench.quantization:quantize", "Quantize a checkpoint or float "
                "artifact with a runtime's own tools (ORT, NNCF, LiteRT, PT2E): an artifact its runtime runs, with "
                "its lineage ending in quantize(<method>) and its output cosine to the float parent.",
                f"{_R}:quantize", ("table", "json"))
OPTIMIZE = Verb("optimize", OptimizeConfig, "fcbench.optimize:optimize", "Search compression candidates for "
                "target backends (precisions, every quantization method the backend runs, pruned models), measure "
                "each one's latency on the backend and accuracy through it, print the Pareto table, and keep the "
                "fastest within --max-drop; when none fits, say which came closest.", f"{_R}:optimize",
                ("table", "json"))
DEVICES = Verb("devices", DevicesConfig, "fcbench.devices.check:run_devices", "The device inventory (./devices/"
               "NAME.toml and the examples fcbench ships): 'list' shows them; 'check NAME' connects and reports arch, "
               "OS, cores (big and little), governor, temperature, battery, and which backends can run there and why "
               "not.", f"{_R}:devices", ("table", "json"), stores=False, in_recipes=False)
INSPECT = Verb("inspect", InspectConfig, run_inspect, "Where each node of a model runs on a backend, and in which "
               "precision, as the runtime reports it.", f"{_R}:inspect", ("table", "json"), stores=False)
RESULTS = Verb("results", ResultsConfig, run_results, "Show rows of the results store.", f"{_R}:results",
               TABLE_FORMATS, stores=False)
COMPARE = Verb("compare", CompareConfig, "fcbench.compare:run_compare", "Compare NEW results with BASE (CSV/JSON "
               "exports, stores or run ids): each matched row's latency (ratio of medians, a confidence interval "
               "that counts run-to-run noise, a rank test) and quality (points) gets a verdict; exit 1 on a "
               "regression. Rows only in one side or from another machine are listed apart.", f"{_R}:compare",
               ("table", "markdown", "json"), stores=False)
REPORT = Verb("report", ReportConfig, "fcbench.report:run_report", "Write one self-contained HTML page (opens with "
              "no network) of the store's rows: per device latency vs accuracy with the Pareto front and each "
              "point's lineage, latency per backend (p10/p50/p90), size vs accuracy, ROC curves, placement and "
              "precision of every cell, and compare verdicts between two runs.", f"{_R}:report_page",
              ("table", "json"), stores=False)
RUN = Verb("run", RunConfig, run_recipe_verb, "Run a recipe: a sequence of verbs with shared options.",
           f"{_R}:recipe", ("table",), in_recipes=False)
