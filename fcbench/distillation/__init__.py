"""``distill``: train a student with a frozen teacher's help, through ``train``'s own loop.

:func:`distill` resolves the teacher (a checkpoint, a plain state_dict with its architecture, or a
model name: the newest trained checkpoint of it on the same data in the results store, else a teacher
trained first into ``OUT/teacher``), checks that teacher, student and method(s) fit together before
anything is trained or written, and runs :func:`fcbench.training.loop.train` for the student with a
:class:`Distiller` as its loss hook. The student's checkpoint is a normal one whose lineage ends with
``distill(<method>)`` naming the teacher's sha256 and file, every method's options (weights included)
and the projection, if any, that mapped the student's embedding to the teacher's size during training
(it is not part of the saved student).

The methods are technique plugins with ``verb = "distill"`` (:mod:`fcbench.distillation.methods`); their
loss formulas are in :mod:`fcbench.distillation.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcbench.errors import FcbenchError, suggest
from fcbench.hooks import Hooks, or_default
from fcbench.options import DistillConfig
from fcbench.results.context import RunContext
from fcbench.training.loop import TrainResult

__all__ = ["DistillResult", "Distiller", "Plan", "Teacher", "distill", "parse_methods"]


@dataclass
class Method:
    name: str
    plugin: Any
    options: Any


def parse_methods(cfg: DistillConfig) -> list[Method]:
    """``cfg.method`` (``a+b``) and ``cfg.method_options`` (``key=v`` or ``method.key=v``) as methods with
    their parsed options; unknown names, keys and bad values raise one FcbenchError."""
    from fcbench.techniques import get_technique, names, option_fields, parse_options

    known = names("distill")
    names = [n.strip() for n in str(cfg.method).split("+")]
    if not all(names):
        raise FcbenchError(f"distill: --method '{cfg.method}' has an empty name; join methods with '+', "
                           "e.g. embedding-mse+adaptive-margin")
    for n in names:
        if n not in known:
            raise FcbenchError(f"distill: unknown method '{n}'{suggest(n, known)}; methods: {', '.join(known)}")
    if len(set(names)) < len(names):
        raise FcbenchError(f"distill: --method '{cfg.method}' names a method twice")
    plugins = {n: get_technique(n) for n in names}
    raw: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in cfg.method_options.items():
        owner, dot, sub = str(key).rpartition(".")
        if dot:
            if owner not in raw:
                raise FcbenchError(f"distill: --method-opt {key}: '{owner}' is not one of this run's methods "
                                   f"({', '.join(names)})")
            raw[owner][sub] = value
            continue
        owners = [n for n in names if key in option_fields(plugins[n])]
        if len(names) == 1:
            owners = names
        if len(owners) != 1:
            which = f"several methods take '{key}' ({', '.join(owners)})" if owners else f"no method takes '{key}'"
            raise FcbenchError(f"distill: --method-opt {key}: {which}; name it as METHOD.{key}, e.g. "
                               f"{(owners or names)[0]}.{key}={value}")
        raw[owners[0]][key] = value
    flags = {"no_copy_centres": ("copy_centres", False), "fixed_margin": ("fixed_margin", True),
             "train_centres": ("train_centres", True)}
    for flag, (key, value) in flags.items():
        if getattr(cfg, flag):
            if "adaptive-margin" not in raw:
                raise FcbenchError(f"distill: --{flag.replace('_', '-')} is an adaptive-margin option; this run's "
                                   f"method is {cfg.method}")
            raw["adaptive-margin"][key] = value
    return [Method(n, plugins[n], parse_options(plugins[n], raw[n])) for n in names]


@dataclass
class Plan:
    """What the checks before training know about the two models."""

    teacher_task: str
    student_task: str
    teacher_dim: int
    student_dim: int
    teacher_head: dict[str, Any] | None  # the teacher's training head as its checkpoint keeps it (spec + weights)
    student_head: str  # train's --head (face students)


@dataclass
class Teacher:
    """The frozen teacher: where it came from and its model (and training head, when it has one)."""

    path: Path
    sha256: str
    model: nn.Module
    head: dict[str, Any] | None
    how: str  # "checkpoint", "state_dict", "store" (found by name) or "trained" (trained by this run)
    lineage: str = ""


@dataclass
class DistillResult(TrainResult):
    """``train``'s result for the student, plus the teacher and the methods."""

    teacher: Path | None = None
    teacher_sha256: str = ""
    teacher_how: str = ""
    teacher_result: TrainResult | None = field(default=None, repr=False)  # when this run trained the teacher
    method: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # per method, as the lineage records them

    def to_rows(self) -> list:
        return [*(self.teacher_result.to_rows() if self.teacher_result else []), *self.rows]


