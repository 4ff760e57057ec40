"""MobileNetV1 (depthwise-separable convs) and MobileNetV2 (inverted residuals) classifiers.

V2 follows torchvision's layout and keys (3,504,872 params at 1000 classes): ``features.0``
conv 3x3 s2 -> 32, 17 inverted residuals (expand t, out c, repeats n, first stride s:
(1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1)), ``features.18``
conv 1x1 -> 1280, then dropout 0.2 + Linear. Channels are ``width``-scaled and rounded to a
multiple of 8; ``layers`` overrides the 7 repeat counts.

V1 (Howard et al. 2017): ``features.0`` conv 3x3 s2 -> 32, then depthwise-separable blocks
(depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU) in 5 stages of widths
64/128/256/512/1024 with first strides 1/2/2/2/2 and repeats [1, 2, 2, 6, 2] (``layers``);
global average pool, dropout, Linear (4,231,976 params at 1000 classes).

``cifar_stem=True`` makes the first conv stride 1 (for 32x32 inputs; default 10 classes).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fcbench.models.registry import Resolver, check_layers, check_positive, classifier_resolve, register_model

V1_STAGES = [(64, 1), (128, 2), (256, 2), (512, 2), (1024, 2)]  # (channels, first stride)
V1_LAYERS = [1, 2, 2, 6, 2]
V2_STAGES = [(1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1)]  # (t, c, s)
V2_LAYERS = [1, 2, 3, 4, 3, 3, 1]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never going below 90% of ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + BN + ReLU/ReLU6, keys ``0``/``1`` like torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu6: bool = True) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, layers: list[int], width: float = 1.0, num_classes: int = 1000, cifar_stem: bool = False,
                 dropout: float = 0.2) -> None:
        super().__init__()
        cin = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [ConvBNAct(3, cin, 3, 1 if cifar_stem else 2)]
        for (t, c, s), n in zip(V2_STAGES, layers, strict=True):
            cout = make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNAct(cin, last, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        _init(self)
        self.output_size = num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))


class MobileNetV1(nn.Module):
    def __init__(self, layers: list[int], width: float = 1.0, num_classes: int = 1000, cifar_stem: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        cin = max(1, int(round(32 * width)))
        features: list[nn.Module] = [ConvBNAct(3, cin, 3, 1 if cifar_stem else 2, relu6=False)]
        for (c, s), n in zip(V1_STAGES, layers, strict=True):
            cout = max(1, int(round(c * width)))
            for i in range(n):
                features.append(nn.Sequential(
                    ConvBNAct(cin, cin, 3, s if i == 0 else 1, groups=cin, relu6=False),
                    ConvBNAct(cin, cout, 1, relu6=False),
                ))
                cin = cout
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))
        _init(self)
        self.output_size = num_classes

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _resolver(default_layers: list[int]) -> Resolver:
    base = classifier_resolve()

    def resolve(opts: dict[str, Any]) -> dict[str, Any]:
        if opts.get("layers") is None:
            opts["layers"] = list(default_layers)
        return base(opts)

    return resolve


def _classes(num_classes: int | None, cifar_stem: bool) -> int:
    return int(num_classes) if num_classes is not None else (10 if cifar_stem else 1000)


@register_model(task="classification", input_size=(224, 224), resolve=_resolver(V1_LAYERS))
def mobilenet_v1(width: float = 1.0, layers: list[int] | None = None, num_classes: int | None = None,
                 cifar_stem: bool = False, dropout: float = 0.0, input_size: list[int] | None = None) -> nn.Module:
    """MobileNetV1; ``layers`` = repeats of the 5 stages (default [1, 2, 2, 6, 2])."""
    check_positive("mobilenet_v1", width=width)
    depth = check_layers("mobilenet_v1", layers if layers is not None else V1_LAYERS, 5)
    return MobileNetV1(depth, width, _classes(num_classes, cifar_stem), bool(cifar_stem), float(dropout))


@register_model(task="classification", input_size=(224, 224), resolve=_resolver(V2_LAYERS))
def mobilenet_v2(width: float = 1.0, layers: list[int] | None = None, num_classes: int | None = None,
                 cifar_stem: bool = False, dropout: float = 0.2, input_size: list[int] | None = None) -> nn.Module:
    """MobileNetV2; ``layers`` = repeats of the 7 stages (default [1, 2, 3, 4, 3, 3, 1])."""
    check_positive("mobilenet_v2", width=width)
    depth = check_layers("mobilenet_v2", layers if layers is not None else V2_LAYERS, 7)
    return MobileNetV2(depth, width, _classes(num_classes, cifar_stem), bool(cifar_stem), float(dropout))
