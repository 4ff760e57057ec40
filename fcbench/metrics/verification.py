"""Pair verification metrics: the insightface k-fold accuracy plus ROC, AUC, EER and TAR@FAR.

Definitions used throughout (the standard ones, ISO/IEC 19795-1):

* genuine pair = ``issame`` True, impostor pair = ``issame`` False;
* a pair is *accepted* when its cosine similarity is ``>= threshold``
  (equivalently its squared L2 distance of normalised embeddings is ``<= 2 - 2 * threshold``);
* FAR (= FMR) = accepted impostor pairs / impostor pairs;
* FRR (= FNMR) = rejected genuine pairs / genuine pairs; TAR = 1 - FRR.

Units: ``best_threshold`` (insightface protocol) is a squared L2 distance in [0, 4), the
thresholds of the ROC, EER and TAR@FAR are cosine similarities in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcbench.errors import FcbenchError

DEFAULT_FAR_TARGETS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# The insightface grid of squared-L2-distance thresholds: 0.00, 0.01, ..., 3.99.
INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)


def far_label(far: float) -> str:
    """'1e-03' for 0.001: the spelling used in metric names such as 'tar@far=1e-03'."""
    return f"{far:.0e}"


@dataclass
class VerificationResult:
    """Everything :func:`verification_metrics` measures; arrays are kept for plots."""

    accuracy: float  # insightface k-fold accuracy, mean over test folds
    accuracy_std: float  # population std over folds (np.std), as insightface reports it
    best_threshold: float  # mean over folds of the train-fold best squared L2 distance
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    auc: float
    eer: float
    eer_threshold: float  # cosine similarity
    fpr: np.ndarray  # FAR at each ROC threshold
    tpr: np.ndarray  # TAR at each ROC threshold
    thresholds: np.ndarray  # cosine similarity, decreasing; the first accepts nothing
    tar_at_far: dict[float, float] = field(default_factory=dict)
    threshold_at_far: dict[float, float] = field(default_factory=dict)
    far_achieved: dict[float, float] = field(default_factory=dict)
    skipped_far: list[tuple[float, str]] = field(default_factory=list)
    n_pairs: int = 0
    n_genuine: int = 0
    n_impostor: int = 0
    nfolds: int = 10

    def to_rows(self) -> list[tuple[str, float]]:
        """(metric, value) pairs for the results store; skipped FAR targets give no row."""
        rows = [
            ("accuracy", self.accuracy),
            ("accuracy_std", self.accuracy_std),
            ("best_threshold", self.best_threshold),
            ("auc", self.auc),
            ("eer", self.eer),
            ("eer_threshold", self.eer_threshold),
        ]
        for far in sorted(self.tar_at_far, reverse=True):
            rows.append((f"tar@far={far_label(far)}", self.tar_at_far[far]))
            rows.append((f"threshold@far={far_label(far)}", self.threshold_at_far[far]))
        return [(name, float(value)) for name, value in rows]


ROC_POINTS = 64  # points of the compact ROC a quality row keeps (``compact_roc``)


def compact_roc(result: VerificationResult, points: int = ROC_POINTS) -> dict[str, list[float]]:
    """The ROC cut to about ``points`` points for the results store (``extra.roc`` of the ``auc`` row), so a
    report can draw it without the CSV: ``{"far": [...], "tar": [...]}``, 6 significant digits, FAR
    increasing. Points are taken evenly along the curve and at log-spaced FARs (where face verification is
    read), and always include both ends."""
    fpr, tpr = np.asarray(result.fpr, dtype=np.float64), np.asarray(result.tpr, dtype=np.float64)
    n = fpr.size
    if n == 0:
        return {"far": [], "tar": []}
    keep = set(np.linspace(0, n - 1, max(2, points // 2)).round().astype(int).tolist())
    positive = fpr[fpr > 0]
    if positive.size:
        for target in np.geomspace(positive.min(), 1.0, max(2, points // 2)):
            keep.add(int(np.searchsorted(fpr, target, side="right")) - 1)  # the best TAR at FAR <= target
    idx = sorted(i for i in keep if 0 <= i < n)
    return {"far": [float(f"{fpr[i]:.6g}") for i in idx], "tar": [float(f"{tpr[i]:.6g}") for i in idx]}


def write_roc_csv(result: VerificationResult, path: str | Path) -> Path:
    """The whole ROC as CSV, one row per distinct cosine threshold, strictest first:
    ``far,tar,threshold`` (FAR/TAR as in the module docstring; a pair is accepted when its cosine
    similarity is ``>= threshold``). The first row accepts nothing (0, 0), the last everything."""
    from fcbench.artifact import atomic_write_text

    path = Path(path)
    lines = ["far,tar,threshold"] + [f"{float(f)!r},{float(t)!r},{float(h)!r}"  # repr: exact round trip
                                     for f, t, h in zip(result.fpr, result.tpr, result.thresholds, strict=True)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------- inputs


def l2_normalize(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64); all-zero rows stay zero."""
    emb = np.asarray(emb, dtype=np.float64)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return emb / norms


