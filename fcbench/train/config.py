"""Options of the train verb, shared by the CLI and recipes (same names, same checks)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from fcbench.errors import FcbenchError, suggest


@dataclass
class TrainConfig:
    model: str = "r18"
    model_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # start from these weights (fcbench checkpoint or plain state_dict)
    head: str = "arcface"  # arcface | cosface | softmax (ignored for classification models)
    head_options: dict[str, Any] = field(default_factory=dict)
    data: Any = "synthetic:faces"
    data_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    head_lr: float | None = None  # the head has its own optimizer (Serbian thesis); default: lr
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"  # step | cosine | constant
    milestones: list[int] = field(default_factory=list)  # epochs where a step schedule multiplies by gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    max_steps: int | None = None  # stop after this many optimizer steps in total
    workers: int = 0
    seed: int = 0
    out: str = "runs/train"
    resume: str | None = None  # 'auto' (latest epoch in out) or a checkpoint path
    amp: str = "auto"  # auto (on when CUDA) | on | off
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None
    store: str | None = None

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


def from_mapping(cls: type, mapping: dict[str, Any], where: str) -> Any:
    """Build an options dataclass from a mapping; unknown keys are one clear error."""
    names = [f.name for f in fields(cls) if not f.name.startswith("_")]  # private fields are not options
    for key in mapping:
        if key not in names:
            raise FcbenchError(f"{where}: unknown key '{key}'{suggest(key, names)}; valid keys: {', '.join(names)}")
    return cls(**mapping)
