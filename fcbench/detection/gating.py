"""Motion gating: skip a detector's head on frames where nothing moved (the Russian dissertation's method).

The method. For frame ``i`` take the feature map ``M_i`` ``[C, H, W]`` of layer ``m`` of the detector's
backbone (the detector split at ``m``: the *front* makes ``M_i``, the *back*, i.e. the rest of the backbone
and the head, makes the detections). Keep a background map ``M_bg`` and compare per spatial cell::

    Diff(x, y) = 1 - cos(M_bg[:, y, x], M_i[:, y, x])      (0: same direction, up to 2: opposite)

* ``max Diff < lam``: the frame is *static*; the back is not run, and the background follows the scene
  slowly: ``M_bg = alpha * M_bg + (1 - alpha) * M_i``.
* otherwise the back runs, ``M_bg`` is left alone, and each box whose mean ``Diff`` over the feature
  cells it covers is ``< lam`` is dropped (an object that did not move against the background).
  (``alpha_moving < 1``, an fcbench option, off by default, lets the background follow these frames too:
  ``M_bg = alpha_moving * M_bg + (1 - alpha_moving) * M_i``; see below.)
* the first frame initialises ``M_bg = M_1`` and runs the back; its boxes are all kept (there is no
  background yet to judge motion against, so the detector's own output is all there is).

A static frame has **no detections**, not the previous frame's. This is what the running head would
give too: on a static frame every cell has ``Diff < lam``, so the mean over any box is ``< lam`` as well
and the box filter would drop every box. Skipping is therefore an exact shortcut of "run the head, then
filter", never an approximation, and a gated detector's mAP on a static stretch is that of an empty
output: unchanged or better wherever the ground truth marks moving objects (as CDNet2014's does, which
is where the dissertation measured 0.326 -> 0.548). Carrying the last frame's boxes forward would keep
boxes the filter rejects and repeat a false positive on every static frame.

Boxes are mapped onto the ``H x W`` grid as the cells whose centres lie inside the box (normalised
``x1, y1, x2, y2``); a box smaller than a cell that contains no centre uses the cell under its own
centre. A cell where both feature vectors are zero has ``Diff = 0`` (nothing there, nothing changed);
where only one is zero, ``cos = 0`` and ``Diff = 1``.

Defaults: ``layer = 11`` and ``lam = 0.4`` are the dissertation's (its CDNet2014 pedestrian result uses
m = 11, lambda = 0.4; counted as torchvision numbers MobileNetV2's ``features``, block 11 is a 96-channel
stride-16 block: 19 x 19 cells at 300 x 300; the detector's ``split_at`` says what m means for it).
The dissertation gives no alpha; ``alpha = 0.9`` is fcbench's choice: the background forgets half of
an old scene in about 6.6 static frames (``log 0.5 / log 0.9``), slow enough that one noisy frame does
not become background, fast enough to follow lighting drift.

One consequence of the method as given: the background learns only on static frames, so an object that
arrives and *stops* differs from the background on every later frame; those frames are never static, the
head keeps running and the object keeps its box until it leaves (a pedestrian crossing CDNet2014's scenes
leaves; an object that parks does not). ``alpha_moving`` (default 1.0: the dissertation's method) lets the
background absorb such an object over a few dozen frames (``alpha_moving = 0.95``: about 14 frames to forget
half), after which the frames are static again and skipped. Skipping stays exact either way.

Numpy only, so a device's bench worker runs it beside any runtime. Decisions are deterministic: the
same feature maps in the same order give the same decisions (float64 arithmetic, no randomness).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcbench.errors import FcbenchError

DEFAULT_LAYER = 11  # the dissertation's m
DEFAULT_LAM = 0.4  # the dissertation's lambda
DEFAULT_ALPHA = 0.9  # fcbench's choice (the dissertation gives none); see the module docstring
DEFAULT_ALPHA_MOVING = 1.0  # the dissertation: the background never learns from frames that run the head


@dataclass(frozen=True)
class GateOptions:
    """The gate's options: ``layer`` (m, where the backbone is split: used by whoever splits the detector, not
    by the gate itself), ``lam`` (lambda, a threshold on ``1 - cos`` in [0, 2]), ``alpha`` (the background's
    memory on static frames, in [0, 1): 0 replaces it with each static frame) and ``alpha_moving`` (its
    memory on frames that run the head, in [0, 1]; 1, the default, is the dissertation's method)."""

    layer: int = DEFAULT_LAYER
    lam: float = DEFAULT_LAM
    alpha: float = DEFAULT_ALPHA
    alpha_moving: float = DEFAULT_ALPHA_MOVING

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, (int, np.integer)) or self.layer < 0:
            raise FcbenchError(f"motion gating: layer must be a non-negative integer (a backbone block index), "
                               f"got {self.layer!r}")
        lam, alpha = _real(self.lam, "lam"), _real(self.alpha, "alpha")
        if not 0.0 < lam <= 2.0:
            raise FcbenchError(f"motion gating: lam must be in (0, 2] (a threshold on 1 - cos), got {lam:g}; "
                               f"the dissertation's is {DEFAULT_LAM}")
        if not 0.0 <= alpha < 1.0:
            raise FcbenchError(f"motion gating: alpha must be in [0, 1) (the background's memory), got {alpha:g}; "
                               f"the default is {DEFAULT_ALPHA}")
        alpha_moving = _real(self.alpha_moving, "alpha_moving")
        if not 0.0 <= alpha_moving <= 1.0:
            raise FcbenchError(f"motion gating: alpha_moving must be in [0, 1] (1: the background ignores frames "
                               f"that run the head, as the dissertation), got {alpha_moving:g}")
        object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "alpha_moving", alpha_moving)


