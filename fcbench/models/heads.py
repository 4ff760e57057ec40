"""Classification heads for training face embeddings: softmax, ArcFace, CosFace.

A head maps embeddings (B, D) to logits (B, C); the caller applies cross-entropy. Margin
heads normalise embeddings and class centres (``weight``, shape (C, D)), so their logits are
``s * cos(theta)``; with labels, the target class gets its margin:

- ArcFace: ``s * cos(theta + m)`` where ``theta + m < pi``; past that point (cos(theta) <=
  cos(pi - m)) the monotone fallback ``s * (cos(theta) - m * sin(m))`` is used, as in insightface;
  ``easy_margin=True`` applies the margin only where cos(theta) > 0. ``margin=`` in ``forward``
  takes a float or a per-sample tensor (B,) instead of ``m``.
- CosFace: ``s * (cos(theta) - m)``.

``labels=None`` (inference) gives plain scaled cosines. Labels of -1 are ignored (no margin).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcbench.errors import FcbenchError, suggest

HEADS = ["arcface", "cosface", "softmax"]


class SoftmaxHead(nn.Linear):
    """Plain linear classifier; ``labels`` are accepted and ignored."""

    def __init__(self, embedding_size: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(embedding_size, num_classes, bias=bias)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        return super().forward(embeddings)


class _CosineHead(nn.Module):
    def __init__(self, embedding_size: int, num_classes: int, s: float, m: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size).normal_(0.0, 0.01))
        self.s = float(s)
        self.m = float(m)

    def cosine(self, embeddings: Tensor) -> Tensor:
        cos = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
        return cos.clamp(-1.0, 1.0)

    def _margin(self, margin: float | Tensor | None, cos: Tensor) -> Tensor:
        """The margin as a tensor like ``cos``: this head's ``m``, or the caller's (one per sample
        broadcasts over the classes, e.g. AdaFace/MagFace-style adaptive margins)."""
        m = torch.as_tensor(self.m if margin is None else margin, dtype=cos.dtype, device=cos.device)
        return m.view(-1, 1) if m.dim() > 0 else m

    @staticmethod
    def _target(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
        labels = labels.long().view(-1)
        valid = labels >= 0
        onehot = F.one_hot(labels.clamp(min=0), num_classes).to(torch.bool) & valid[:, None]
        return onehot, valid

    def extra_repr(self) -> str:
        return f"embedding_size={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, s={self.s}, m={self.m}"


class ArcFaceHead(_CosineHead):
    """Additive angular margin: target logit ``s * cos(theta + m)``."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5,
                 easy_margin: bool = False) -> None:
        super().__init__(embedding_size, num_classes, s, m)
        self.easy_margin = bool(easy_margin)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None,
                margin: float | Tensor | None = None) -> Tensor:
        cos = self.cosine(embeddings)
        if labels is None:
            return cos * self.s
        onehot, _ = self._target(labels, cos.shape[1])
        m = self._margin(margin, cos)
        target = (cos * onehot).sum(dim=1, keepdim=True)
        sin = (1.0 - target * target).clamp(min=1e-12).sqrt()  # eps keeps the gradient finite at |cos| = 1
        with_margin = target * torch.cos(m) - sin * torch.sin(m)
        if self.easy_margin:
            new = torch.where(target > 0, with_margin, target)
        else:
            threshold = torch.cos(math.pi - m)
            new = torch.where(target > threshold, with_margin, target - torch.sin(math.pi - m) * m)
        logits = torch.where(onehot, new.expand_as(cos), cos)
        return logits * self.s


class CosFaceHead(_CosineHead):
    """Additive cosine margin: target logit ``s * (cos(theta) - m)``."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.4) -> None:
        super().__init__(embedding_size, num_classes, s, m)

    def forward(self, embeddings: Tensor, labels: Tensor | None = None,
                margin: float | Tensor | None = None) -> Tensor:
        cos = self.cosine(embeddings)
        if labels is None:
            return cos * self.s
        onehot, _ = self._target(labels, cos.shape[1])
        return torch.where(onehot, cos - self._margin(margin, cos), cos) * self.s


_CLASSES: dict[str, type[nn.Module]] = {"arcface": ArcFaceHead, "cosface": CosFaceHead, "softmax": SoftmaxHead}


def create_head(name: str, embedding_size: int, num_classes: int, **opts: Any) -> nn.Module:
    """Build head ``name`` (one of :data:`HEADS`); ``opts``: s, m, easy_margin (arcface), bias (softmax)."""
    if name not in _CLASSES:
        raise FcbenchError(f"unknown head '{name}'{suggest(name, HEADS)}; heads: {', '.join(HEADS)}")
    cls = _CLASSES[name]
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "embedding_size", "num_classes")]
    for key in opts:
        if key not in valid:
            raise FcbenchError(f"head '{name}' has no option '{key}'{suggest(key, valid)}; "
                               f"valid options: {', '.join(valid)}")
    if int(embedding_size) < 1 or int(num_classes) < 1:
        raise FcbenchError(f"head '{name}': embedding_size and num_classes must be >= 1, "
                           f"got {embedding_size} and {num_classes}")
    head = cls(int(embedding_size), int(num_classes), **opts)
    head.fcbench_name = name
    head.fcbench_options = {k: p.default for k, p in params.items() if k in valid} | dict(opts)
    return head
