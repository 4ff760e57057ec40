"""ResNet-18/34/50 classifiers in torchvision's layout (torchvision weights load strictly).

Stem ``conv1`` 7x7 s2 + ``bn1`` + ReLU + ``maxpool`` 3x3 s2; ``layer1..layer4`` of BasicBlocks
(18/34) or Bottlenecks (50, stride on the 3x3 conv, "v1.5"), widths 64/128/256/512 (x4 for
Bottleneck); global average pool, optional dropout, ``fc``. ``cifar_stem=True`` swaps the stem
for a 3x3 stride-1 conv without max-pool (the usual CIFAR-10 ResNet at 32x32, 10 classes).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fcbench.models.registry import (
    Resolver,
    check_layers,
    check_positive,
    classifier_resolve,
    register_model,
    scaled,
)

DEPTHS: dict[str, list[int]] = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3]}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(cin, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], width: float = 1.0,
                 num_classes: int = 1000, cifar_stem: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride if j == 0 else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.output_size = num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


def _resolver(arch: str) -> Resolver:
    base = classifier_resolve()

    def resolve(opts: dict[str, Any]) -> dict[str, Any]:
        if opts.get("layers") is None:
            opts["layers"] = list(DEPTHS[arch])
        return base(opts)

    return resolve


def _build(arch: str, block: type[BasicBlock | Bottleneck], width: float, layers: list[int] | None,
           num_classes: int | None, cifar_stem: bool, dropout: float) -> ResNet:
    check_positive(arch, width=width)
    depth = check_layers(arch, layers if layers is not None else DEPTHS[arch], 4)
    if min(depth) < 1:
        raise ValueError(f"every stage needs at least one block (layers={depth})")
    classes = int(num_classes) if num_classes is not None else (10 if cifar_stem else 1000)
    return ResNet(block, depth, width, classes, bool(cifar_stem), float(dropout))


@register_model(task="classification", input_size=(224, 224), resolve=_resolver("resnet18"))
def resnet18(width: float = 1.0, layers: list[int] | None = None, num_classes: int | None = None,
             cifar_stem: bool = False, dropout: float = 0.0, input_size: list[int] | None = None) -> nn.Module:
    """ResNet-18 (BasicBlock, layers [2, 2, 2, 2]); 11,689,512 params at 1000 classes."""
    return _build("resnet18", BasicBlock, width, layers, num_classes, cifar_stem, dropout)


@register_model(task="classification", input_size=(224, 224), resolve=_resolver("resnet34"))
def resnet34(width: float = 1.0, layers: list[int] | None = None, num_classes: int | None = None,
             cifar_stem: bool = False, dropout: float = 0.0, input_size: list[int] | None = None) -> nn.Module:
    """ResNet-34 (BasicBlock, layers [3, 4, 6, 3])."""
    return _build("resnet34", BasicBlock, width, layers, num_classes, cifar_stem, dropout)


@register_model(task="classification", input_size=(224, 224), resolve=_resolver("resnet50"))
def resnet50(width: float = 1.0, layers: list[int] | None = None, num_classes: int | None = None,
             cifar_stem: bool = False, dropout: float = 0.0, input_size: list[int] | None = None) -> nn.Module:
    """ResNet-50 (Bottleneck, layers [3, 4, 6, 3])."""
    return _build("resnet50", Bottleneck, width, layers, num_classes, cifar_stem, dropout)