_HEADS_WITH_CENTRES = ("arcface", "cosface")


def _check_plan(methods: list[Method], plan: Plan, teacher_label: str) -> None:
    if plan.teacher_task != plan.student_task:
        raise FcbenchError(f"distill: the teacher {teacher_label} is a {plan.teacher_task} model and the student a "
                           f"{plan.student_task} model; both must be face embedders or both classifiers")
    for m in methods:
        if m.plugin.task != plan.student_task:
            kind = {"embedding": "face embedders", "classification": "classifiers"}[m.plugin.task]
            other = "kd" if plan.student_task == "classification" else "embedding-mse (or another face method)"
            raise FcbenchError(f"distill: method '{m.name}' distils {kind}; this teacher and student are "
                               f"{plan.student_task} models: use {other}")
        if m.plugin.teacher_head and plan.teacher_head is None:
            raise FcbenchError(
                f"distill: method '{m.name}' needs the teacher's training head (its ArcFace class centres), which "
                f"{teacher_label} does not hold; fcbench checkpoints from train keep it (an insightface backbone.pth "
                "does not): pass a teacher trained by fcbench, or another method")
        if m.plugin.teacher_head and plan.teacher_head.get("name") not in _HEADS_WITH_CENTRES:
            raise FcbenchError(f"distill: method '{m.name}' needs a teacher trained with a margin head (arcface or "
                               f"cosface); {teacher_label} was trained with '{plan.teacher_head.get('name')}'")
        if m.plugin.student_head and plan.student_head not in _HEADS_WITH_CENTRES:
            raise FcbenchError(f"distill: method '{m.name}' needs the student trained with a margin head; pass "
                               f"--head arcface (got {plan.student_head})")
        m.plugin.check(m.options, plan)


def _head_module(spec: dict[str, Any]) -> nn.Module:
    from fcbench.models import create_head

    head = create_head(spec["name"], spec["embedding_size"], spec["num_classes"], **dict(spec.get("options") or {}))
    head.load_state_dict(spec["state_dict"])
    return head


def _teacher_from_file(cfg: DistillConfig, path: Path, how: str) -> Teacher:
    from fcbench.artifact import sha256_file
    from fcbench.models import create
    from fcbench.training.checkpoint import load_checkpoint

    try:
        if cfg.teacher_model:
            model = create(cfg.teacher_model, weights=path, **cfg.teacher_options)
            return Teacher(path, sha256_file(path), model.eval(), None, "state_dict")
        ckpt = load_checkpoint(path)
        model = ckpt.build_model()
    except FcbenchError as exc:
        hint = "" if cfg.teacher_model else " (a plain state_dict also needs --teacher-model, e.g. r100)"
        raise FcbenchError(f"distill: --teacher {path}: {exc}{hint}") from exc
    if cfg.teacher_options:
        raise FcbenchError(f"distill: --teacher-opt is for a teacher given by name or with --teacher-model; "
                           f"{path} records its own options")
    lineage = ckpt.manifest.lineage_summary() if ckpt.manifest else ""
    return Teacher(path, sha256_file(path), model, ckpt.head, how, lineage)


