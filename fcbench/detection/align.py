"""Crop and align a face from a frame for the embedder: by its box, or by 5 landmarks onto ArcFace's template.

Both are one affine warp (:func:`warp_affine`, bilinear, numpy only, so it runs on a device's worker):

* :func:`crop` maps a pixel box, grown by ``margin`` (a fraction of the box's width and height added on
  each side), onto the embedder's input size: a plain resize, as :class:`~fcbench.data.preprocess.Preprocessing`
  does, so a box of another aspect is stretched. Parts of the grown box outside the frame are black.
* :func:`align` estimates the similarity transform (rotation, one scale, translation) that takes the 5
  landmarks (left eye, right eye, nose tip, left and right mouth corners, in pixels) closest, in least
  squares, to :data:`ARCFACE_TEMPLATE` (Umeyama's closed form, :func:`similarity_transform`), and warps
  the frame by it. A size other than 112 x 112 scales the template.

Coordinates are pixel centres at integers (pixel ``(0, 0)`` covers ``[-0.5, 0.5)``), the convention the
ArcFace template is given in. Images are RGB (or any channels) uint8 ``HWC``; the result is uint8 too.
"""

from __future__ import annotations

import numpy as np

from fcbench.errors import FcbenchError

# The 5-point template of the ArcFace 112 x 112 crops (insightface's, as published with the model):
# left eye, right eye, nose tip, left mouth corner, right mouth corner, (x, y) in pixels.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ARCFACE_SIZE = (112, 112)


def _image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or 0 in img.shape:
        raise FcbenchError(f"align: the frame must be an HWC image, got shape {np.asarray(image).shape}")
    return img


def _size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise FcbenchError(f"align: size must be (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise FcbenchError(f"align: size must be positive, got {size!r}")
    return h, w


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """The ``size`` = (height, width) image whose pixel ``(u, v)`` shows the frame at ``A^-1 (u, v)``, where the
    2 x 3 ``matrix`` A maps frame coordinates to output coordinates; bilinear, ``fill`` outside the frame."""
    img = _image(image)
    h, w = _size(size)
    a = np.asarray(matrix, dtype=np.float64)
    if a.shape != (2, 3) or not np.all(np.isfinite(a)):
        raise FcbenchError(f"align: the transform must be a finite 2 x 3 matrix, got shape {a.shape}")
    full = np.vstack([a, [0.0, 0.0, 1.0]])
    if abs(np.linalg.det(full[:2, :2])) < 1e-12:
        raise FcbenchError("align: the transform is singular (landmarks or box collapse to a point or a line)")
    inv = np.linalg.inv(full)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    src = img.astype(np.float64)
    ih, iw = img.shape[:2]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (xx >= 0) & (xx < iw) & (yy >= 0) & (yy < ih)
        vals = src[np.clip(yy, 0, ih - 1), np.clip(xx, 0, iw - 1)]
        return np.where(inside[..., None], vals, fill)

    out = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
           + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(img.dtype)
    return out if np.asarray(image).ndim == 3 else out[..., 0]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, translation; no reflection) minimising
    ``sum |s R src_k + t - dst_k|^2``: Umeyama's closed form (1991) from the SVD of the points' covariance."""
    p, q = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape != q.shape or p.shape[0] < 2:
        raise FcbenchError(f"align: need two matching [N, 2] point sets (N >= 2), got {p.shape} and {q.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise FcbenchError("align: landmarks contain NaN or inf")
    mp, mq = p.mean(axis=0), q.mean(axis=0)
    pc, qc = p - mp, q - mq
    var_p = float((pc ** 2).sum() / len(p))
    if var_p <= 1e-12:
        raise FcbenchError("align: the landmarks all lie on one point; the detector's landmarks are unusable")
    cov = qc.T @ pc / len(p)
    u, sing, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0  # a reflection would fit better; the closest rotation flips the weakest axis
    rot = u @ np.diag(d) @ vt
    scale = float((sing * d).sum() / var_p)
    t = mq - scale * rot @ mp
    return np.hstack([scale * rot, t[:, None]])


def template(size: tuple[int, int] = ARCFACE_SIZE) -> np.ndarray:
    """:data:`ARCFACE_TEMPLATE` scaled from 112 x 112 to ``size`` = (height, width)."""
    h, w = _size(size)
    return ARCFACE_TEMPLATE * np.array([w / ARCFACE_SIZE[1], h / ARCFACE_SIZE[0]])


def align(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int] = ARCFACE_SIZE) -> np.ndarray:
    """The face whose 5 ``landmarks`` (pixels, ``[5, 2]``, ArcFace's order) are given, warped onto the template."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise FcbenchError(f"align: need 5 landmarks as [5, 2] (x, y) pixels, got shape {lm.shape}")
    return warp_affine(image, similarity_transform(lm, template(size)), size)


def box_transform(box: np.ndarray, size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """The 2 x 3 map from frame pixels to a ``size`` crop of the pixel ``box`` (x1, y1, x2, y2, edges), grown by
    ``margin`` of its width and height on each side."""
    h, w = _size(size)
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)):
        raise FcbenchError(f"align: a box is 4 finite numbers x1, y1, x2, y2, got {np.asarray(box).tolist()}")
    if not 0.0 <= float(margin) < 10.0:
        raise FcbenchError(f"align: margin is a fraction of the box added on each side, in [0, 10), got {margin}")
    x1, y1, x2, y2 = b
    if x2 <= x1 or y2 <= y1:
        raise FcbenchError(f"align: box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is empty or inverted")
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    x1, x2, y1, y2 = x1 - mx, x2 + mx, y1 - my, y2 + my
    sx, sy = w / (x2 - x1), h / (y2 - y1)
    # edge coordinates: frame pixel i spans [i - 0.5, i + 0.5); the box's left edge x1 goes to the crop's -0.5
    return np.array([[sx, 0.0, -0.5 - (x1 - 0.5) * sx],
                     [0.0, sy, -0.5 - (y1 - 0.5) * sy]], dtype=np.float64)


def crop(image: np.ndarray, box: np.ndarray, size: tuple[int, int] = ARCFACE_SIZE, margin: float = 0.0) -> np.ndarray:
    """The pixel ``box`` (x1, y1, x2, y2 as edges: a box of the whole W x H frame is 0, 0, W, H), grown by
    ``margin``, resized to ``size`` = (height, width)."""
    return warp_affine(image, box_transform(box, size, margin), size)


def align_face(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None = None,
               size: tuple[int, int] = ARCFACE_SIZE, margin: float = 0.0) -> np.ndarray:
    """:func:`align` when ``landmarks`` are given, else :func:`crop` by the box."""
    if landmarks is not None:
        return align(image, landmarks, size)
    return crop(image, box, size, margin)