def _real(v: object, name: str) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FcbenchError(f"motion gating: {name} must be a number, got {v!r}") from None
    if isinstance(v, bool) or not np.isfinite(f):
        raise FcbenchError(f"motion gating: {name} must be a finite number, got {v!r}")
    return f


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one frame.

    ``run_head``: run the back (detector head) on this frame. ``max_diff``: the largest ``Diff`` over
    the grid (0.0 on the first frame). ``diff_map``: ``Diff`` per cell ``[H, W]`` (float64), or ``None``
    on the first frame, where :meth:`MotionGate.keep` keeps every box. ``first``: this frame
    initialised the background.
    """

    run_head: bool
    max_diff: float
    diff_map: np.ndarray | None
    first: bool = False


def cosine_diff(background: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """``1 - cos`` between the channel vectors of two ``[C, H, W]`` maps, per cell: ``[H, W]`` float64."""
    b, f = np.asarray(background, dtype=np.float64), np.asarray(feature, dtype=np.float64)
    dot = np.einsum("chw,chw->hw", b, f)
    nb, nf = np.sqrt(np.einsum("chw,chw->hw", b, b)), np.sqrt(np.einsum("chw,chw->hw", f, f))
    denom = nb * nf
    cos = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    diff = 1.0 - np.clip(cos, -1.0, 1.0)
    diff[(nb == 0) & (nf == 0)] = 0.0
    return diff


def _spans(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last cell index (inclusive) on an axis of ``n`` cells for each normalised span ``[lo, hi]``:
    cells whose centres ``(k + 0.5) / n`` lie inside, else the cell under the span's centre."""
    a = np.maximum(0, np.ceil(lo * n - 0.5)).astype(np.int64)
    b = np.minimum(n - 1, np.floor(hi * n - 0.5)).astype(np.int64)
    c = np.clip(np.floor((lo + hi) / 2 * n), 0, n - 1).astype(np.int64)
    empty = a > b
    return np.where(empty, c, a), np.where(empty, c, b)


def box_cells(box: np.ndarray, grid: tuple[int, int]) -> tuple[slice, slice]:
    """The feature cells a normalised ``x1, y1, x2, y2`` box covers on an ``(H, W)`` grid, as (rows, cols)
    slices: cells whose centres lie inside the box, else the one cell under the box's centre."""
    x1, y1, x2, y2 = (np.asarray([float(v)]) for v in box)
    r0, r1 = _spans(y1, y2, grid[0])
    c0, c1 = _spans(x1, x2, grid[1])
    return slice(int(r0[0]), int(r1[0]) + 1), slice(int(c0[0]), int(c1[0]) + 1)