def fuse_flip(emb: np.ndarray, emb_flipped: np.ndarray) -> np.ndarray:
    """Test-time flip fusion as insightface does it: ``emb + emb_flipped``, then L2-normalised."""
    emb, emb_flipped = np.asarray(emb), np.asarray(emb_flipped)
    if emb.shape != emb_flipped.shape or emb.ndim != 2:
        raise FcbenchError(
            f"fuse_flip: need two [N, D] arrays of the same shape, got {emb.shape} and {emb_flipped.shape}")
    _check_finite(emb, "fuse_flip: embeddings")
    _check_finite(emb_flipped, "fuse_flip: flipped embeddings")
    return l2_normalize(emb.astype(np.float64) + emb_flipped.astype(np.float64))


def _check_finite(a: np.ndarray, what: str) -> None:
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise FcbenchError(f"{what} must be real numbers, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise FcbenchError(f"{what} contain NaN or inf ({int(np.sum(~np.isfinite(a)))} values)")


def as_issame(issame: np.ndarray, n: int | None = None, what: str = "verification") -> np.ndarray:
    """``issame`` as a 1-D bool array; accepts bools or 0/1 integers."""
    arr = np.asarray(issame)
    if arr.ndim != 1:
        raise FcbenchError(f"{what}: issame must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise FcbenchError(f"{what}: issame has {arr.shape[0]} entries but there are {n} pairs")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isin(arr, (0, 1))):
            raise FcbenchError(f"{what}: issame must be bool or 0/1, got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _check_both_classes(issame: np.ndarray, what: str) -> None:
    n_gen = int(issame.sum())
    if n_gen == 0 or n_gen == issame.size:
        kind = "genuine (same)" if n_gen == 0 else "impostor (different)"
        raise FcbenchError(f"{what}: no {kind} pairs among {issame.size}; both kinds are needed")


def _check_scores(scores: np.ndarray, issame: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise FcbenchError(f"{what}: scores must be 1-D, got shape {scores.shape}")
    _check_finite(scores, f"{what}: scores")
    same = as_issame(issame, scores.shape[0], what)
    _check_both_classes(same, what)
    return scores.astype(np.float64), same


# ------------------------------------------------------------------------------ insightface k-fold


def kfold_indices(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays like sklearn ``KFold(n_splits=k, shuffle=False)``.

    Test folds are contiguous; the first ``n % k`` folds hold one extra item. ``k == 1``
    trains and tests on everything (insightface's ``LFold`` behaviour).
    """
    if k < 1:
        raise FcbenchError(f"nfolds must be >= 1, got {k}")
    if n < k:
        raise FcbenchError(f"{n} pairs are fewer than the {k} folds asked for; lower --nfolds")
    idx = np.arange(n)
    if k == 1:
        return [(idx, idx)]
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    out, start = [], 0
    for size in sizes:
        stop = start + int(size)
        out.append((np.concatenate([idx[:start], idx[stop:]]), idx[start:stop]))
        start = stop
    return out


def _correct_counts(dist: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Correct decisions at each threshold, a pair predicted same when ``dist < threshold``."""
    gen = np.sort(dist[same])
    imp = np.sort(dist[~same])
    true_accepts = np.searchsorted(gen, thresholds, side="left")  # genuine with dist < t
    true_rejects = imp.size - np.searchsorted(imp, thresholds, side="left")  # impostor with dist >= t
    return true_accepts + true_rejects


def kfold_accuracy(
    dist: np.ndarray, issame: np.ndarray, nfolds: int = 10, thresholds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold test accuracy and train-fold best threshold of the insightface protocol.

    ``dist`` is the squared L2 distance of normalised embeddings; for each fold the threshold
    with the most correct train decisions wins (the first one on ties, as ``np.argmax``).
    """
    thresholds = INSIGHTFACE_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    accs, best = [], []
    for train, test in kfold_indices(dist.shape[0], nfolds):
        t = thresholds[int(np.argmax(_correct_counts(dist[train], issame[train], thresholds)))]
        accs.append(_correct_counts(dist[test], issame[test], np.array([t]))[0] / test.size)
        best.append(t)
    return np.asarray(accs, dtype=np.float64), np.asarray(best, dtype=np.float64)


# ------------------------------------------------------------------------------- ROC and friends


def roc_curve(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) over every distinct score, thresholds decreasing.

    Point ``i`` accepts the pairs with ``score >= thresholds[i]``. The first point accepts
    nothing; its threshold is the next float above the highest score (finite, unlike sklearn's inf).
    """
    scores, same = _check_scores(scores, issame, "roc_curve")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each tied group
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    tpr = np.r_[0, tp] / y.sum()
    fpr = np.r_[0, fp] / (~y).sum()
    thresholds = np.r_[np.nextafter(s[0], np.inf), s[last]]
    return fpr.astype(np.float64), tpr.astype(np.float64), thresholds


def auc_score(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC by the trapezoid rule (ties count half, like Mann-Whitney U)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def eer_from_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where FAR = FRR, linearly interpolated between the two ROC points around it."""
    frr = 1.0 - tpr
    d = fpr - frr  # non-decreasing along the curve; -1 at the first point
    i = int(np.argmax(d >= 0))  # first point with FAR >= FRR; the last point has FRR = 0
    alpha = -d[i - 1] / (d[i] - d[i - 1])
    eer = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    thr = thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1])
    return float(eer), float(thr)


def min_impostors(far: float) -> int:
    """Impostor pairs needed before a FAR of ``far`` means anything: ``ceil(1 / far)``."""
    return math.ceil(1.0 / far - 1e-9)


def operating_point(
    pos: np.ndarray, neg: np.ndarray, far: float, n_pos: int | None = None
) -> tuple[float, float, float]:
    """(threshold, TAR, achieved FAR) for the loosest threshold whose FAR stays <= ``far``.

    Candidate thresholds are the observed scores (``pos`` and ``neg``); a score is accepted when
    ``>= threshold``. Tied scores are never split: if accepting a tied group of impostors would
    push FAR over ``far`` the threshold stays above the whole group, so the achieved FAR never
    exceeds the target (conservative). Within the run of thresholds giving the same decisions
    the strictest one, an observed score, is reported. If even the top score breaks the target,
    the threshold is the next float above it and TAR = FAR = 0. ``n_pos`` overrides the TAR
    denominator (open-set: known probes whose best match was wrong count but are never accepted).
    """
    if not 0.0 < far <= 1.0:
        raise FcbenchError(f"FAR target must be in (0, 1], got {far}")
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.sort(np.asarray(neg, dtype=np.float64))
    n_pos = pos.size if n_pos is None else n_pos
    if neg.size == 0 or n_pos == 0:
        raise FcbenchError("FAR/TAR need at least one impostor and one genuine score")
    allowed = math.floor(far * neg.size + 1e-9)
    cand = np.unique(np.r_[pos, neg])[::-1]  # decreasing
    false_acc = neg.size - np.searchsorted(neg, cand, side="left")
    ok = np.nonzero(false_acc <= allowed)[0]
    if ok.size == 0:
        top = float(cand[0])
        return float(np.nextafter(top, np.inf)), 0.0, 0.0
    t = float(cand[ok[-1]])
    return t, float(np.sum(pos >= t)) / n_pos, float(false_acc[ok[-1]]) / neg.size


def _split_scores(scores: np.ndarray, issame: np.ndarray, far: float, what: str):
    scores, same = _check_scores(scores, issame, what)
    n_imp = int((~same).sum())
    if n_imp < min_impostors(far):
        raise FcbenchError(
            f"{what}: FAR {far:g} needs at least {min_impostors(far)} impostor pairs, only {n_imp} given")
    return scores[same], scores[~same]


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> tuple[float, float, float]:
    """(TAR, threshold, achieved FAR) for similarity ``scores``; see :func:`operating_point`."""
    t, tar, achieved = operating_point(*_split_scores(scores, issame, far, "tar_at_far"), far)
    return tar, t, achieved


def threshold_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> float:
    """The similarity threshold (accept ``>=``) with FAR <= ``far``; see :func:`operating_point`."""
    return operating_point(*_split_scores(scores, issame, far, "threshold_at_far"), far)[0]


def fnmr_at_fmr(scores: np.ndarray, issame: np.ndarray, fmr: float) -> float:
    """FNMR (= FRR = 1 - TAR) at the threshold where FMR (= FAR) <= ``fmr``."""
    return 1.0 - operating_point(*_split_scores(scores, issame, fmr, "fnmr_at_fmr"), fmr)[1]


def far_frr_at(scores: np.ndarray, issame: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) when pairs with ``score >= threshold`` are accepted."""
    scores, same = _check_scores(scores, issame, "far_frr_at")
    accept = scores >= threshold
    return float(np.mean(accept[~same])), float(np.mean(~accept[same]))


# ------------------------------------------------------------------------------------ entry point


def pair_scores(emb1: np.ndarray, emb2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity, squared L2 distance) of the L2-normalised pairs, float64."""
    e1, e2 = l2_normalize(emb1), l2_normalize(emb2)
    return np.sum(e1 * e2, axis=1), np.sum(np.square(e1 - e2), axis=1)


def verification_metrics(
    emb1: np.ndarray,
    emb2: np.ndarray,
    issame: np.ndarray,
    nfolds: int = 10,
    far_targets: tuple[float, ...] = DEFAULT_FAR_TARGETS,
) -> VerificationResult:
    """Verification metrics for pairs ``(emb1[i], emb2[i])``; embeddings already flip-fused if wanted.

    Accuracy follows insightface's ``calculate_roc``: embeddings L2-normalised, squared L2 distance,
    thresholds 0.00..3.99, ``nfolds`` contiguous unshuffled folds, the best train-fold threshold
    (``dist < t`` means same) scored on the test fold. ROC/AUC/EER/TAR@FAR use all pairs and the
    cosine similarity. A FAR target is skipped (listed in ``skipped_far``) when there are fewer than
    ``ceil(1 / far)`` impostor pairs.
    """
    e1, e2 = np.asarray(emb1), np.asarray(emb2)
    if e1.ndim != 2 or e2.ndim != 2:
        raise FcbenchError(f"verification: embeddings must be [N, D] arrays, got shapes {e1.shape} and {e2.shape}")
    if e1.shape != e2.shape:
        raise FcbenchError(f"verification: emb1 {e1.shape} and emb2 {e2.shape} differ in shape")
    if e1.shape[0] == 0 or e1.shape[1] == 0:
        raise FcbenchError(f"verification: empty embeddings, shape {e1.shape}")
    _check_finite(e1, "verification: emb1")
    _check_finite(e2, "verification: emb2")
    same = as_issame(issame, e1.shape[0])
    _check_both_classes(same, "verification")
    if not isinstance(nfolds, (int, np.integer)) or nfolds < 1:
        raise FcbenchError(f"verification: nfolds must be a positive integer, got {nfolds!r}")
    if e1.shape[0] < nfolds:
        raise FcbenchError(f"verification: {e1.shape[0]} pairs are fewer than the {nfolds} folds; lower nfolds")

    sim, dist = pair_scores(e1, e2)
    accs, best = kfold_accuracy(dist, same, int(nfolds))
    fpr, tpr, thr = roc_curve(sim, same)
    eer, eer_thr = eer_from_roc(fpr, tpr, thr)
    res = VerificationResult(
        accuracy=float(np.mean(accs)), accuracy_std=float(np.std(accs)), best_threshold=float(np.mean(best)),
        fold_accuracies=accs.tolist(), fold_thresholds=best.tolist(),
        auc=auc_score(fpr, tpr), eer=eer, eer_threshold=eer_thr, fpr=fpr, tpr=tpr, thresholds=thr,
        n_pairs=int(same.size), n_genuine=int(same.sum()), n_impostor=int((~same).sum()), nfolds=int(nfolds),
    )
    for far in far_targets:
        far = float(far)
        if not 0.0 < far <= 1.0:
            raise FcbenchError(f"verification: FAR targets must be in (0, 1], got {far}")
        need = min_impostors(far)
        if res.n_impostor < need:
            res.skipped_far.append(
                (far, f"needs >= {need} impostor pairs, only {res.n_impostor}"))
            continue
        t, tar, achieved = operating_point(sim[same], sim[~same], far)
        res.tar_at_far[far], res.threshold_at_far[far], res.far_achieved[far] = tar, t, achieved
    return res
