"""Distillation losses: pure functions of student and teacher outputs.

The method plugins of ``fcbench distill`` call these; they know nothing of models, data or training.
Every function takes torch tensors, computes in float32 (half-precision inputs are cast), is
differentiable with respect to the student's inputs, treats the teacher's inputs as constants (they
are ``.detach()``-ed) and returns a 0-d tensor, the mean over the batch, unless its docstring says
otherwise. Embeddings are not assumed normalised: where a formula says ``norm`` or ``cos`` the
vectors are L2-normalised here (``F.normalize``, eps 1e-12). Weights such as the 100 of an embedding
MSE term are the caller's.

These are our readings of the papers each function names. Where a paper leaves a detail open we
chose one, and say so in that function's docstring:

- ``adaptive_margins``: a negative cosine counts as 0 (margin ``m_min``), and a batch with no positive
  cosine gets ``m_min`` everywhere, so every margin lies in ``[m_min, m_max]``.
- ``triplet_distill``: triplets are mined batch-hard on the student's distances (ties: the lowest
  index), the teacher only sets each triplet's margin; a batch with no usable anchor gives 0.
- ``ekd_loss``: thresholds are linear quantiles of the batch's negative-pair similarities, the
  critical pairs of all the false-positive rates are pooled (a pair counts once), and tied
  disagreements share the higher rank.

A batch in which a loss has nothing to act on gives a zero that is still connected to the student's
input (``backward()`` works and gives zero gradients). Bad arguments raise :class:`LossInputError`
(a ``ValueError`` and an :class:`~fcbench.errors.FcbenchError`, so the CLI shows it as one line).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from fcbench.errors import FcbenchError

__all__ = ["LossInputError", "kd_loss", "embedding_mse", "angular_distill", "adaptive_margins", "margin_distill",
           "triplet_distill", "ekd_loss"]

DISTANCES = ("l2", "cos")
_QUANTILE_MAX = 2 ** 24  # torch.quantile refuses larger inputs


class LossInputError(FcbenchError, ValueError):
    """A distillation loss was given arguments it cannot use (shapes, labels, options)."""


# ----------------------------------------------------------------------------------------------- helpers

def _f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


def _pair(name: str, student: torch.Tensor, teacher: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The student as float32 and the teacher as a float32 constant, checked to be (B, N) of one shape."""
    if student.dim() != 2 or teacher.dim() != 2:
        raise LossInputError(f"{name}: {what} must be 2-d (batch, features); got student {tuple(student.shape)} "
                             f"and teacher {tuple(teacher.shape)}")
    if student.shape != teacher.shape:
        raise LossInputError(f"{name}: student {what} {tuple(student.shape)} and teacher {what} "
                             f"{tuple(teacher.shape)} differ in shape; project the student to the teacher's size")
    return _f32(student), _f32(teacher.detach())


