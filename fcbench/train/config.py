"""Options of the train verb, shared by the library, the CLI and recipes (same names, same checks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fcbench.errors import FcbenchError
from fcbench.options import from_mapping, opt, parse_ints, parse_kv

__all__ = ["TrainConfig", "from_mapping"]


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
    out: str = opt("runs/train", help="Output folder for checkpoints")
    resume: str | None = opt(None, help="'auto' (latest epoch in --out) or a checkpoint")
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
