"""The training loop: one process, or DDP under ``torchrun`` (gloo on CPU, nccl on GPU).

Face models train an embedding through a margin head (ArcFace, CosFace) or a softmax head;
classification models train their logits directly; detectors (task ``detection``) train on images with
boxes with the MultiBox loss (``fcbench.detection.loss``; no head). The backbone and the head have
separate optimizers (as in the Serbian thesis' recipe), stepped together. Checkpoints are
written every epoch with optimizer, schedule and RNG state, so ``resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from fcbench.artifact import Step, sha256_file
from fcbench.detection.loss import multibox_loss
from fcbench.errors import FcbenchError, first_line
from fcbench.hooks import Hooks, or_default
from fcbench.results.context import RunContext, new_run_id
from fcbench.results.store import Row
from fcbench.threads import restores_torch_threads
from fcbench.training import runfolder
from fcbench.training.checkpoint import load_checkpoint, save_checkpoint
from fcbench.training.config import TrainConfig


@dataclass
class TrainResult:
    """What ``train`` made: the final checkpoint and one ``train`` row per epoch (mean loss, lr, speed).

    It is path-like (``Path(result)``, ``str(result)``): the checkpoint is what a later step takes."""

    checkpoint: Path
    init_checkpoint: Path | None = None
    rows: list[Row] = field(default_factory=list)

    def to_rows(self) -> list[Row]:
        return list(self.rows)

    def __fspath__(self) -> str:
        return str(self.checkpoint)

    def __str__(self) -> str:
        return str(self.checkpoint)


class _Joint(nn.Module):
    """Backbone + optional head (+ a loss hook's own trainable modules, e.g. a distillation projection)
    as one module, so DDP syncs all of them. Returns (backbone output, logits)."""

    def __init__(self, backbone: nn.Module, head: nn.Module | None, extra: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.extra = extra

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                margin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.backbone(x)
        if self.head is None:
            return out, out
        return out, (self.head(out, y) if margin is None else self.head(out, y, margin=margin))


@dataclass
class LossInputs:
    """What a loss hook sees at one training step (all on the training device)."""

    x: torch.Tensor  # the batch of images, prepared
    y: torch.Tensor  # their labels
    outputs: torch.Tensor  # the backbone's output: embeddings (face models) or logits (classifiers)
    logits: torch.Tensor  # what the cross-entropy is taken of: the head's margin logits, or ``outputs``
    model: nn.Module  # the backbone being trained (not DDP-wrapped)
    step: int  # optimizer steps taken before this one
    epoch: int
    device: torch.device
    head: nn.Module | None = None  # the training head (face models), e.g. for its class centres
    extra: nn.Module | None = None  # what the hook's ``setup`` returned (trained with the model)


LossHook = Callable[[LossInputs], dict[str, torch.Tensor]]
"""``hook(inputs) -> {term name: scalar tensor}``: extra loss terms, already weighted, added to the
cross-entropy before the backward pass. A hook computes whatever else it needs itself, e.g. a
frozen teacher's embeddings of ``inputs.x`` under ``torch.no_grad()``. Each term's epoch mean is
stored in the train row's ``extra.loss_terms`` beside ``ce``; the row's value is the total.

A hook object may also have (each optional):

- ``setup(model, head, dataset, device) -> nn.Module | None``: called once the model, head and data
  exist and before anything is written; may change the head (copy and freeze class centres) and
  return modules of its own to train with the model (a projection); their state is in the epoch
  checkpoints' training state, so ``--resume`` continues them; they are not part of the saved model.
- ``margin(x, y) -> Tensor | None``: per-sample margins (B,) for the margin head at this step.
- ``ce_weight``: the factor of the cross-entropy term (default 1).
- ``lineage_step(options) -> (verb, technique, options)``: the final checkpoint's lineage step
  instead of ``train(<head>)`` (``distill`` names its method and teacher).
- ``row_extra``: a dict added to every train row's ``extra``.
- ``config``: a dict of what the hook was made with; ``--resume`` refuses a run whose hook had another."""


def _lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    epoch = step / steps_per_epoch
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return (step + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "step":
        return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    if cfg.schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        start = cfg.warmup_epochs * steps_per_epoch
        t = min(1.0, max(0.0, (step - start) / max(1.0, total - start)))
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FcbenchError(f"train: device '{cfg.device}' asked for but CUDA is not available; use --device cpu")
    return dev


def _build_model(cfg: TrainConfig) -> nn.Module:
    """The model, from ``weights`` when given (an fcbench checkpoint or a plain state_dict)."""
    from fcbench.models import create

    return create(cfg.model, weights=cfg.weights, **cfg.model_options)


def _plan_run(cfg: TrainConfig, out: Path) -> tuple[Path | None, str, list[Path]]:
    """Which checkpoint to resume (None: a new run), the run's id, and the files ``--overwrite`` deletes.
    Reads only: a folder holding another run is refused here, before anything is written."""
    files = runfolder.run_files(out)
    ckpts = [p for p in files if p.name.endswith(".pt")]
    if not cfg.resume:
        if ckpts and not cfg.overwrite:
            raise FcbenchError(
                f"train: --out {out} already holds a run ({runfolder.describe(files)}); pass a new --out, "
                "--resume auto to continue that run, or --overwrite to delete its files first")
        return None, new_run_id(), files if cfg.overwrite else []
    epochs = sorted((p for p in ckpts if runfolder.epoch_of(p) is not None), key=runfolder.epoch_of)
    if cfg.resume == "auto":
        if not epochs:
            if ckpts:
                raise FcbenchError(
                    f"train: --resume auto: {out} holds no epoch checkpoint to continue ({runfolder.describe(files)}); "
                    "start the run again with --overwrite instead of --resume, or pass a new --out")
            return None, new_run_id(), []  # nothing to resume yet: --resume auto starts the run
        anchor = next((p for p in ckpts if p.name == "init.pt"), epochs[-1])
    else:
        anchor = Path(cfg.resume)
        load_checkpoint(anchor)  # one clear error for a missing or foreign file
    key = runfolder.run_key(anchor)
    foreign = [p for p in ckpts if not _same_file(p, anchor) and runfolder.run_key(p) not in (None, key)]
    if foreign:
        whose = f"the run {anchor.name} belongs to" if cfg.resume == "auto" else f"the run of {anchor}"
        raise FcbenchError(
            f"train: --resume {cfg.resume}: {out} also holds checkpoints of another run than {whose}: "
            f"{runfolder.describe(foreign)}; delete them (they cannot continue this run), or start afresh with "
            "--overwrite instead of --resume, or in a new --out")
    if cfg.resume == "auto":
        anchor = epochs[-1]
    return anchor, key or new_run_id(), []


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_first_batch(dataset: Any, sampler: DistributedSampler, epoch: int, batch_size: int) -> None:
    """Decode the first batch this process will train on, so an unreadable data set stops the run
    before it writes anything. Leaves every random state as it was."""
    sampler.set_epoch(epoch)
    with torch.random.fork_rng(devices=[]):
        for i in list(iter(sampler))[:batch_size]:
            try:
                dataset[i]
            except FcbenchError:
                raise
            except Exception as exc:
                raise FcbenchError(f"train: data '{dataset.source}': sample {i} cannot be read "
                                   f"({type(exc).__name__}: {first_line(exc)[:160]})") from exc


def _remove_started_run(out: Path, out_existed: bool) -> list[Path]:
    """Delete what a new run wrote before its first epoch ended (its init.pt, manifests, .tmp files)."""
    removed = runfolder.run_files(out)
    for f in removed:
        f.unlink(missing_ok=True)
    if not out_existed:
        with contextlib.suppress(OSError):
            out.rmdir()  # only when empty
    return removed


def _interrupted_note(cfg: TrainConfig, out: Path, epoch: int, last: Path | None, removed: list[Path],
                      distributed: bool) -> str:
    how = " (under torchrun, as before)" if distributed else ""
    if last is None:
        gone = f"; removed {runfolder.describe(removed)} from {out}" if removed else ""
        return (f"train stopped in epoch {epoch} of {cfg.epochs}, before its first checkpoint: nothing is "
                f"kept{gone}; start again with: {runfolder.resume_command(cfg, None)}{how}")
    done = runfolder.epoch_of(last)
    resume = "auto" if _same_file(last.parent, out) else str(last)
    return (f"train stopped in epoch {epoch} of {cfg.epochs}; kept {last}, the last complete checkpoint "
            f"(epoch {done}); continue with: {runfolder.resume_command(cfg, resume)}{how}")


def _hook_terms(hook: LossHook, inputs: LossInputs) -> dict[str, torch.Tensor]:
    """The hook's terms, checked: named, scalar, not 'ce' (the cross-entropy's own name)."""
    terms = hook(inputs)
    if not isinstance(terms, dict):
        raise FcbenchError(f"train: loss hook {getattr(hook, 'name', type(hook).__name__)} returned "
                           f"{type(terms).__name__}, not a dict of named loss terms")
    for name, term in terms.items():
        if name == "ce" or not isinstance(term, torch.Tensor) or term.numel() != 1:
            raise FcbenchError(f"train: loss hook term {name!r} must be a scalar tensor named other than 'ce'")
    return {name: term.float().reshape(()) for name, term in terms.items()}


def _classification_step(ddp_net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_hook: LossHook | None,
                         ce_weight: float, use_amp: bool, device: torch.device, model: nn.Module, step: int,
                         epoch: int, head: nn.Module | None, extra: nn.Module | None,
                         term_sums: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One batch's loss of a face model or a classifier: cross-entropy (+ the loss hook's terms)."""
    margin = loss_hook.margin(x, y) if hasattr(loss_hook, "margin") else None
    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
        outputs, logits = ddp_net(x, y, margin) if margin is not None else ddp_net(x, y)
    loss = nn.functional.cross_entropy(logits.float(), y) * ce_weight
    terms: dict[str, torch.Tensor] = {}
    if loss_hook is not None:
        terms = {"ce": loss, **_hook_terms(loss_hook, LossInputs(
            x, y, outputs.float(), logits.float(), model, step, epoch, device, head, extra))}
        loss = sum(terms.values())
        for name, term in terms.items():
            term_sums[name] = term_sums.get(name, 0.0) + term.item()
    return loss, terms


