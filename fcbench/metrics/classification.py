"""Top-k classification accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fcbench.errors import FcbenchError


@dataclass
class ClassificationResult:
    """Top-1 / top-5 accuracy in [0, 1]; ``top5`` is None with fewer than 5 classes."""

    top1: float
    top5: float | None
    n: int
    topk: dict[int, float] = field(default_factory=dict)  # every k asked for that fits the classes

    def to_rows(self) -> list[tuple[str, float]]:
        """(metric, value) pairs: 'top1', 'top5', ... for each k measured."""
        ks = dict(self.topk) or {1: self.top1, **({5: self.top5} if self.top5 is not None else {})}
        ks.setdefault(1, self.top1)
        return [(f"top{k}", float(v)) for k, v in sorted(ks.items())]


def true_class_rank(scores: np.ndarray, true_idx: np.ndarray) -> np.ndarray:
    """0-based rank of the true column in each row; ties with other columns count against it."""
    out = np.empty(scores.shape[0], dtype=np.int64)
    for start in range(0, scores.shape[0], 4096):  # bounded memory for big N x C
        block, idx = scores[start:start + 4096], true_idx[start:start + 4096]
        true_score = block[np.arange(block.shape[0]), idx][:, None]
        out[start:start + 4096] = (block >= true_score).sum(axis=1) - 1
    return out


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)
) -> ClassificationResult:
    """Top-k accuracy of ``logits`` [N, C] against integer ``labels`` [N] in ``0..C-1``.

    A sample is a top-k hit when fewer than k other classes score at least as high as the true
    class (so exact ties are not counted in the model's favour). A k larger than C is left out.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2:
        raise FcbenchError(f"classification: logits must be [N, C], got shape {logits.shape}")
    n, c = logits.shape
    if n == 0 or c == 0:
        raise FcbenchError(f"classification: empty logits, shape {logits.shape}")
    if labels.shape != (n,):
        raise FcbenchError(f"classification: labels must have shape ({n},) to match logits, got {labels.shape}")
    if not np.issubdtype(logits.dtype, np.number) or not np.all(np.isfinite(logits)):
        raise FcbenchError("classification: logits contain NaN or inf, or are not numbers")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.number) or np.any(labels != np.round(labels)):
        raise FcbenchError(f"classification: labels must be integer class ids, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= c:
        raise FcbenchError(f"classification: labels must lie in 0..{c - 1}, found {labels.min()}..{labels.max()}")
    bad = [k for k in ks if not isinstance(k, (int, np.integer)) or k < 1]
    if bad:
        raise FcbenchError(f"classification: ks must be positive integers, got {bad}")

    rank = true_class_rank(logits, labels)
    topk = {int(k): float(np.mean(rank < k)) for k in sorted(set(ks) | {1}) if k <= c}
    return ClassificationResult(top1=topk[1], top5=topk.get(5), n=int(n), topk=topk)
