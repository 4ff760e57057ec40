"""The optimize verb: search compression candidates for a target backend, measure each one's latency on
that backend and its accuracy through that runtime, and keep the fastest within an accuracy budget.

Candidates, for each ``--backend``: the float model converted to the backend's format at each
inference precision the backend can be asked for (OpenVINO: f32, bf16, f16 where the CPU has them)
and at the runtime's default (for ONNX Runtime and a model with PReLU, also exported with
``onnx.prelu=relu-bn``, the same arithmetic in ops ORT keeps in its NCHWc layout); every installed
quantization method whose runtime is that backend (``ort-static``, ``openvino-ptq``, ...), calibrated
on ``--calib-data``; a method that can keep layers in float is tried again with its most sensitive
layers kept when it misses the budget; and, with ``--prune R1,R2``, channel-pruned checkpoints
(fine-tuned for ``--finetune-epochs`` on ``--train-data``, as distillation students of the unpruned
model with ``--finetune-distill``) going through the same float and quantized candidates. Every
candidate is benched with ``bench``'s timer (p50, with an approximate 95 % interval of the median) and
evaluated with ``eval``'s metrics through its runtime; its rows go to the store with its lineage. The
verb reports the Pareto frontier (no candidate both faster and more accurate), the choice (the fastest
within ``--max-drop`` points of the float parent in PyTorch) and, when none fits, the closest and by
how much. ``--budget-minutes`` bounds the search: candidates not started in time are listed as not
tried.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcbench.errors import FcbenchError, first_line

if TYPE_CHECKING:
    from fcbench.options import OptimizeConfig


@dataclass
class Candidate:
    name: str  # e.g. "openvino default", "ort-static", "prune 0.5 + openvino-ptq"
    backend: str
    artifact: str = ""
    precision: str | None = None
    lineage: str = ""
    status: str = "ok"  # ok | failed | not tried
    reason: str = ""
    p50_ms: float | None = None
    ci_ms: float | None = None  # half-width of an approximate 95 % interval of the median
    metric: float | None = None
    drop: float | None = None  # points below the float parent in PyTorch
    speedup_vs_eager: float | None = None
    seconds: float = 0.0  # time to make and measure it
    pareto: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class OptimizeResult:
    checkpoint: str
    metric: str
    max_drop: float
    float_metric: float
    eager_p50_ms: float
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    closest: Candidate | None = None
    fastest_uncompressed: Candidate | None = None
    seconds: float = 0.0
    threads: int = 1
    cpu: str = ""
    rows: list = field(default_factory=list, repr=False)

    def __fspath__(self) -> str:
        if self.chosen is None:
            raise FcbenchError("optimize: no candidate met the budget, so there is no artifact to use")
        return self.chosen.artifact

    def to_rows(self) -> list:
        return list(self.rows)

    def failures(self) -> list[str]:
        if self.chosen is not None:
            return []
        if self.closest is None:
            return ["optimize: no candidate could be measured (see the table for each one's reason)"]
        c = self.closest
        return [f"optimize: no candidate within --max-drop {self.max_drop:g} points; closest: {c.name} on "
                f"{c.backend}, {c.drop:.2f} points below the float parent ({c.drop - self.max_drop:.2f} over)"]

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "metric": self.metric, "max_drop": self.max_drop,
                "float_metric": self.float_metric, "eager_p50_ms": self.eager_p50_ms, "threads": self.threads,
                "cpu": self.cpu, "seconds": self.seconds,
                "chosen": self.chosen.to_dict() if self.chosen else None,
                "closest": self.closest.to_dict() if self.closest else None,
                "fastest_uncompressed": self.fastest_uncompressed.to_dict() if self.fastest_uncompressed else None,
                "candidates": [c.to_dict() for c in self.candidates]}


def median_ci(stats) -> float:
    """Half-width of an approximate 95 % interval of the median (1.96 x 1.2533 x std / sqrt(n))."""
    return 1.96 * 1.2533 * stats.std_ms / math.sqrt(max(stats.runs, 1))


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """The measured candidates no other one beats on both latency and accuracy, fastest first."""
    from fcbench.pareto import pareto_front

    return pareto_front([c for c in cands if c.status == "ok"], lambda c: c.p50_ms, lambda c: c.metric)


def _has_prelu(ckpt: Path) -> bool:
    """Whether the checkpoint's model has a PReLU (the ONNX relu-bn export changes nothing otherwise)."""
    import torch

    from fcbench.training.checkpoint import load_checkpoint

    return any(isinstance(m, torch.nn.PReLU) for m in load_checkpoint(ckpt).build_model().modules())


