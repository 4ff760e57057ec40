"""AlexNet and AlexNet-Separable classifiers.

``alexnet`` at ImageNet size is torchvision's layout and keys (61,100,840 params at 1000
classes; torchvision weights load strictly)::

    features:   0 conv 11x11 s4 p2 3->64, ReLU, 2 maxpool 3 s2,
                3 conv 5x5 p2 64->192, ReLU, 5 maxpool 3 s2,
                6 conv 3x3 192->384, ReLU, 8 conv 3x3 384->256, ReLU, 10 conv 3x3 256->256, ReLU,
                12 maxpool 3 s2
    avgpool:    adaptive average pool to 6x6
    classifier: dropout, 1 Linear 256*6*6->4096, ReLU, dropout, 4 Linear 4096->4096, ReLU, 6 Linear ->classes

The CIFAR variant (``cifar_stem``; chosen automatically when the input is smaller than
64x64) is the small AlexNet of Keras-style CIFAR-10 papers: the first conv is 5x5 stride 1
(pad 2), the three 3x3/s2 max-pools take 32 -> 15 -> 7 -> 3, the pool is 3x3, the hidden
layers have 1024 units (``hidden``) and the default is 10 classes.

``alexnet_separable`` is the same network with every conv except the first (3 input channels)
replaced by a depthwise-separable conv, Keras ``SeparableConv2D`` style: depthwise kxk (same
stride/padding, no bias) followed by pointwise 1x1 (with bias), then ReLU.
``width`` scales the conv channels and the hidden units.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from fcbench.errors import FcbenchError
from fcbench.models.registry import check_positive, register_model, scaled

CONVS = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]  # (out, k, s, pad)
MIN_IMAGENET = 63  # smallest input the ImageNet stem accepts


class SeparableConv2d(nn.Module):
    """Depthwise kxk (no bias) + pointwise 1x1 (bias)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel, stride, padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class AlexNet(nn.Module):
    def __init__(self, width: float = 1.0, num_classes: int = 1000, cifar_stem: bool = False, dropout: float = 0.5,
                 hidden: int = 4096, separable: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, (c, k, s, p) in enumerate(CONVS):
            if i == 0 and cifar_stem:
                k, s, p = 5, 1, 2
            cout = scaled(c, width)
            if separable and i > 0:
                layers.append(SeparableConv2d(cin, cout, k, s, p))
            else:
                layers.append(nn.Conv2d(cin, cout, k, s, p))
            layers.append(nn.ReLU(inplace=True))
            if i in (0, 1, 4):
                layers.append(nn.MaxPool2d(3, 2))
            cin = cout
        self.features = nn.Sequential(*layers)
        pool = 3 if cifar_stem else 6
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(cin * pool * pool, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        self.output_size = num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _final_size(n: int, cifar: bool) -> int:
    n = n if cifar else (n + 4 - 11) // 4 + 1
    for _ in range(3):  # the three max-pools (3x3, stride 2; the convs between keep the size)
        n = (n - 3) // 2 + 1
    return n


def _resolve(opts: dict[str, Any]) -> dict[str, Any]:
    size = opts.get("input_size")
    if isinstance(size, int):
        size = [size, size]
    if opts.get("cifar_stem") is None:
        opts["cifar_stem"] = bool(size is not None and min(size) < 64)
    cifar = opts["cifar_stem"]
    if size is None:
        opts["input_size"] = [32, 32] if cifar else [224, 224]
    if opts.get("num_classes") is None:
        opts["num_classes"] = 10 if cifar else 1000
    if opts.get("hidden") is None:
        opts["hidden"] = 1024 if cifar else 4096
    return opts


def _build(name: str, separable: bool, width: float, num_classes: int | None, cifar_stem: bool | None,
           dropout: float, hidden: int | None, input_size: list[int] | None) -> AlexNet:
    opts = _resolve({"cifar_stem": cifar_stem, "num_classes": num_classes, "hidden": hidden,
                     "input_size": input_size})
    check_positive(name, width=width, hidden=opts["hidden"], num_classes=opts["num_classes"])
    cifar = bool(opts["cifar_stem"])
    h, w = opts["input_size"]
    if min(_final_size(h, cifar), _final_size(w, cifar)) < 1:
        hint = "" if cifar else "; pass cifar_stem=true for small inputs"
        least = 15 if cifar else MIN_IMAGENET
        raise FcbenchError(f"model '{name}': input_size {h}x{w} is too small (at least {least}x{least}{hint})")
    hid = scaled(int(opts["hidden"]), width)
    return AlexNet(width, int(opts["num_classes"]), cifar, float(dropout), hid, separable)


@register_model(task="classification", input_size=(224, 224), resolve=_resolve)
def alexnet(width: float = 1.0, num_classes: int | None = None, cifar_stem: bool | None = None,
            dropout: float = 0.5, hidden: int | None = None, input_size: list[int] | None = None) -> nn.Module:
    """AlexNet (torchvision layout at ImageNet size, small CIFAR variant below 64x64)."""
    return _build("alexnet", False, width, num_classes, cifar_stem, dropout, hidden, input_size)


@register_model(task="classification", input_size=(224, 224), resolve=_resolve)
def alexnet_separable(width: float = 1.0, num_classes: int | None = None, cifar_stem: bool | None = None,
                      dropout: float = 0.5, hidden: int | None = None, input_size: list[int] | None = None
                      ) -> nn.Module:
    """AlexNet with depthwise-separable convs after the first."""
    return _build("alexnet_separable", True, width, num_classes, cifar_stem, dropout, hidden, input_size)