def _has_boxes(dataset: Any) -> bool:
    from fcbench.data.detection import DetectionImages

    return isinstance(dataset, DetectionImages)


def _detection_setup(cfg: TrainConfig, model: nn.Module, dataset: Any, loss_hook: LossHook | None) -> torch.Tensor:
    """Checks for training a detector (box data, no head, no loss hook, matching classes); gives the model
    the data's class names (saved in its checkpoints) and returns its anchors."""
    from fcbench.data.detection import DetectionImages
    from fcbench.options import TrainConfig as _Defaults

    if not isinstance(dataset, DetectionImages):
        raise FcbenchError(f"train: model '{cfg.model}' is a detector and data '{dataset.source}' has no boxes; "
                           "give detection data (images with boxes, e.g. synthetic:video, COCO JSON, Pascal VOC)")
    if cfg.head != _Defaults.head or cfg.head_options:
        raise FcbenchError(f"train: model '{cfg.model}' is a detector with its own box and class predictors; "
                           "--head and --head-opt are for face models: drop them")
    if loss_hook is not None:
        raise FcbenchError(f"train: model '{cfg.model}' is a detector; distillation and loss hooks train face "
                           "models and classifiers only")
    if model.output_size != dataset.num_classes:
        raise FcbenchError(
            f"train: model '{cfg.model}' detects {model.output_size} classes but data '{dataset.source}' has "
            f"{dataset.num_classes} ({', '.join(map(str, dataset.class_names[:5]))}); pass model option "
            f"num_classes={dataset.num_classes}")
    model.class_names = [str(c) for c in dataset.class_names]
    from fcbench.detection.anchors import anchors_for

    return torch.from_numpy(anchors_for(model.fcbench_options))