def _slug(prefix: str) -> str:
    """A candidate family's folder: "" -> "base", "prune 0.5 + " -> "prune-0.5"."""
    return prefix.replace("+", "").strip().replace(" ", "-") or "base"


def choose(cands: list[Candidate], max_drop: float) -> tuple[Candidate | None, Candidate | None]:
    """(the fastest candidate within ``max_drop`` points, None) or, when none fits, (None, the one with
    the smallest drop); marks the Pareto frontier."""
    for c in pareto(cands):
        c.pareto = True
    ok = [c for c in cands if c.status == "ok" and c.drop is not None and c.p50_ms is not None]
    from fcbench.evaluation import over_budget

    fits = [c for c in ok if not over_budget(c.drop, max_drop)]
    if fits:
        return min(fits, key=lambda c: c.p50_ms), None
    return None, (min(ok, key=lambda c: (c.drop, c.p50_ms)) if ok else None)


class _Search:
    def __init__(self, cfg: OptimizeConfig, ctx, hooks) -> None:
        import os

        from fcbench.options import EvalConfig

        self.cfg, self.ctx, self.hooks = cfg, ctx, hooks
        self.threads = cfg.threads or os.cpu_count() or 1
        self.start = time.perf_counter()
        self.out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).with_name(Path(cfg.checkpoint).stem + "-optimize")
        self.eval_cfg = EvalConfig(data=cfg.data, data_options=dict(cfg.data_options), threads=self.threads,
                                   nfolds=cfg.nfolds)
        self.rows: list = []
        self.candidates: list[Candidate] = []

    def over_budget(self) -> bool:
        return (time.perf_counter() - self.start) / 60.0 > self.cfg.budget_minutes

    # --- measuring -------------------------------------------------------------------------------

    def bench(self, path: Path, label: str, precision: str | None):
        from fcbench.benchmark.run import bench
        from fcbench.options import BenchConfig

        res = bench(BenchConfig(artifacts=[str(path)], backends=[label], threads=self.threads, warmup=5, runs=20,
                                min_seconds=self.cfg.bench_seconds, precision=precision), self.ctx)
        (cell,) = list(res)
        if cell.status != "ok" or cell.stats is None:
            raise FcbenchError(f"bench {cell.status}: {cell.reason}", exit_code=1)
        for row in res.rows:
            row.extra["optimize"] = True
        self.rows += res.rows
        self.hooks.rows(res.rows)
        return cell.stats

    def quality(self, path: Path, label: str, precision: str | None) -> float:
        """The headline metric of the artifact through its runtime (at ``precision``), stored as a row."""
        from dataclasses import replace

        from fcbench.artifact import read_manifest
        from fcbench.backends import expand, get_backend
        from fcbench.data import open_dataset
        from fcbench.evaluation import _check_input_size, _metrics, _pick_protocol, _protocol_name, _RuntimeModel

        manifest = read_manifest(path)
        pre = replace(manifest.preprocessing, layout="NCHW")
        dataset = open_dataset(self.cfg.data, preprocessing=pre, **self.cfg.data_options)
        from fcbench.artifact import task_of

        task = task_of(manifest.output_kind)
        protocol = _pick_protocol(self.eval_cfg, dataset, task, manifest.model.get("name", ""))
        _check_input_size(dataset, manifest, path)
        rt = _RuntimeModel(path, manifest, label, self.threads)
        if precision:
            (spec,) = expand([label])
            backend = get_backend(spec.plugin)
            rt.session.close()
            rt.session = backend.load(path, manifest, spec.variant, self.threads,
                                      {**spec.options, **backend.precision_options(precision)})
        try:
            values = dict(_metrics(rt, dataset, protocol, self.eval_cfg).to_rows())
        finally:
            rt.close()
        value = float(values[self.metric])
        row = self.ctx.row("quality", model=manifest.model.get("name", ""), lineage=manifest.lineage_summary(),
                           artifact=str(path), artifact_sha256=manifest.sha256, format=manifest.format,
                           backend=rt.label, variant=rt.variant, threads=self.threads, batch=self.eval_cfg.batch_size,
                           metric=self.metric, value=value, dataset=str(dataset.source),
                           protocol=_protocol_name(protocol, False),
                           extra={"optimize": True, **({"precision": precision} if precision else {})})
        self.rows.append(row)
        self.hooks.rows([row])
        return value

    def measure(self, cand: Candidate, path: Path) -> Candidate:
        from fcbench.artifact import read_manifest

        t0 = time.perf_counter()
        try:
            stats = self.bench(path, cand.backend, cand.precision)
            cand.p50_ms, cand.ci_ms = stats.p50_ms, median_ci(stats)
            cand.metric = self.quality(path, cand.backend, cand.precision)
            cand.drop = 100.0 * (self.float_metric - cand.metric)
            cand.speedup_vs_eager = self.eager_p50 / cand.p50_ms
            cand.artifact, cand.lineage = str(path), read_manifest(path).lineage_summary()
        except FcbenchError as exc:
            if exc.exit_code == 2:
                raise
            cand.status, cand.reason = "failed", first_line(exc)
        except Exception as exc:  # a runtime's own failure on one candidate: recorded, the search goes on
            cand.status, cand.reason = "failed", f"{type(exc).__name__}: {first_line(exc)[:200]}"
        cand.seconds += time.perf_counter() - t0
        done = f"{cand.p50_ms:.3f} ms, {self.metric} {cand.metric:.4f}" if cand.status == "ok" else cand.reason
        self.hooks.log(f"optimize: {cand.name} on {cand.backend}: {done}")
        self.candidates.append(cand)
        return cand

    def skip(self, name: str, label: str) -> None:
        self.candidates.append(Candidate(name, label, status="not tried", reason="--budget-minutes reached"))

    # --- making candidates ------------------------------------------------------------------------

    def float_candidates(self, ckpt: Path, label: str, prefix: str, all_precisions: bool) -> None:
        from fcbench.backends import expand, get_backend
        from fcbench.conversion import convert

        (spec,) = expand([label])
        backend = get_backend(spec.plugin)
        fmt = self.format_for(backend, label)
        # export variants: the plain one, and for ONNX Runtime a model with PReLU also with PReLU as Relu +
        # BatchNormalization + Add (--opt onnx.prelu=relu-bn: the same arithmetic, kept in ORT's NCHWc layout)
        variants: list[tuple[str, dict, str]] = [(fmt, {}, "float")]
        if fmt == "onnx" and spec.plugin == "onnxruntime" and _has_prelu(ckpt):
            variants.append(("onnx(prelu=relu-bn)", {"onnx": {"prelu": "relu-bn"}}, "float-relu-bn"))
        precisions: list[str | None] = [None, *(backend.precisions(spec.variant) if all_precisions else ())]
        for shown, options, sub in variants:
            name = f"{prefix}{shown} float"
            if self.over_budget():
                self.skip(name, label)
                continue
            t0 = time.perf_counter()
            try:
                (outcome,) = convert(ckpt, [fmt], self.out / _slug(prefix) / sub, options=options)
            except FcbenchError as exc:
                self.candidates.append(Candidate(name, label, status="failed", reason=first_line(exc)))
                continue
            if outcome.status != "ok":
                self.candidates.append(Candidate(name, label, status="failed", reason=outcome.reason))
                continue
            made = time.perf_counter() - t0
            for p in precisions:
                if self.over_budget():
                    self.skip(f"{name} {p or 'default'}", label)
                    continue
                cand = Candidate(f"{name} {p or 'default'}", label, precision=p, seconds=made)
                self.measure(cand, outcome.file)

    def quant_candidates(self, ckpt: Path, label: str, prefix: str) -> None:
        from fcbench.backends import expand
        from fcbench.evaluation import over_budget
        from fcbench.options import QuantizeConfig
        from fcbench.quantization import get_method, method_names, quantize

        (spec,) = expand([label])
        for name in method_names():
            method = get_method(name)
            (mspec,) = expand([method.backend])
            if mspec.plugin != spec.plugin or (self.cfg.methods and name not in self.cfg.methods):
                continue
            ok, _ = method.available() if callable(getattr(method, "available", None)) else (True, "")
            if not ok:
                continue
            tries = [0] + ([self.cfg.keep_sensitive] if method.keeps_float and self.cfg.keep_sensitive else [])
            for keep in tries:
                cname = f"{prefix}{name}" + (f" keep-sensitive {keep}" if keep else "")
                if self.over_budget():
                    self.skip(cname, label)
                    continue
                t0 = time.perf_counter()
                target = self.out / _slug(prefix) / "quant" / f"{name}{'-k' + str(keep) if keep else ''}"
                target.mkdir(parents=True, exist_ok=True)
                from fcbench import formats

                out_file = target / (ckpt.stem + formats.get(method.format).suffix)
                try:
                    res = quantize(QuantizeConfig(
                        input=str(ckpt), method=name, calib_data=self.cfg.calib_data or self.cfg.data,
                        calib_options=dict(self.cfg.calib_options if self.cfg.calib_data else self.cfg.data_options),
                        calib_size=self.cfg.calib_size, keep_sensitive=keep, out=str(out_file),
                        threads=self.threads, seed=self.cfg.seed), self.ctx, self.hooks)
                except FcbenchError as exc:
                    self.candidates.append(Candidate(cname, label, status="failed", reason=first_line(exc),
                                                     seconds=time.perf_counter() - t0))
                    continue
                cand = self.measure(Candidate(cname, label, seconds=time.perf_counter() - t0), Path(res.output))
                if cand.status == "ok" and cand.drop is not None and not over_budget(cand.drop, self.cfg.max_drop):
                    break  # within budget: keeping layers in float would only make it slower

    def format_for(self, backend, label: str) -> str:
        from fcbench import formats

        made = [f.name for f in formats.exportable()]
        for fmt in backend.formats:
            if fmt in made:
                return fmt
        raise FcbenchError(f"optimize: --backend {label} loads {', '.join(backend.formats)}, none of which "
                           "fcbench converts to")

    def pruned(self, ratio: float) -> Path:
        """The checkpoint pruned to ``ratio`` (channel, ``--round-to``), fine-tuned by prune's own loop when
        ``--finetune-epochs`` is given: the pruned model keeps its class centres (the head) and trains on."""
        from fcbench.options import PruneConfig
        from fcbench.verbs.builtin import run_prune

        folder = self.out / f"prune-{ratio:g}"
        folder.mkdir(parents=True, exist_ok=True)
        tune = {}
        if self.cfg.finetune_epochs:
            tune = {"finetune_epochs": self.cfg.finetune_epochs, "lr": self.cfg.finetune_lr,
                    "data": self.cfg.train_data, "data_options": dict(self.cfg.train_options),
                    "finetune_distill": self.cfg.finetune_distill,
                    "finetune_distill_options": dict(self.cfg.finetune_distill_options)}
        res = run_prune(PruneConfig(checkpoint=self.cfg.checkpoint, method="channel", ratio=ratio,
                                    round_to=self.cfg.round_to, out=str(folder / "pruned.pt"), threads=self.threads,
                                    seed=self.cfg.seed, **tune), self.ctx, self.hooks)
        return Path(res.output)


