"""MobileFaceNet ``mbf``: a 1M-parameter, ~0.45 GMAC face-embedding network.

Layout and state-dict keys follow insightface ``arcface_torch/backbones/mobilefacenet.py``
(its ``mbf`` checkpoints load strictly at width 1, act "prelu"). ``layers`` = blocks per stage,
default [1, 4, 6, 2]:

==========  ============================================================  ===========
``layers.0``  conv 3x3 s2, 3 -> 128, BN, PReLU                                  112 -> 56
``layers.1``  grouped conv 3x3 (2 channels per group), 128 (layers[0] == 1),
              else layers[0] residual bottlenecks (expand 128)
``layers.2``  bottleneck s2 128 -> 128 (expand 128)                              56 -> 28
``layers.3``  layers[1] residual bottlenecks 128 (expand 128)
``layers.4``  bottleneck s2 128 -> 256 (expand 256)                              28 -> 14
``layers.5``  layers[2] residual bottlenecks 256 (expand 256)
``layers.6``  bottleneck s2 256 -> 256 (expand 512)                              14 -> 7
``layers.7``  layers[3] residual bottlenecks 256 (expand 256)
``conv_sep``  conv 1x1 256 -> 512, BN, PReLU
``features``  GDC: depthwise conv over the whole 7x7 map, BN, flatten, (dropout),
              Linear 512 -> embedding (no bias), BatchNorm1d
==========  ============================================================  ===========

A bottleneck is conv1x1 (expand) BN PReLU -> depthwise 3x3 BN PReLU -> conv1x1 (project) BN,
with an identity shortcut when residual. ``width`` scales every channel count (the embedding
size is set by ``embedding_size``); ``act="relu"`` swaps every PReLU for ReLU.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fcbench.errors import FcbenchError
from fcbench.models.registry import check_layers, check_positive, register_model, scaled

DEFAULT_LAYERS = [1, 4, 6, 2]


def _act(kind: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if kind == "prelu" else nn.ReLU(inplace=True)


class ConvBlock(nn.Module):
    """Conv (no bias) + BN + activation, as ``layers``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
                 act: str = "prelu") -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            _act(act, cout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv (no bias) + BN, no activation."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Bottleneck: 1x1 expand -> depthwise 3x3 (stride) -> 1x1 project; identity add when residual."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int = 2, residual: bool = False,
                 act: str = "prelu") -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, expand, act=act),
            ConvBlock(expand, expand, 3, stride, 1, groups=expand, act=act),
            LinearBlock(expand, cout),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``n`` residual bottlenecks at stride 1."""

    def __init__(self, channels: int, n: int, expand: int, act: str = "prelu") -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, expand, 1, True, act) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the final map, then Linear + BatchNorm1d."""

    def __init__(self, channels: int, kernel: tuple[int, int], embedding_size: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, kernel, groups=channels),
            nn.Sequential(nn.Flatten(1), nn.Dropout(dropout)),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, layers: list[int], width: float = 1.0, embedding_size: int = 512, act: str = "prelu",
                 dropout: float = 0.0, input_size: tuple[int, int] = (112, 112)) -> None:
        super().__init__()
        c1, c2 = scaled(128, width), scaled(256, width)
        e1, e2, e3 = scaled(128, width), scaled(256, width), scaled(512, width)
        c_sep = scaled(512, width)
        second: nn.Module
        if layers[0] == 1:
            second = ConvBlock(c1, c1, 3, 1, 1, groups=c1 // 2 if c1 % 2 == 0 else c1, act=act)
        else:
            second = Residual(c1, layers[0], e1, act)
        self.layers = nn.Sequential(
            ConvBlock(3, c1, 3, 2, 1, act=act),
            second,
            DepthWise(c1, c1, e1, 2, act=act),
            Residual(c1, layers[1], e1, act),
            DepthWise(c1, c2, e2, 2, act=act),
            Residual(c2, layers[2], e2, act),
            DepthWise(c2, c2, e3, 2, act=act),
            Residual(c2, layers[3], e2, act),
        )
        self.conv_sep = ConvBlock(c2, c_sep, act=act)
        h, w = input_size
        for _ in range(4):
            h, w = (h + 1) // 2, (w + 1) // 2
        self.features = GDC(c_sep, (h, w), embedding_size, dropout)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.output_size = embedding_size

    def forward(self, x: Tensor) -> Tensor:
        return self.features(self.conv_sep(self.layers(x)))


def _resolve(opts: dict[str, Any]) -> dict[str, Any]:
    if opts.get("layers") is None:
        opts["layers"] = list(DEFAULT_LAYERS)
    return opts


@register_model(task="embedding", input_size=(112, 112), resolve=_resolve)
def mbf(width: float = 1.0, layers: list[int] | None = None, embedding_size: int = 512, act: str = "prelu",
        dropout: float = 0.0, input_size: list[int] | None = None) -> nn.Module:
    """MobileFaceNet (insightface ``mbf`` layout); ``act`` is "prelu" or "relu"."""
    check_positive("mbf", width=width, embedding_size=embedding_size)
    if act not in ("prelu", "relu"):
        raise FcbenchError(f"model 'mbf': act must be 'prelu' or 'relu', got {act!r}")
    depth = check_layers("mbf", layers if layers is not None else DEFAULT_LAYERS, 4)
    size = (int(input_size[0]), int(input_size[1])) if input_size else (112, 112)
    return MobileFaceNet(depth, width, int(embedding_size), act, float(dropout), size)
