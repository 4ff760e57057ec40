"""SSD anchors (default boxes) as a pure function of the detector's options. numpy only.

The detector's feature maps are fixed by its input size: the backbone halves the size five times
(``ceil(n / 2)`` each: a 3x3 stride-2 convolution with padding 1) to its first tap at stride 16,
once more to stride 32, and each extra layer halves it again until 1x1 (or ``extra_layers`` run
out). Map ``k`` of ``m`` gets scale ``s_k = min_scale + (max_scale - min_scale) * k / (m - 1)``
and, at every cell centre, boxes of aspect ratio 1 at ``s_k`` and at ``sqrt(s_k * s_(k+1))``, and of
ratios ``r`` and ``1/r`` for each ``r`` in ``aspect_ratios`` (width ``s_k * sqrt(r)``, height
``s_k / sqrt(r)``): ``2 + 2 * len(aspect_ratios)`` per cell. Order: map, then row, then column,
then box kind -- the order of the model's output rows. Boxes are ``cx, cy, w, h`` normalised to
[0, 1] and clipped to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULTS: dict[str, Any] = {"input_size": [300, 300], "extra_layers": 4, "min_scale": 0.2, "max_scale": 0.95,
                            "aspect_ratios": [2.0, 3.0]}
VARIANCES = (0.1, 0.2)  # centre, size


def _half(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2
    return n


def feature_maps(input_size: Sequence[int] | int, extra_layers: int = 4) -> list[tuple[int, int]]:
    """(H, W) of every map the head predicts on: the taps at stride 16 and 32, then each extra layer
    (stride 2) while the map is larger than 1x1 and ``extra_layers`` allow."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))
    maps = [(_half(h, 4), _half(w, 4)), (_half(h, 5), _half(w, 5))]
    for _ in range(int(extra_layers)):
        ph, pw = maps[-1]
        if ph == 1 and pw == 1:
            break
        maps.append((_half(ph, 1), _half(pw, 1)))
    return maps


def anchors_per_cell(aspect_ratios: Sequence[float]) -> int:
    return 2 + 2 * len(aspect_ratios)


def config(options: Mapping[str, Any]) -> dict[str, Any]:
    """The anchor settings of a detector's options (or of a manifest's ``extra.detection.anchors``)."""
    src = options.get("anchors", options) if isinstance(options.get("anchors"), Mapping) else options
    out = {k: src.get(k, v) if src.get(k) is not None else v for k, v in DEFAULTS.items()}
    size = out["input_size"]
    out["input_size"] = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
    out["aspect_ratios"] = [float(r) for r in out["aspect_ratios"]]
    out["extra_layers"] = int(out["extra_layers"])
    out["min_scale"], out["max_scale"] = float(out["min_scale"]), float(out["max_scale"])
    return out


def anchors_for(options: Mapping[str, Any]) -> np.ndarray:
    """The anchors ``[A, 4]`` (cx, cy, w, h, normalised, float32) of a detector with ``options``
    (its model options, or the ``anchors`` config a manifest carries)."""
    cfg = config(options)
    maps = feature_maps(cfg["input_size"], cfg["extra_layers"])
    m = len(maps)
    lo, hi = cfg["min_scale"], cfg["max_scale"]
    scales = [lo + (hi - lo) * k / max(1, m - 1) for k in range(m)] + [1.0]
    out = []
    for k, (fh, fw) in enumerate(maps):
        s, s_next = scales[k], scales[k + 1]
        shapes = [(s, s), (math.sqrt(s * s_next),) * 2]
        for r in cfg["aspect_ratios"]:
            q = math.sqrt(r)
            shapes += [(s * q, s / q), (s / q, s * q)]
        wh = np.asarray(shapes, np.float64)  # [P, 2]
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        centres = np.stack([cx.ravel(), cy.ravel()], axis=1)  # [fh*fw, 2], row-major
        grid = np.concatenate([np.repeat(centres, len(wh), axis=0), np.tile(wh, (len(centres), 1))], axis=1)
        out.append(grid)
    return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def decode_config(options: Mapping[str, Any], class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """What a manifest carries (``extra.detection``) so that any runtime's raw output can be decoded:
    the anchor settings, the classes and the raw output's layout."""
    cfg = config(options)
    k = int(options["num_classes"])
    names = [str(c) for c in class_names] if class_names is not None else [f"class{c}" for c in range(k)]
    a = len(anchors_for(cfg))
    return {"num_classes": k, "class_names": names, "anchors": cfg, "variances": list(VARIANCES),
            "num_anchors": a, "raw_shape": [a, 5 + k],
            "layout": "box offsets dx dy dw dh (centre-size, variances 0.1/0.2), background logit, class logits"}