def _find_trained(store: str, name: str, options: dict[str, Any], source: str) -> tuple[Path | None, str]:
    """The newest checkpoint in ``store`` that ``train`` wrote for model ``name`` on data ``source`` whose
    options include ``options``; (None, why not) when there is none."""
    from fcbench.results.store import Store, is_url
    from fcbench.training.checkpoint import load_checkpoint

    if not store or not (is_url(store) or Path(store).is_file()):
        return None, f"no results store at {store or '(none)'}"  # a path: a URL's store is always there
    with Store(store) as s:
        rows = s.query(kind="train", model=name)
    seen: set[str] = set()
    for row in reversed(rows):  # newest first
        extra = row.get("extra") or {}
        art = row.get("artifact") or ""
        if not art or art in seen or extra.get("method") or row.get("dataset") != source:
            continue
        seen.add(art)
        path = Path(art)
        if not path.is_file():
            continue
        try:
            ckpt = load_checkpoint(path)
        except FcbenchError:
            continue  # replaced or damaged since: not a teacher to trust
        if ckpt.train_run and extra.get("train_run") and ckpt.train_run != extra["train_run"]:
            continue  # the folder now holds another run
        steps = ckpt.manifest.lineage if ckpt.manifest else []
        if not steps or steps[-1].verb != "train":
            continue
        if any(ckpt.model_options.get(k) != v for k, v in _resolved(name, options).items()):
            continue
        return path, ""
    return None, f"no finished train run of {name} on {source} in {store}"


def _resolved(name: str, options: dict[str, Any]) -> dict[str, Any]:
    from fcbench.models.registry import describe

    full = describe(name, **options)["options"]
    return {k: full[k] for k in options}


def _resolve_teacher(cfg: DistillConfig, ctx: RunContext, hooks: Hooks, source: str,
                     check: Any) -> tuple[Teacher, TrainResult | None]:
    """The teacher of ``cfg``; ``check(plan_teacher_model, head_spec_or_None, label)`` is called with what it
    will be before a teacher is trained, so a run that cannot work trains nothing."""
    from fcbench.models import create, names

    text = str(cfg.teacher)
    path = Path(text)
    if path.is_dir():
        raise FcbenchError(f"distill: --teacher {text} is a directory; pass the checkpoint inside it, e.g. "
                           f"{path / 'model.pt'}")
    if path.is_file():
        teacher = _teacher_from_file(cfg, path, "state_dict" if cfg.teacher_model else "checkpoint")
        check(teacher.model, teacher.head, text)
        return teacher, None
    known = names()
    if text not in known:
        if path.suffix or "/" in text or "\\" in text:
            raise FcbenchError(f"distill: --teacher {text} does not exist; pass a checkpoint (train writes "
                               "OUT/model.pt) or a model name such as r34")
        raise FcbenchError(f"distill: --teacher '{text}' is neither a file nor a model{suggest(text, known)}; "
                           f"models: {', '.join(known)}")
    if cfg.teacher_model:
        raise FcbenchError("distill: --teacher-model names the architecture of a state_dict file; with a model "
                           f"name as --teacher ({text}) leave it out")
    found, why = _find_trained(ctx.store, text, dict(cfg.teacher_options), source)
    if found is not None:
        teacher = _teacher_from_file(replace_options(cfg), found, "store")
        check(teacher.model, teacher.head, f"{text} ({found})")
        from fcbench.results.store import masked

        hooks.log(f"teacher: {found}, the newest trained {text} on this data in {masked(ctx.store)}")
        return teacher, None
    # train it first, with the student's training options unless --teacher-epochs/--teacher-lr say otherwise
    arch = create(text, **cfg.teacher_options)
    head_spec = None
    if arch.fcbench_task == "embedding":
        head_spec = {"name": cfg.head, "embedding_size": int(arch.output_size), "num_classes": 0,
                     "options": dict(cfg.head_options)}
    check(arch, head_spec, text)
    out = Path(cfg.out) / "teacher"
    tcfg = cfg.train_config(model=text, model_options=dict(cfg.teacher_options), weights=None, out=str(out),
                            epochs=cfg.teacher_epochs or cfg.epochs, lr=cfg.teacher_lr or cfg.lr,
                            resume="auto" if cfg.resume else None, overwrite=cfg.overwrite)
    if tcfg.warmup_epochs > tcfg.epochs:
        tcfg.warmup_epochs = float(tcfg.epochs)
    tcfg.max_steps = None if cfg.teacher_epochs else cfg.max_steps
    hooks.log(f"teacher: {why}; training {text} first into {out} ({tcfg.epochs} epochs, lr {tcfg.lr})")
    from fcbench.training.loop import train

    result = train(tcfg, ctx, hooks)
    teacher = _teacher_from_file(replace_options(cfg), Path(result.checkpoint), "trained")
    return teacher, result