class MotionGate:
    """The dissertation's motion gate over one video; see the module docstring for the method.

    ``step(feature)`` once per frame, in play order, with the front's ``[C, H, W]`` map (a leading
    batch dimension of 1 is accepted), gives a :class:`Decision`; ``keep(boxes, decision.diff_map)``
    gives the mask of boxes to keep on a frame that ran the head. ``reset()`` starts a new video.
    """

    def __init__(self, layer: int = DEFAULT_LAYER, lam: float = DEFAULT_LAM, alpha: float = DEFAULT_ALPHA,
                 alpha_moving: float = DEFAULT_ALPHA_MOVING) -> None:
        self.options = GateOptions(layer=layer, lam=lam, alpha=alpha, alpha_moving=alpha_moving)
        self.background: np.ndarray | None = None
        self.frames = 0
        self.skipped = 0

    @property
    def layer(self) -> int:
        return self.options.layer

    @property
    def lam(self) -> float:
        return self.options.lam

    @property
    def alpha(self) -> float:
        return self.options.alpha

    @property
    def alpha_moving(self) -> float:
        return self.options.alpha_moving

    def reset(self) -> None:
        """Forget the background: the next frame initialises it (a new video)."""
        self.background, self.frames, self.skipped = None, 0, 0

    def _feature(self, feature: np.ndarray) -> np.ndarray:
        f = np.asarray(feature)
        if f.ndim == 4 and f.shape[0] == 1:
            f = f[0]
        if f.ndim != 3 or 0 in f.shape:
            raise FcbenchError(f"motion gating: the feature map of layer {self.layer} must be [C, H, W] "
                               f"(or [1, C, H, W]), got shape {f.shape}; split the detector at a convolutional block")
        if not np.issubdtype(f.dtype, np.number) or np.issubdtype(f.dtype, np.complexfloating):
            raise FcbenchError(f"motion gating: the feature map must be real numbers, got dtype {f.dtype}")
        if self.background is not None and f.shape != self.background.shape:
            raise FcbenchError(f"motion gating: frame {self.frames} has a feature map of shape {f.shape}, the "
                               f"video's first had {self.background.shape}; frames of one video need one size "
                               "(call reset() between videos)")
        f = f.astype(np.float64)
        if not np.all(np.isfinite(f)):
            raise FcbenchError(f"motion gating: frame {self.frames}'s feature map has NaN or inf")
        return f

    def step(self, feature: np.ndarray) -> Decision:
        """Decide for the next frame and update the background when the frame is static."""
        f = self._feature(feature)
        self.frames += 1
        if self.background is None:
            self.background = f.copy()
            return Decision(run_head=True, max_diff=0.0, diff_map=None, first=True)
        diff = cosine_diff(self.background, f)
        max_diff = float(diff.max())
        if max_diff < self.lam:
            self.background *= self.alpha
            self.background += (1.0 - self.alpha) * f
            self.skipped += 1
            return Decision(run_head=False, max_diff=max_diff, diff_map=diff)
        if self.alpha_moving < 1.0:
            self.background *= self.alpha_moving
            self.background += (1.0 - self.alpha_moving) * f
        return Decision(run_head=True, max_diff=max_diff, diff_map=diff)

    def keep(self, boxes: np.ndarray, diff_map: np.ndarray | None) -> np.ndarray:
        """Boolean mask over ``boxes`` (normalised ``[N, 4]`` x1 y1 x2 y2): True where the mean ``Diff`` over
        the box's cells is ``>= lam``. Every box is kept when ``diff_map`` is None (the first frame)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if diff_map is None:
            return np.ones(len(b), dtype=bool)
        return self.box_diff(b, diff_map) >= self.lam

    def box_diff(self, boxes: np.ndarray, diff_map: np.ndarray) -> np.ndarray:
        """Mean ``Diff`` over each box's cells (what :meth:`keep` compares with ``lam``)."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not np.all(np.isfinite(b)):
            raise FcbenchError("motion gating: a box has a NaN or inf coordinate; boxes are normalised x1 y1 x2 y2")
        d = np.asarray(diff_map, dtype=np.float64)
        if d.ndim != 2 or 0 in d.shape:
            raise FcbenchError(f"motion gating: diff_map must be a non-empty [H, W] array, got shape {d.shape}")
        r0, r1 = _spans(b[:, 1], b[:, 3], d.shape[0])
        c0, c1 = _spans(b[:, 0], b[:, 2], d.shape[1])
        sat = np.zeros((d.shape[0] + 1, d.shape[1] + 1))  # summed-area table: one lookup of 4 cells a box
        sat[1:, 1:] = d.cumsum(axis=0).cumsum(axis=1)
        total = sat[r1 + 1, c1 + 1] - sat[r0, c1 + 1] - sat[r1 + 1, c0] + sat[r0, c0]
        return total / ((r1 - r0 + 1) * (c1 - c0 + 1))

    def __repr__(self) -> str:
        extra = "" if self.alpha_moving == 1.0 else f", alpha_moving={self.alpha_moving:g}"
        return (f"MotionGate(layer={self.layer}, lam={self.lam:g}, alpha={self.alpha:g}{extra}; "
                f"{self.frames} frames, {self.skipped} skipped)")
