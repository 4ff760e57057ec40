"""A third-party model for fcbench: a tiny CNN that outputs an embedding."""

from __future__ import annotations

from torch import nn

from fcbench.models import register_model


@register_model(task="embedding", input_size=(112, 112))
def tinynet(width: float = 1.0, embedding_size: int = 64, input_size: tuple[int, int] = (112, 112)) -> nn.Module:
    c = max(4, int(16 * width))
    return nn.Sequential(
        nn.Conv2d(3, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, embedding_size),
    )
