"""DenseNet-BC (bottleneck + compression) classifiers, in torchvision's layout and keys.

Each dense layer is BN-ReLU-conv1x1 (``bn_size * growth_rate`` channels, the "B"ottleneck)
-BN-ReLU-conv3x3 (``growth_rate``), its output concatenated to its input; transitions between
blocks are BN-ReLU-conv1x1 (channels x ``compression``, the "C")-avgpool 2x2. After the last
block: BN, ReLU, global average pool, Linear.

- ImageNet (default): stem conv 7x7 s2 (64 channels) + BN + ReLU + max-pool 3x3 s2, blocks
  ``layers=[6, 12, 24, 16]``, ``growth_rate=32``: DenseNet-121, 7,978,856 params (torchvision's
  densenet121 weights load strictly).
- ``cifar_stem=True``: stem conv 3x3 s1 with 2 x growth channels only, 3 blocks
  ``layers=[16, 16, 16]``, ``growth_rate=12``: DenseNet-BC-100 (k=12), 769,162 params at 10 classes.

``width`` scales the growth rate and the stem width; ``dropout`` is the per-layer drop rate
after each 3x3 conv (torchvision's ``drop_rate``); ``bottleneck=False`` drops the 1x1 convs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcbench.errors import FcbenchError
from fcbench.models.registry import check_layers, check_positive, classifier_resolve, register_model


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int, dropout: float, bottleneck: bool) -> None:
        super().__init__()
        mid = bn_size * growth if bottleneck else cin
        if bottleneck:
            self.norm1 = nn.BatchNorm2d(cin)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth, 3, 1, 1, bias=False)
        self.dropout = float(dropout)
        self.bottleneck = bottleneck

    def forward(self, x: Tensor) -> Tensor:
        if self.bottleneck:
            x = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(out, p=self.dropout, training=self.training) if self.dropout > 0 else out


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int, dropout: float, bottleneck: bool) -> None:
        super().__init__()
        for i in range(n):
            self[f"denselayer{i + 1}"] = DenseLayer(cin + i * growth, growth, bn_size, dropout, bottleneck)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet(nn.Module):
    def __init__(self, layers: list[int], growth_rate: int, num_classes: int = 1000, cifar_stem: bool = False,
                 compression: float = 0.5, bottleneck: bool = True, dropout: float = 0.0, stem: int = 64,
                 bn_size: int = 4) -> None:
        super().__init__()
        feats = nn.Sequential()
        if cifar_stem:
            feats.add_module("conv0", nn.Conv2d(3, stem, 3, 1, 1, bias=False))
        else:
            feats.add_module("conv0", nn.Conv2d(3, stem, 7, 2, 3, bias=False))
            feats.add_module("norm0", nn.BatchNorm2d(stem))
            feats.add_module("relu0", nn.ReLU(inplace=True))
            feats.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        c = stem
        for i, n in enumerate(layers):
            feats.add_module(f"denseblock{i + 1}", DenseBlock(n, c, growth_rate, bn_size, dropout, bottleneck))
            c += n * growth_rate
            if i != len(layers) - 1:
                cout = max(1, int(c * compression))
                feats.add_module(f"transition{i + 1}", Transition(c, cout))
                c = cout
        feats.add_module("norm5", nn.BatchNorm2d(c))
        self.features = feats
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        self.output_size = num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _resolve(opts: dict[str, Any]) -> dict[str, Any]:
    cifar = bool(opts.get("cifar_stem"))
    if opts.get("layers") is None:
        opts["layers"] = [16, 16, 16] if cifar else [6, 12, 24, 16]
    if opts.get("growth_rate") is None:
        opts["growth_rate"] = 12 if cifar else 32
    return classifier_resolve()(opts)


@register_model(task="classification", input_size=(224, 224), resolve=_resolve)
def densenet_bc(width: float = 1.0, layers: list[int] | None = None, growth_rate: int | None = None,
                compression: float = 0.5, bottleneck: bool = True, num_classes: int | None = None,
                cifar_stem: bool = False, dropout: float = 0.0, input_size: list[int] | None = None) -> nn.Module:
    """DenseNet-BC: DenseNet-121 by default, DenseNet-BC-100 (k=12) with ``cifar_stem=True``."""
    cifar = bool(cifar_stem)
    growth = int(growth_rate) if growth_rate is not None else (12 if cifar else 32)
    check_positive("densenet_bc", width=width, growth_rate=growth, compression=compression)
    blocks = layers if layers is not None else ([16, 16, 16] if cifar else [6, 12, 24, 16])
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise FcbenchError(f"model 'densenet_bc': layers (block_config) must be a non-empty list, got {blocks!r}")
    blocks = check_layers("densenet_bc", blocks, len(blocks))
    if compression > 1:
        raise FcbenchError(f"model 'densenet_bc': compression must be in (0, 1], got {compression}")
    growth = max(1, int(round(growth * float(width))))
    stem = 2 * growth if cifar else max(1, int(round(64 * float(width))))
    classes = int(num_classes) if num_classes is not None else (10 if cifar else 1000)
    return DenseNet(blocks, growth, classes, cifar, float(compression), bool(bottleneck), float(dropout), stem)