def optimize(cfg: OptimizeConfig, ctx=None, hooks=None) -> OptimizeResult:
    """Search, measure, choose: see the module doc."""
    from fcbench.benchmark.run import bench
    from fcbench.evaluation import HEADLINE, evaluate
    from fcbench.hooks import or_default
    from fcbench.options import BenchConfig, EvalConfig
    from fcbench.paths import input_file
    from fcbench.quantization.why import cpu_flags
    from fcbench.results.context import RunContext

    hooks = or_default(hooks)
    ctx = ctx or RunContext()
    cfg.validate()
    ckpt = input_file(cfg.checkpoint, "checkpoint", verb="optimize", suffixes=(".pt",),
                      hint="train writes OUT/model.pt")
    s = _Search(cfg, ctx, hooks)
    s.out.mkdir(parents=True, exist_ok=True)
    # the float parent in PyTorch: the accuracy every drop is measured from, and the eager latency
    ref = evaluate(EvalConfig(checkpoint=str(ckpt), data=cfg.data, data_options=dict(cfg.data_options),
                              threads=s.threads, nfolds=cfg.nfolds), ctx)
    metric = cfg.metric or HEADLINE[ref.protocol]
    values = dict(ref.metrics)
    if metric not in values:
        raise FcbenchError(f"optimize: --metric {metric} is not one eval gives on {cfg.data} "
                           f"({', '.join(values)})")
    s.metric, s.float_metric = metric, float(values[metric])
    s.rows += ref.rows
    hooks.rows(ref.rows)
    eager = bench(BenchConfig(artifacts=[str(ckpt)], backends=["pytorch"], threads=s.threads, warmup=5, runs=20,
                              min_seconds=cfg.bench_seconds), ctx)
    (cell,) = list(eager)
    if cell.status != "ok" or cell.stats is None:
        raise FcbenchError(f"optimize: eager PyTorch could not run {ckpt.name}: {cell.reason}", exit_code=1)
    s.eager_p50 = cell.stats.p50_ms
    s.rows += eager.rows
    hooks.rows(eager.rows)
    for label in cfg.backends:
        s.float_candidates(ckpt, label, "", all_precisions=True)
        s.quant_candidates(ckpt, label, "")
    for ratio in cfg.prune:
        name = f"prune {ratio:g}"
        if s.over_budget():
            s.skip(name, ", ".join(cfg.backends))
            continue
        try:
            pruned = s.pruned(ratio)
        except FcbenchError as exc:
            if exc.exit_code == 2:
                raise
            s.candidates.append(Candidate(name, ", ".join(cfg.backends), status="failed", reason=first_line(exc)))
            continue
        for label in cfg.backends:
            s.float_candidates(pruned, label, f"{name} + ", all_precisions=False)
            s.quant_candidates(pruned, label, f"{name} + ")
    result = OptimizeResult(str(ckpt), metric, cfg.max_drop, s.float_metric, s.eager_p50, s.candidates,
                            threads=s.threads, cpu=cpu_flags()[0], rows=s.rows)
    result.chosen, result.closest = choose(s.candidates, cfg.max_drop)
    ok = [c for c in s.candidates if c.status == "ok" and c.drop is not None]
    uncompressed = [c for c in ok if c.precision is None and c.name.endswith(" float default")
                    and not c.name.startswith("prune")]
    result.fastest_uncompressed = min(uncompressed, key=lambda c: c.p50_ms) if uncompressed else None
    result.seconds = time.perf_counter() - s.start
    return result