@restores_torch_threads
def train(cfg: TrainConfig, ctx: RunContext | None = None, hooks: Hooks | None = None,
          loss_hook: LossHook | None = None) -> TrainResult:
    """Train; return the final checkpoint (``OUT/model.pt``) and the per-epoch rows.

    Prints nothing and stores nothing: rows go to ``hooks.on_rows`` as each epoch ends, progress
    to ``hooks.on_progress``, the per-epoch line to ``hooks.on_log`` (rank 0 only under DDP).
    ``loss_hook`` adds loss terms at every step (see :data:`LossHook`): distillation is a loss, not
    another loop. Its ``name`` attribute (or class name) is recorded in the train step's options."""
    cfg.validate()
    if cfg.resume and cfg.overwrite:
        raise FcbenchError("train: --overwrite starts a new run and --resume continues one; pass one of them")
    hooks = or_default(hooks)
    from fcbench.data import open_dataset
    from fcbench.models import create_head, profile

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg, local_rank)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    main_proc = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = ctx or RunContext()
    use_amp = device.type == "cuda" and cfg.amp != "off"
    if cfg.amp == "on" and device.type != "cuda":
        raise FcbenchError("train: --amp on needs CUDA; this run is on CPU (use --amp auto or off)")

    out = Path(cfg.out)
    lineage_opts = {k: v for k, v in asdict(cfg).items() if k not in ("out", "resume", "workers", "overwrite")}
    if loss_hook is not None:
        lineage_opts["loss_hook"] = str(getattr(loss_hook, "name", type(loss_hook).__name__))
        if getattr(loss_hook, "config", None):  # what --resume must find unchanged (a teacher's sha256, weights)
            lineage_opts["loss_hook_config"] = dict(loss_hook.config)
    # Everything that can be checked is checked before anything is written into the run folder.
    out_existed = runfolder.check_out(out)
    resume_path, run_id, old_files = _plan_run(cfg, out)
    if cfg.resume == "auto" and resume_path is None and main_proc:
        hooks.log(f"--resume auto: no run in {out} yet; starting one")

    torch.manual_seed(cfg.seed)
    model = _build_model(cfg)
    dataset = open_dataset(cfg.data, preprocessing=model.preprocessing, **cfg.data_options)
    if not hasattr(dataset, "num_classes"):
        raise FcbenchError(f"train: data '{dataset.source}' has no class labels (is it a verification pair set?)")
    head: nn.Module | None = None
    head_spec: dict[str, Any] | None = None
    detector = model.fcbench_task == "detection"
    anchors: torch.Tensor | None = None
    if detector:  # boxes and labels, the MultiBox loss; no head
        anchors = _detection_setup(cfg, model, dataset, loss_hook)
    elif _has_boxes(dataset):
        raise FcbenchError(f"train: data '{dataset.source}' holds images with boxes, for a detector, and model "
                           f"'{cfg.model}' is a {model.fcbench_task} model; train a detector (e.g. ssd-mobilenetv2) "
                           "or give labelled images")
    elif model.fcbench_task == "embedding":
        head_spec = {"name": cfg.head, "embedding_size": int(model.output_size),
                     "num_classes": int(dataset.num_classes), "options": dict(cfg.head_options)}
        head = create_head(cfg.head, model.output_size, dataset.num_classes, **cfg.head_options)
    elif model.output_size != dataset.num_classes:
        raise FcbenchError(
            f"train: model '{cfg.model}' outputs {model.output_size} classes but data '{dataset.source}' has "
            f"{dataset.num_classes}; pass model option num_classes={dataset.num_classes}"
        )
    extra: nn.Module | None = None
    if loss_hook is not None and hasattr(loss_hook, "setup"):
        model.to(device)
        if head is not None:
            head.to(device)
        extra = loss_hook.setup(model, head, dataset, device)
    net = _Joint(model, head, extra).to(device)
    ce_weight = float(getattr(loss_hook, "ce_weight", 1.0))
    row_extra = dict(getattr(loss_hook, "row_extra", None) or {})
    ddp_net: nn.Module = net
    if distributed:
        ddp_net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    def make_opt(params, lr: float) -> torch.optim.Optimizer:
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)

    optimizers = [make_opt(model.parameters(), cfg.lr)]
    head_params = [p for p in head.parameters() if p.requires_grad] if head is not None else []
    if head_params:  # a head whose centres a hook froze has nothing to step
        optimizers.append(make_opt(head_params, cfg.head_lr or cfg.lr))
    if extra is not None and any(p.requires_grad for p in extra.parameters()):
        optimizers.append(make_opt([p for p in extra.parameters() if p.requires_grad], cfg.lr))
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    collate = None
    if detector:
        from fcbench.data.detection import collate
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        drop_last=True, persistent_workers=cfg.workers > 0, collate_fn=collate)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise FcbenchError(
            f"train: data '{dataset.source}' has {len(dataset)} samples, fewer than one batch of "
            f"{cfg.batch_size} per process; lower --batch-size"
        )
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: _lr_factor(cfg, s, steps_per_epoch))
                  for o in optimizers]
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, step = 1, 0
    init_sha = ""
    if resume_path is not None:
        state = load_checkpoint(resume_path)
        if state.train_state is None:
            raise FcbenchError(f"train: {resume_path} holds no training state (only epoch-*.pt checkpoints do); "
                               "pass an epoch checkpoint or --resume auto")
        differ = runfolder.config_differences(state.train_state.get("config") or {}, lineage_opts)
        if not state.train_state.get("config") and (state.model_name, state.model_options) != (
                cfg.model, cfg.model_options):
            differ.append(f"model {state.model_name} {state.model_options} -> {cfg.model} {cfg.model_options}")
        if differ:
            raise FcbenchError(
                f"train: --resume {cfg.resume}: {resume_path} was trained with other options: {'; '.join(differ)}; "
                "pass that run's options (only --epochs, --max-steps, --workers, --threads and --device may "
                "change) or train into a new --out")
        if state.train_run is None and main_proc:
            hooks.log(f"{resume_path} was written before checkpoints named their run; its model and options "
                      "match, so it is resumed")
        net.backbone.load_state_dict(state.state_dict)
        if head is not None and state.head is not None:
            head.load_state_dict(state.head["state_dict"])
        if extra is not None and state.train_state.get("extra"):
            extra.load_state_dict(state.train_state["extra"])
        ts = state.train_state
        for o, s in zip(optimizers, ts["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(schedulers, ts["schedulers"], strict=True):
            sch.load_state_dict(s)
        torch.set_rng_state(ts["rng"])
        if use_amp and ts.get("scaler"):  # the AMP loss scale (CUDA only; older checkpoints lack it)
            scaler.load_state_dict(ts["scaler"])
        start_epoch, step, init_sha = ts["epoch"] + 1, ts["step"], ts.get("init_sha256", "")
        if main_proc:
            hooks.log(f"resuming {resume_path}: epoch {start_epoch} of {cfg.epochs}, step {step}")
    _check_first_batch(dataset, sampler, start_epoch, cfg.batch_size)
    parent_sha = sha256_file(cfg.weights) if cfg.weights else ""
    if distributed:
        dist.barrier()  # every process has checked the folder before the first one writes into it

    result = TrainResult(checkpoint=out / "model.pt", init_checkpoint=out / "init.pt" if main_proc else None)
    wrote_init, epochs_written, finished, epoch = False, 0, False, start_epoch
    last_ckpt = resume_path
    done = False
    total_steps = (cfg.epochs - start_epoch + 1) * steps_per_epoch
    done_steps = 0
    try:
        if main_proc and old_files:
            for f in old_files:
                f.unlink(missing_ok=True)
            hooks.log(f"--overwrite: deleted the earlier run's files in {out}: {runfolder.describe(old_files)}")
        if resume_path is None and main_proc:
            with runfolder.uninterrupted():
                init_manifest = save_checkpoint(
                    out / "init.pt", model, head=head, head_spec=head_spec, train_run=run_id,
                    lineage=[Step("init", technique=cfg.model, options=dict(cfg.model_options))])
                wrote_init = True
            init_sha = init_manifest.sha256
        parent_sha = parent_sha or init_sha
        for epoch in range(start_epoch, cfg.epochs + 1):
            sampler.set_epoch(epoch)
            ddp_net.train()
            t0, seen, loss_sum, batches = time.perf_counter(), 0, 0.0, 0
            term_sums: dict[str, float] = {}
            for x, y in loader:
                if detector:
                    x = x.to(device, non_blocking=True)
                    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                        raw, _ = ddp_net(x, None)
                    terms = multibox_loss(raw.float(), y, anchors)
                    loss = terms["loc"] + terms["conf"]
                    for name, term in terms.items():
                        term_sums[name] = term_sums.get(name, 0.0) + term.item()
                else:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    loss, terms = _classification_step(ddp_net, x, y, loss_hook, ce_weight, use_amp, device,
                                                       model, step, epoch, head, extra, term_sums)
                if not torch.isfinite(loss):
                    raise FcbenchError(f"train: loss became {loss.item()} at step {step}; lower --lr", exit_code=1)
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                for o in optimizers:
                    scaler.step(o)
                scaler.update()
                for s in schedulers:
                    s.step()
                step += 1
                seen += x.shape[0] * world
                loss_sum += loss.item()
                batches += 1
                ips = seen / (time.perf_counter() - t0)
                done_steps += 1
                if main_proc:
                    hooks.progress("train", done_steps, total_steps,
                                   f"epoch {epoch}/{cfg.epochs} loss {loss.item():.3f} {ips:.0f} img/s")
                if cfg.max_steps and step >= cfg.max_steps:
                    done = True
                    break
            mean_loss = loss_sum / max(1, batches)
            if main_proc:
                elapsed = time.perf_counter() - t0
                train_state = {
                    "epoch": epoch, "step": step, "init_sha256": init_sha, "train_run": run_id,
                    "optimizers": [o.state_dict() for o in optimizers],
                    "schedulers": [s.state_dict() for s in schedulers],
                    "rng": torch.get_rng_state(), "config": lineage_opts, "scaler": scaler.state_dict(),
                    **({"extra": extra.state_dict()} if extra is not None else {}),
                }
                with runfolder.uninterrupted():
                    save_checkpoint(out / f"epoch-{epoch:03d}.pt", model, head=head, head_spec=head_spec,
                                    train_state=train_state, train_run=run_id)
                    last_ckpt, epochs_written = out / f"epoch-{epoch:03d}.pt", epochs_written + 1
                row = ctx.row("train", model=cfg.model, metric="loss", value=mean_loss, artifact=str(out / "model.pt"),
                              dataset=str(dataset.source), protocol="train",
                              batch=cfg.batch_size, threads=torch.get_num_threads(),
                              extra={"epoch": epoch, "step": step, "train_run": run_id,
                                     "lr": schedulers[0].get_last_lr()[0],
                                     "images_per_s": seen / elapsed, "world_size": world, **row_extra,
                                     **({"loss_terms": {k: v / max(1, batches) for k, v in term_sums.items()}}
                                        if term_sums else {})})
                result.rows.append(row)
                hooks.rows([row])
                hooks.event("epoch", {"epoch": epoch, "loss": mean_loss, "images_per_s": seen / elapsed})
                hooks.log(f"epoch {epoch}: loss {mean_loss:.4f}, {seen / elapsed:.1f} img/s")
            if distributed:
                dist.barrier()
            if done:
                break
        final = out / "model.pt"
        if main_proc:
            net.backbone.eval()
            prof = profile(model, input_size=tuple(model.preprocessing.size))
            technique = cfg.head if head is not None else ("multibox" if detector else "softmax")
            verb, step_opts = "train", lineage_opts
            if hasattr(loss_hook, "lineage_step"):
                verb, technique, step_opts = loss_hook.lineage_step(dict(lineage_opts))
            with runfolder.uninterrupted():
                save_checkpoint(final, model, head=head, head_spec=head_spec, profile=prof, train_run=run_id,
                                lineage=[Step(verb, technique=technique, options=step_opts,
                                              parent_sha256=parent_sha)])
                finished = True
        if distributed:
            dist.barrier()
        return result
    except BaseException as exc:
        if main_proc and not finished:
            removed = []
            if wrote_init and not epochs_written:  # nothing of this run is worth keeping: leave the folder as it was
                removed = _remove_started_run(out, out_existed)
            if isinstance(exc, KeyboardInterrupt):  # the CLI prints it: "fcbench: interrupted: <this>"
                exc.args = (_interrupted_note(cfg, out, epoch, last_ckpt, removed, distributed),)
        raise
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
