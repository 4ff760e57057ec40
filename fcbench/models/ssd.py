"""SSDLite on a MobileNetV2 backbone (Sandler et al. 2018, section 6.2): ``ssd-mobilenetv2``.

Backbone layers are indexed as the MobileNetV2 papers do: **0** the stem conv (3x3, stride 2),
**1..17** the inverted residual blocks, **18** the last 1x1 conv (``features.0`` .. ``features.18``,
torchvision's keys). The head taps two maps: the expansion (first 1x1 conv) of block 14, the first
block at stride 32, whose output is still at stride 16; and layer 18's output at stride 32. Extra
layers (1x1 conv to half the channels, 3x3 depthwise stride 2, 1x1 conv; 512, 256, 256, 128
channels x ``width``) halve the map down to 1x1, at most ``extra_layers`` of them: at 300x300 the
maps are 19, 10, 5, 3, 2 and 1 cells wide. Each map has an SSDLite predictor per output
(3x3 depthwise conv + BN + ReLU6, then a 1x1 conv) for box offsets and for class logits.

The module returns ONE tensor ``[B, A, 4 + 1 + num_classes]``: box offsets (centre-size, variances
0.1/0.2), the background logit, the class logits; ``A`` anchors in
:func:`fcbench.detection.anchors.anchors_for` order (a pure function of the options), so any
runtime's raw output decodes in postprocessing (:mod:`fcbench.detection.postprocess`).

``model.split_at(m) -> (front, back)``: ``front`` runs backbone layers ``0..m`` (its output is layer
``m``'s feature map) and ``back`` the rest, ``back(front(x)) == model(x)``; ``m`` must lie before
the first tap (``0..13``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fcbench.data.preprocess import IMAGENET
from fcbench.detection.anchors import anchors_for, anchors_per_cell, feature_maps
from fcbench.errors import FcbenchError
from fcbench.models.mobilenet import V2_LAYERS, V2_STAGES, ConvBNAct, InvertedResidual, make_divisible
from fcbench.models.registry import check_positive, register_model

TAP_BLOCK = 14  # the block whose expansion is the first tap (stride 16); it is the first to reach stride 32
LAST_LAYER = 18
EXTRA_CHANNELS = (512, 256, 256, 128)
NAME = "ssd-mobilenetv2"


def _predictor(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvBNAct(cin, cin, 3, groups=cin), nn.Conv2d(cin, cout, 1))


def _extra(cin: int, cout: int) -> nn.Sequential:
    mid = max(8, cout // 2)
    return nn.Sequential(ConvBNAct(cin, mid, 1), ConvBNAct(mid, mid, 3, 2, groups=mid), ConvBNAct(mid, cout, 1))


def _head_forward(maps: list[Tensor], box_heads: nn.ModuleList, cls_heads: nn.ModuleList, width: int) -> Tensor:
    outs = []
    for f, box, cls in zip(maps, box_heads, cls_heads, strict=True):
        n = f.shape[0]
        b = box(f).permute(0, 2, 3, 1).reshape(n, -1, 4)
        c = cls(f).permute(0, 2, 3, 1).reshape(n, -1, width - 4)
        outs.append(torch.cat([b, c], dim=2))
    return torch.cat(outs, dim=1)


class _Rest(nn.Module):
    """From the input of backbone layer ``start`` to the raw output (the detector's tail)."""

    def __init__(self, model: SSDMobileNetV2, start: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(*[model.features[i] for i in range(start, TAP_BLOCK)])
        self.tap_block = model.features[TAP_BLOCK]
        self.post = nn.Sequential(*[model.features[i] for i in range(TAP_BLOCK + 1, LAST_LAYER + 1)])
        self.extras = model.extras
        self.box_heads = model.box_heads
        self.cls_heads = model.cls_heads
        self.width = model.output_width

    def forward(self, x: Tensor) -> Tensor:
        return _tail(self.pre(x), self.tap_block, self.post, self.extras, self.box_heads, self.cls_heads, self.width)


def _tail(x: Tensor, tap_block: nn.Module, post: nn.Module, extras: nn.ModuleList, box_heads: nn.ModuleList,
          cls_heads: nn.ModuleList, width: int) -> Tensor:
    conv = tap_block.conv
    t1 = conv[0](x)  # the expansion: stride 16
    x = post(conv[1:](t1))
    maps = [t1, x]
    for e in extras:
        x = e(x)
        maps.append(x)
    return _head_forward(maps, box_heads, cls_heads, width)


class SSDMobileNetV2(nn.Module):
    def __init__(self, num_classes: int, width: float, input_size: list[int], extra_layers: int,
                 anchor_options: dict[str, Any]) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.output_width = 4 + 1 + self.num_classes
        cin = make_divisible(32 * width)
        features: list[nn.Module] = [ConvBNAct(3, cin, 3, 2)]
        for (t, c, s), n in zip(V2_STAGES, V2_LAYERS, strict=True):
            cout = make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = make_divisible(1280 * max(1.0, width))
        features.append(ConvBNAct(cin, last, 1))
        self.features = nn.Sequential(*features)
        tap_channels = self.features[TAP_BLOCK].conv[0][0].out_channels
        maps = feature_maps(input_size, extra_layers)
        channels = [tap_channels, last]
        extras = []
        for k in range(len(maps) - 2):
            cout = make_divisible(EXTRA_CHANNELS[min(k, len(EXTRA_CHANNELS) - 1)] * width)
            extras.append(_extra(channels[-1], cout))
            channels.append(cout)
        self.extras = nn.ModuleList(extras)
        per_cell = anchors_per_cell(anchor_options["aspect_ratios"])
        self.box_heads = nn.ModuleList(_predictor(c, per_cell * 4) for c in channels)
        self.cls_heads = nn.ModuleList(_predictor(c, per_cell * (1 + self.num_classes)) for c in channels)
        self.num_anchors = sum(h * w for h, w in maps) * per_cell
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for heads in (self.box_heads, self.cls_heads):
            for h in heads:
                nn.init.normal_(h[1].weight, 0.0, 0.03)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features[:TAP_BLOCK](x)
        return _tail(x, self.features[TAP_BLOCK], self.features[TAP_BLOCK + 1:], self.extras, self.box_heads,
                     self.cls_heads, self.output_width)

    def anchors(self):
        """The anchors ``[A, 4]`` (cx, cy, w, h normalised) of this model's output rows."""
        return anchors_for(self.fcbench_options)

    def split_at(self, m: int) -> tuple[nn.Module, nn.Module]:
        """``(front, back)``: backbone layers ``0..m``, and the rest (both plain modules sharing this
        model's weights); ``back(front(x))`` equals ``self(x)``. ``m`` must be in ``0..13``."""
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < TAP_BLOCK:
            raise FcbenchError(f"{NAME}: layer {m!r} cannot split the model: the backbone's layers are 0 (stem) .. "
                               f"{LAST_LAYER} and the head taps block {TAP_BLOCK}; pick m in 0..{TAP_BLOCK - 1}")
        front = nn.Sequential(*[self.features[i] for i in range(m + 1)])
        back = _Rest(self, m + 1)
        return front.train(self.training), back.train(self.training)  # in the model's mode (eval, once built)


def _resolve(opts: dict[str, Any]) -> dict[str, Any]:
    if opts.get("input_size") is None:
        opts["input_size"] = [300, 300]
    return opts


@register_model(task="detection", input_size=(300, 300), resolve=_resolve, preprocessing=IMAGENET)
def ssd_mobilenetv2(num_classes: int = 1, width: float = 1.0, input_size: list[int] | None = None,
                    extra_layers: int = 4, min_scale: float = 0.2, max_scale: float = 0.95,
                    aspect_ratios: list[float] | None = (2.0, 3.0)) -> nn.Module:
    """SSDLite-MobileNetV2 detector; ``num_classes`` object classes (background is added inside)."""
    check_positive(NAME, width=width, num_classes=num_classes)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise FcbenchError(f"model '{NAME}': option num_classes must be a whole number, got {num_classes!r}")
    size = [int(input_size), int(input_size)] if isinstance(input_size, int) else [int(s) for s in input_size]
    if min(size) < 32:
        raise FcbenchError(f"model '{NAME}': input_size {size} is too small; the backbone needs at least 32x32")
    if not isinstance(extra_layers, int) or extra_layers < 0:
        raise FcbenchError(f"model '{NAME}': option extra_layers must be a whole number >= 0, got {extra_layers!r}")
    if not 0 < min_scale < max_scale <= 1:
        raise FcbenchError(f"model '{NAME}': anchor scales need 0 < min_scale < max_scale <= 1, got "
                           f"{min_scale!r} and {max_scale!r}")
    ratios = [float(r) for r in (aspect_ratios or [])]
    if any(r <= 0 for r in ratios):
        raise FcbenchError(f"model '{NAME}': aspect_ratios must be positive, got {aspect_ratios!r}")
    model = SSDMobileNetV2(num_classes, float(width), size, extra_layers, {"aspect_ratios": ratios})
    model.output_size = int(num_classes)
    return model