def replace_options(cfg: DistillConfig) -> DistillConfig:
    """``cfg`` for loading a teacher checkpoint that records its own options."""
    from dataclasses import replace

    return replace(cfg, teacher_options={}, teacher_model=None)


class Distiller:
    """``train``'s loss hook for one distillation run: the frozen teacher, the methods and the projection."""

    def __init__(self, teacher: Teacher, methods: list[Method], method: str, out: Path) -> None:
        self.teacher = teacher
        self.out = out
        self.methods = methods
        self.name = f"distill:{method}"
        self.method = method
        self.teacher_model = teacher.model.eval()
        for p in self.teacher_model.parameters():
            p.requires_grad_(False)
        self.teacher_head = _head_module(teacher.head).eval() if teacher.head else None
        if self.teacher_head is not None:
            for p in self.teacher_head.parameters():
                p.requires_grad_(False)
        self.ce_weight = 1.0
        for m in methods:
            self.ce_weight *= m.plugin.ce_weight(m.options)
        self.projection: str = ""
        self.row_extra = {"method": method, "teacher_sha256": teacher.sha256}
        self._cache: tuple[Any, torch.Tensor] | None = None
        self._extra: nn.Module | None = None

    # --- the loss-hook protocol (fcbench.training.loop.LossHook) ---
    def setup(self, model: nn.Module, head: nn.Module | None, dataset: Any, device: torch.device) -> nn.Module | None:
        self.teacher_model.to(device)
        if self.teacher_head is not None:
            self.teacher_head.to(device)
            classes = int(self.teacher_head.weight.shape[0])
            if any(m.plugin.teacher_head for m in self.methods) and classes != int(dataset.num_classes):
                raise FcbenchError(
                    f"distill: the teacher's head has {classes} classes and data '{dataset.source}' "
                    f"{dataset.num_classes}; methods using its class centres need the teacher trained on this data")
        for m in self.methods:
            m.plugin.setup(self, m.options, model, head, dataset)
        t_dim, s_dim = int(self.teacher_model.output_size), int(model.output_size)
        if any(m.plugin.embeddings for m in self.methods) and t_dim != s_dim:
            torch.manual_seed(0)
            self.projection = f"linear {s_dim}->{t_dim}"
            self._extra = nn.ModuleDict({"projection": nn.Linear(s_dim, t_dim, bias=False)}).to(device)
        return self._extra

    def margin(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        margins = [m.plugin.margin(self, m.options, x, y) for m in self.methods]
        margins = [m for m in margins if m is not None]
        return margins[0] if margins else None

    def __call__(self, inputs: Any) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for m in self.methods:
            terms.update(m.plugin.terms(self, m.options, inputs))
        return terms

    def lineage_step(self, options: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        from fcbench.lineage import relative_path

        options.pop("loss_hook", None)
        options.pop("loss_hook_config", None)
        return "distill", self.method, {**options, **self.step_options(),
                                        "teacher_file": relative_path(self.teacher.path, self.out)}

    @property
    def config(self) -> dict[str, Any]:
        """What ``--resume`` must find unchanged: the teacher's weights and every method's options."""
        opts = self.step_options()
        return {"teacher_sha256": opts["teacher_sha256"], "methods": opts["methods"]}

    def step_options(self) -> dict[str, Any]:
        from fcbench.techniques.base import options_dict

        return {"teacher": self.teacher.model.fcbench_name, "teacher_options": dict(self.teacher.model.fcbench_options),
                "teacher_sha256": self.teacher.sha256, "teacher_how": self.teacher.how,
                "teacher_lineage": self.teacher.lineage, "ce_weight": self.ce_weight,
                "methods": {m.name: options_dict(m.options) for m in self.methods},
                "projection": self.projection}

    # --- for the methods ---
    @torch.no_grad()
    def teacher_out(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's output for ``x`` (embeddings or logits), computed once per batch."""
        if self._cache is None or self._cache[0] is not x:
            self._cache = (x, self.teacher_model(x).float())
        return self._cache[1]

    @torch.no_grad()
    def teacher_cos(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher_head.cosine(self.teacher_out(x))

    def student_emb(self, inputs: Any) -> torch.Tensor:
        """The student's embedding in the teacher's space (through the projection when sizes differ)."""
        if self._extra is None:
            return inputs.outputs
        return self._extra["projection"](inputs.outputs)


def distill(cfg: DistillConfig, ctx: RunContext | None = None, hooks: Hooks | None = None) -> DistillResult:
    """Distil ``cfg.teacher`` into ``cfg.student`` with ``cfg.method``; returns the student's run (path-like:
    its ``model.pt``) with the teacher and methods. Prints nothing, stores nothing (rows go to ``hooks``)."""
    from fcbench.data import open_dataset
    from fcbench.models import create
    from fcbench.training.checkpoint import load_checkpoint
    from fcbench.training.loop import train

    cfg.validate()
    hooks = or_default(hooks)
    ctx = ctx or RunContext()
    methods = parse_methods(cfg)
    # the student: a model name (with -o) or a checkpoint to start from
    spath = Path(cfg.student)
    if spath.is_file() or spath.suffix in (".pt", ".pth"):
        ckpt = load_checkpoint(spath)
        if cfg.model_options:
            raise FcbenchError(f"distill: -o is for a student given by name; {spath} records its own options")
        scfg = cfg.train_config(model=ckpt.model_name, model_options=dict(ckpt.model_options), weights=str(spath))
    else:
        from fcbench.models import names

        if cfg.student not in names():
            raise FcbenchError(f"distill: --student '{cfg.student}' is neither a checkpoint nor a model"
                               f"{suggest(cfg.student, names())}")
        scfg = cfg.train_config(model=cfg.student)
    student = create(scfg.model, **scfg.model_options)
    dataset = open_dataset(cfg.data, preprocessing=student.preprocessing, **cfg.data_options)

    def check(teacher_model: nn.Module, head: dict[str, Any] | None, label: str) -> None:
        plan = Plan(teacher_model.fcbench_task, student.fcbench_task, int(teacher_model.output_size),
                    int(student.output_size), head, cfg.head)
        _check_plan(methods, plan, label)
        tp, sp = teacher_model.preprocessing, student.preprocessing
        if (tuple(tp.size), tuple(tp.mean), tuple(tp.std)) != (tuple(sp.size), tuple(sp.mean), tuple(sp.std)):
            raise FcbenchError(
                f"distill: the teacher {label} takes {tp.size[0]}x{tp.size[1]} inputs scaled by mean {tp.mean}, std "
                f"{tp.std} and the student {sp.size[0]}x{sp.size[1]}, mean {sp.mean}, std {sp.std}; both see the same "
                f"batches: give the student -o input_size={tp.size[0]}x{tp.size[1]} (or the teacher the student's)")

    teacher, teacher_result = _resolve_teacher(cfg, ctx, hooks, str(dataset.source), check)
    distiller = Distiller(teacher, methods, "+".join(m.name for m in methods), Path(scfg.out))
    result = train(scfg, ctx, hooks, loss_hook=distiller)
    return DistillResult(checkpoint=result.checkpoint, init_checkpoint=result.init_checkpoint, rows=result.rows,
                         teacher=teacher.path, teacher_sha256=teacher.sha256, teacher_how=teacher.how,
                         teacher_result=teacher_result, method=distiller.method,
                         options=distiller.step_options()["methods"])