def _labels(name: str, labels: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise LossInputError(f"{name}: labels must have shape ({batch},), one per sample; got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise LossInputError(f"{name}: labels must be integers (int64); got {labels.dtype}")
    return labels.detach().to(device=device, dtype=torch.long)


def _margins(name: str, m_min: float, m_max: float) -> None:
    if not m_min <= m_max:
        raise LossInputError(f"{name}: m_min ({m_min}) must not exceed m_max ({m_max})")


def _zero(student: torch.Tensor) -> torch.Tensor:
    """0 as a float32 scalar still connected to ``student`` (backward() works, gradients are zero),
    also when called under ``torch.no_grad()`` mining code; ``+ 0.0`` turns a -0.0 into 0.0."""
    with torch.enable_grad():
        return _f32(student).sum() * 0.0 + 0.0


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)


def _kl_t_s(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, mean over the batch."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature ** 2


def _temperature(name: str, temperature: float) -> None:
    if not temperature > 0:
        raise LossInputError(f"{name}: temperature must be > 0; got {temperature}")


# ----------------------------------------------------------------------------------------------- losses

def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Knowledge distillation of class probabilities softened by a temperature.

    Hinton, Vinyals and Dean, "Distilling the knowledge in a neural network", 2015::

        p_t = softmax(t / T),  p_s = softmax(s / T)
        loss = T^2 * mean_b sum_c p_t[b, c] * (log p_t[b, c] - log p_s[b, c])

    ``T^2`` keeps the gradient's size independent of ``T``, as the paper advises. Logits are (B, C).
    """
    _temperature("kd_loss", temperature)
    s, t = _pair("kd_loss", student_logits, teacher_logits, "logits")
    return _kl_t_s(s, t, temperature)


def embedding_mse(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Mean squared error between L2-normalised student and teacher embeddings::

        loss = mean over all B*D elements of (norm(e_s) - norm(e_t))^2

    (``F.mse_loss`` of the normalised vectors). The weight (commonly 100) is applied by the caller.
    Embeddings are (B, D).
    """
    s, t = _pair("embedding_mse", student_emb, teacher_emb, "embeddings")
    return F.mse_loss(_norm(s), _norm(t))


def angular_distill(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Angular distillation: penalise the angle between each student embedding and its teacher's.

    Duong, Luu, Quach and Bui, "ShrinkTeaNet: Million-scale lightweight face recognition via
    shrinking teacher-student networks", 2019 (its angular distillation loss)::

        loss = mean_i (1 - cos(e_s_i, e_t_i))^2

    Embeddings are (B, D).
    """
    s, t = _pair("angular_distill", student_emb, teacher_emb, "embeddings")
    cos = (_norm(s) * _norm(t)).sum(dim=1)
    return ((1.0 - cos) ** 2).mean()


def adaptive_margins(teacher_centres: torch.Tensor, teacher_emb: torch.Tensor, labels: torch.Tensor,
                     m_min: float = 0.2, m_max: float = 0.5) -> torch.Tensor:
    """Per-sample margins from how close the teacher puts each sample to its class centre.

    Returns a tensor of shape (B,), float32, with no gradient::

        a_i   = max(0, cos(W_T[y_i], x_T_i))      W_T: the teacher's class centres (C, D)
        a_max = max_i a_i                          over the batch
        m_i   = (m_max - m_min) * a_i / a_max + m_min,   or m_min for every i when a_max <= 0

    The detail we fixed: a sample the teacher places on the far side of its centre (negative cosine)
    gets ``m_min``, and a batch with no positive cosine gets ``m_min`` everywhere, so every ``m_i`` lies
    in ``[m_min, m_max]`` (the result is clamped there against rounding). ``teacher_centres`` is (C, D),
    ``teacher_emb`` (B, D), ``labels`` (B,) integers in [0, C).
    """
    name = "adaptive_margins"
    _margins(name, m_min, m_max)
    if teacher_centres.dim() != 2 or teacher_emb.dim() != 2 or teacher_centres.shape[1] != teacher_emb.shape[1]:
        raise LossInputError(f"{name}: teacher_centres must be (C, D) and teacher_emb (B, D) with one D; got "
                             f"{tuple(teacher_centres.shape)} and {tuple(teacher_emb.shape)}")
    y = _labels(name, labels, teacher_emb.shape[0], teacher_emb.device)
    classes = teacher_centres.shape[0]
    with torch.no_grad():
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise LossInputError(f"{name}: labels must lie in [0, {classes}) for {classes} teacher centres; got "
                                 f"{int(y.min())}..{int(y.max())}")
        w = _norm(_f32(teacher_centres.detach()))[y]
        x = _norm(_f32(teacher_emb.detach()))
        a = (w * x).sum(dim=1).clamp_min(0.0)
        if a.numel() == 0 or float(a.max()) <= 0.0:
            return torch.full_like(a, float(m_min))
        m = (m_max - m_min) * (a / a.max()) + m_min
        return m.clamp(float(m_min), float(m_max))


def margin_distill(student_cos: torch.Tensor, teacher_cos: torch.Tensor, temperature: float = 4.0,
                   scale: float = 64.0) -> torch.Tensor:
    """Distillation of the margin-softmax outputs (the "margin distillation, T = 4" baseline).

    Hinton et al. 2015's softened KL (see :func:`kd_loss`) applied to the scaled cosine logits of a
    margin-softmax head (ArcFace, CosFace: Deng et al., "ArcFace: Additive angular margin loss for
    deep face recognition", 2019), before any margin is added::

        loss = T^2 * mean_b KL(softmax(scale * t_cos / T) || softmax(scale * s_cos / T))

    ``student_cos`` and ``teacher_cos`` are (B, C) cosines between embeddings and class centres.
    """
    name = "margin_distill"
    _temperature(name, temperature)
    s, t = _pair(name, student_cos, teacher_cos, "cosine matrices")
    return _kl_t_s(scale * s, scale * t, temperature)


def _pairwise(x: torch.Tensor, distance: str) -> torch.Tensor:
    """All-pairs distances of normalised rows ``x`` (B, D) -> (B, B); for mining only (no gradient)."""
    if distance == "l2":
        return torch.cdist(x, x)
    return 1.0 - x @ x.T


def _rowwise(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """Distances between rows of normalised ``a`` and ``b`` (K, D) -> (K,); finite gradient at 0."""
    if distance == "l2":
        return torch.linalg.vector_norm(a - b, dim=1)
    return 1.0 - (a * b).sum(dim=1)


def triplet_distill(student_emb: torch.Tensor, teacher_emb: torch.Tensor, labels: torch.Tensor,
                    distance: str = "l2", m_min: float = 0.2, m_max: float = 0.5) -> torch.Tensor:
    """Triplet loss whose margin the teacher sets, per triplet.

    Feng, Wang, Han, Pan and Zhang, "Triplet distillation for deep face recognition", 2019::

        for each anchor a with at least one positive (same label, not a) and one negative in the batch:
            p = argmax over positives of d_S(a, .)      (hardest positive, by the student)
            n = argmin over negatives of d_S(a, .)      (hardest negative, by the student)
            m = clamp(d_T(a, n) - d_T(a, p), m_min, m_max)       (teacher, constant)
        loss = mean over those anchors of relu(d_S(a, p) - d_S(a, n) + m)

    ``distance="l2"``: the Euclidean distance of L2-normalised embeddings; ``"cos"``: 1 - cosine.
    Details we chose: triplets are mined batch-hard on the student's distances (ties go to the lowest
    index), and a batch in which no anchor has both a positive and a negative gives 0 (connected to
    ``student_emb``). Embeddings are (B, D), labels (B,) integers.
    """
    name = "triplet_distill"
    if distance not in DISTANCES:
        raise LossInputError(f"{name}: distance must be one of {', '.join(DISTANCES)}; got {distance!r}")
    _margins(name, m_min, m_max)
    s, t = _pair(name, student_emb, teacher_emb, "embeddings")
    y = _labels(name, labels, s.shape[0], s.device)
    s, t = _norm(s), _norm(t)
    with torch.no_grad():
        d_s = _pairwise(s.detach(), distance)
        same = y[:, None] == y[None, :]
        eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
        pos, neg = same & ~eye, ~same
        anchors = (pos.any(dim=1) & neg.any(dim=1)).nonzero(as_tuple=True)[0]
        if anchors.numel() == 0:
            return _zero(student_emb)
        d = d_s[anchors]
        p = d.masked_fill(~pos[anchors], float("-inf")).argmax(dim=1)
        n = d.masked_fill(~neg[anchors], float("inf")).argmin(dim=1)
        margin = (_rowwise(t[anchors], t[n], distance) - _rowwise(t[anchors], t[p], distance)).clamp(m_min, m_max)
    d_ap = _rowwise(s[anchors], s[p], distance)
    d_an = _rowwise(s[anchors], s[n], distance)
    return F.relu(d_ap - d_an + margin).mean()


def _quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """The linear-interpolation quantile of a 1-d tensor, as ``torch.quantile`` (which refuses more than
    2^24 values; past that the same definition is computed from a sort)."""
    if x.numel() <= _QUANTILE_MAX:
        return torch.quantile(x, q, interpolation="linear")
    return _quantile_sorted(x, q)


def _quantile_sorted(x: torch.Tensor, q: float) -> torch.Tensor:
    v = torch.sort(x).values
    pos = q * (v.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, v.numel() - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def ekd_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, labels: torch.Tensor,
             fprs: Sequence[float] = (0.1, 0.01), rank_weight: float = 1.0) -> torch.Tensor:
    """Evaluation-oriented distillation: match the teacher on the pairs the verification decision
    at given false-positive rates gets wrong.

    Huang, Wang, Li, Liu, Shan and Chen, "Evaluation-oriented knowledge distillation for deep face
    recognition", CVPR 2022; our reading::

        S_s, S_t = cosine similarities of all pairs i < j in the batch (student, teacher)
        positive pair: same label; negative pair: different labels
        for each fpr:  tau_t = quantile(S_t[negatives], 1 - fpr)   (linear)
                       tau_s = the same of S_s (constant)
            critical: positives with S_s < tau_s and S_t >= tau_t (the student rejects what the teacher accepts)
                      negatives with S_s >= tau_s and S_t < tau_t (the student accepts what the teacher rejects)
        K = the union of the critical pairs over all fprs
        r_ij = normalised rank of |S_s_ij - S_t_ij| within K, in [0, 1] (largest -> 1; a single pair -> 1)
        w_ij = 1 + rank_weight * r_ij   (constant)
        loss = sum_K w_ij * (S_s_ij - S_t_ij)^2 / sum_K w_ij

    Details we chose: ``r = (#{k in K: |d_k| <= |d_ij|} - 1) / (|K| - 1)``, so tied disagreements share
    the higher rank; a pair critical at several fprs counts once. A batch with no negative pair or no
    critical pair gives 0 (connected to ``student_emb``). Embeddings are (B, D), labels (B,) integers;
    each fpr lies in (0, 1).
    """
    name = "ekd_loss"
    fprs = tuple(float(f) for f in fprs)
    if not fprs or not all(0.0 < f < 1.0 for f in fprs):
        raise LossInputError(f"{name}: fprs must be one or more false-positive rates in (0, 1); got {fprs}")
    if not rank_weight >= 0:
        raise LossInputError(f"{name}: rank_weight must be >= 0; got {rank_weight}")
    s, t = _pair(name, student_emb, teacher_emb, "embeddings")
    y = _labels(name, labels, s.shape[0], s.device)
    i, j = torch.triu_indices(len(y), len(y), offset=1, device=y.device)
    s_n, t_n = _norm(s), _norm(t)
    sim_s = (s_n @ s_n.T)[i, j]
    sim_t = (t_n @ t_n.T)[i, j]
    with torch.no_grad():
        pos = y[i] == y[j]
        neg = ~pos
        if not bool(neg.any()):
            return _zero(student_emb)
        ss = sim_s.detach()
        critical = torch.zeros_like(pos)
        for fpr in fprs:
            tau_t = _quantile(sim_t[neg], 1.0 - fpr)
            tau_s = _quantile(ss[neg], 1.0 - fpr)
            critical |= pos & (ss < tau_s) & (sim_t >= tau_t)
            critical |= neg & (ss >= tau_s) & (sim_t < tau_t)
        k = critical.nonzero(as_tuple=True)[0]
        if k.numel() == 0:
            return _zero(student_emb)
        gap = (ss[k] - sim_t[k]).abs()
        if k.numel() == 1:
            r = torch.ones_like(gap)
        else:  # how many gaps are <= each one, less itself: ties share the higher rank
            at_most = torch.searchsorted(torch.sort(gap).values, gap, right=True)
            r = (at_most - 1).float() / (k.numel() - 1)
        w = 1.0 + rank_weight * r
    diff = sim_s[k] - sim_t[k]
    return (w * diff ** 2).sum() / w.sum()
