"""A hand-weighted two-part conv detector of bright patches and toy videos for the gating and pipeline tests.

The detector is real convolutions with weights set by hand, split as motion gating splits a detector:

* ``front``: a 4 x 4 stride-4 convolution then ReLU: per 4 x 4 cell, channels ``relu(mean(c) - 0.5)`` and
  ``relu(0.5 - mean(c))`` for c in R, G, B (6 channels, a 16 x 16 grid for a 64 x 64 frame);
* ``back``: a 1 x 1 convolution ``sum(bright) - sum(dark) - 0.6``: positive on bright cells.

:func:`decode_cells` turns the back's map into one box per 4-connected group of positive cells
(normalised x1 y1 x2 y2, the score the group's peak). On the dark, saturated background a bright
patch's feature vector is orthogonal to the background's, so ``Diff = 1`` where a bright patch moved.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CELL = 4
SIZE = 64


def toy_detector() -> tuple[nn.Module, nn.Module]:
    """(front, back) with the weights of the module docstring."""
    front_conv = nn.Conv2d(3, 6, CELL, stride=CELL)
    back = nn.Conv2d(6, 1, 1)
    with torch.no_grad():
        front_conv.weight.zero_()
        for c in range(3):
            front_conv.weight[c, c] = 1.0 / CELL**2
            front_conv.weight[3 + c, c] = -1.0 / CELL**2
        front_conv.bias.copy_(torch.tensor([-0.5] * 3 + [0.5] * 3))
        back.weight.copy_(torch.tensor([1.0, 1, 1, -1, -1, -1]).reshape(1, 6, 1, 1))
        back.bias.fill_(-0.6)
    return nn.Sequential(front_conv, nn.ReLU()).eval(), back.eval()


def onnx_parts(folder) -> tuple:
    """The toy detector's front and back exported to two ONNX files in ``folder`` and run by ONNX Runtime, as
    numpy callables (skips the test when onnxruntime is not installed)."""
    import warnings

    import pytest

    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    out = []
    for name, module, shape in zip(("front", "back"), toy_detector(), ((1, 3, SIZE, SIZE), (1, 6, 16, 16)),
                                   strict=True):
        path = str(folder / f"{name}.onnx")
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (torch.zeros(shape),), path, input_names=["x"], output_names=["y"],
                              dynamo=False)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        out.append(lambda x, sess=sess: sess.run(None, {"x": np.asarray(x, np.float32)})[0])
    return tuple(out)


def components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected groups of True cells, in raster order of their first cell."""
    seen = np.zeros_like(mask, dtype=bool)
    out = []
    for r0, c0 in zip(*np.nonzero(mask), strict=True):
        if seen[r0, c0]:
            continue
        stack, group = [(int(r0), int(c0))], []
        seen[r0, c0] = True
        while stack:
            r, c = stack.pop()
            group.append((r, c))
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    stack.append((rr, cc))
        out.append(group)
    return out


def decode_cells(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The back's ``[1, 1, H, W]`` map -> one normalised box per group of positive cells, its peak as score."""
    m = np.asarray(raw)[0, 0]
    h, w = m.shape
    boxes, scores = [], []
    for group in components(m > 0):
        rows, cols = [r for r, _ in group], [c for _, c in group]
        boxes.append([min(cols) / w, min(rows) / h, (max(cols) + 1) / w, (max(rows) + 1) / h])
        scores.append(max(float(m[r, c]) for r, c in group))
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
            np.zeros(len(boxes), np.int64))


def background(seed: int = 0) -> np.ndarray:
    """A dark, saturated 64 x 64 RGB background, one random colour per 4 x 4 cell (float in [0, 1])."""
    rng = np.random.default_rng(seed)
    cells = rng.uniform(0.0, 0.4, size=(SIZE // CELL, SIZE // CELL, 3))
    return np.repeat(np.repeat(cells, CELL, axis=0), CELL, axis=1)


STILL_BOX = (8, 8, 16, 16)  # x1 y1 x2 y2 pixels of the bright object that never moves


def toy_video(seed: int = 0, noise: float = 2 / 255) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """24 frames (uint8 HWC): a still bright square at ``STILL_BOX`` throughout; frames 0-5 static; a white
    8 x 8 square crossing row 40-48 by 8 px a frame in frames 6-13; frames 14-23 static again. Returns the
    frames, the ground truth per frame (the *moving* object's normalised box, as CDNet2014 marks motion) and
    each frame's stretch ('static' or 'moving'). Per-frame noise of ``noise``."""
    rng = np.random.default_rng(seed + 1)
    bg = background(seed)
    x1, y1, x2, y2 = STILL_BOX
    bg[y1:y2, x1:x2] = 0.9
    frames, truth, stretch = [], [], []
    for i in range(24):
        f = bg.copy()
        gt = np.zeros((0, 4), np.float32)
        if 6 <= i <= 13:
            x = (i - 6) * 8
            f[40:48, x:x + 8] = 1.0
            gt = np.array([[x / SIZE, 40 / SIZE, (x + 8) / SIZE, 48 / SIZE]], np.float32)
        f = np.clip(f + rng.uniform(-noise, noise, f.shape), 0, 1)
        frames.append(np.rint(f * 255).astype(np.uint8))
        truth.append(gt)
        stretch.append("moving" if 6 <= i <= 13 else "static")
    return frames, truth, stretch


def to_input(frame: np.ndarray) -> np.ndarray:
    """uint8 HWC -> float32 [1, 3, H, W] in [0, 1], the toy detector's input."""
    return (np.asarray(frame, np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def tp_fp(boxes: np.ndarray, truth: np.ndarray, thr: float = 0.5) -> tuple[int, int]:
    """True and false positives of one frame at IoU >= ``thr``, each truth matched once (boxes by order)."""
    used, tp = set(), 0
    for b in boxes:
        hit = next((k for k, t in enumerate(truth) if k not in used and iou(b, t) >= thr), None)
        if hit is not None:
            used.add(hit)
            tp += 1
    return tp, len(boxes) - tp
