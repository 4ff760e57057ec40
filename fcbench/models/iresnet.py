"""IResNet face-embedding backbones r18/r34/r50/r100 (ArcFace's improved ResNet).

State-dict keys and shapes follow insightface ``recognition/arcface_torch/backbones/iresnet.py``,
so its ``backbone.pth`` files load strictly into ``create("r50")`` etc.:

- stem: ``conv1`` (3x3, stride 1, no bias), ``bn1``, ``prelu``;
- ``layer1..layer4``: IBasicBlocks ``bn1 -> conv1(3x3) -> bn2 -> prelu -> conv2(3x3, stride) -> bn3``
  plus ``downsample`` = ``Sequential(conv1x1(stride), BN)`` on the first block of every stage
  (every stage has stride 2, so each stage halves H and W: 112 -> 56 -> 28 -> 14 -> 7);
- head: ``bn2`` (BN2d), dropout, flatten, ``fc`` (Linear C4*h*w -> embedding), ``features``
  (BatchNorm1d whose weight is fixed to 1.0 and not trained).

All BatchNorms use eps=1e-5 and PyTorch's default momentum 0.1, as insightface does.
``width`` scales the stage widths 64/128/256/512 and ``input_size`` sets ``fc``'s input size.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fcbench.models.registry import Resolver, check_layers, check_positive, register_model, scaled

DEPTHS: dict[str, list[int]] = {
    "r18": [2, 2, 2, 2],
    "r34": [3, 4, 6, 3],
    "r50": [3, 4, 14, 3],
    "r100": [3, 13, 30, 3],
}
BN_EPS = 1e-5


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block of IResNet (BN first, PReLU between the convs)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


def _out_hw(size: int, stages: int = 4) -> int:
    for _ in range(stages):  # 3x3 conv, padding 1, stride 2
        size = (size + 1) // 2
    return size


class IResNet(nn.Module):
    """IResNet trunk + fc + BN1d embedding head."""

    def __init__(self, layers: list[int], width: float = 1.0, embedding_size: int = 512, dropout: float = 0.0,
                 input_size: tuple[int, int] = (112, 112)) -> None:
        super().__init__()
        widths = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = _conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        cin = widths[0]
        for i, (c, n) in enumerate(zip(widths, layers, strict=True)):
            blocks = [IBasicBlock(cin, c, stride=2)] + [IBasicBlock(c, c) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = c
        self.bn2 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        h, w = (_out_hw(s) for s in input_size)
        self.fc = nn.Linear(cin * h * w, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad = False
        self.output_size = embedding_size

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def _resolver(arch: str) -> Resolver:
    def resolve(opts: dict[str, Any]) -> dict[str, Any]:
        if opts.get("layers") is None:
            opts["layers"] = list(DEPTHS[arch])
        return opts

    return resolve


def _build(arch: str, width: float, layers: list[int] | None, embedding_size: int, dropout: float,
           input_size: list[int]) -> IResNet:
    check_positive(arch, width=width, embedding_size=embedding_size)
    depth = check_layers(arch, layers if layers is not None else DEPTHS[arch], 4)
    if min(depth) < 1:
        raise ValueError(f"every stage needs at least one block (layers={depth})")
    return IResNet(depth, width, int(embedding_size), float(dropout), (int(input_size[0]), int(input_size[1])))


@register_model(task="embedding", input_size=(112, 112), resolve=_resolver("r18"))
def r18(width: float = 1.0, layers: list[int] | None = None, embedding_size: int = 512, dropout: float = 0.0,
        input_size: list[int] | None = None) -> nn.Module:
    """IResNet-18 (layers [2, 2, 2, 2])."""
    return _build("r18", width, layers, embedding_size, dropout, input_size or [112, 112])


@register_model(task="embedding", input_size=(112, 112), resolve=_resolver("r34"))
def r34(width: float = 1.0, layers: list[int] | None = None, embedding_size: int = 512, dropout: float = 0.0,
        input_size: list[int] | None = None) -> nn.Module:
    """IResNet-34 (layers [3, 4, 6, 3])."""
    return _build("r34", width, layers, embedding_size, dropout, input_size or [112, 112])


@register_model(task="embedding", input_size=(112, 112), resolve=_resolver("r50"))
def r50(width: float = 1.0, layers: list[int] | None = None, embedding_size: int = 512, dropout: float = 0.0,
        input_size: list[int] | None = None) -> nn.Module:
    """IResNet-50 (layers [3, 4, 14, 3])."""
    return _build("r50", width, layers, embedding_size, dropout, input_size or [112, 112])


@register_model(task="embedding", input_size=(112, 112), resolve=_resolver("r100"))
def r100(width: float = 1.0, layers: list[int] | None = None, embedding_size: int = 512, dropout: float = 0.0,
         input_size: list[int] | None = None) -> nn.Module:
    """IResNet-100 (layers [3, 13, 30, 3])."""
    return _build("r100", width, layers, embedding_size, dropout, input_size or [112, 112])
