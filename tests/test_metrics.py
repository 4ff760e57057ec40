"""Metrics: hand-checkable cases, brute-force cross-checks and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fcbench.errors import FcbenchError
from fcbench.metrics import (
    classification_metrics,
    fnmr_at_fmr,
    fuse_flip,
    identification_metrics,
    open_set_tar_at_far,
    tar_at_far,
    threshold_at_far,
    verification_metrics,
)
from fcbench.metrics.verification import (
    auc_score,
    eer_from_roc,
    far_frr_at,
    kfold_indices,
    pair_scores,
    roc_curve,
)


def pairs_with_cosines(cosines: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of unit 2-D vectors whose cosine similarities are ``cosines``."""
    c = np.asarray(cosines, dtype=np.float64)
    e1 = np.tile([1.0, 0.0], (c.size, 1))
    e2 = np.stack([c, np.sqrt(1.0 - c**2)], axis=1)
    return e1, e2


# Genuine and impostor cosines for the hand-checked case (4 genuine, 10 impostor).
GEN = [0.9, 0.8, 0.7, 0.2]
IMP = [0.6, 0.5, 0.3, 0.1, 0.05, 0.0, -0.1, -0.2, -0.3, -0.4]


def hand_case() -> tuple[np.ndarray, np.ndarray]:
    scores = np.array(GEN + IMP)
    issame = np.array([True] * len(GEN) + [False] * len(IMP))
    return scores, issame


# ------------------------------------------------------------------------------------ verification


def test_perfect_separation() -> None:
    rng = np.random.default_rng(0)
    n, d = 100, 16
    a = rng.normal(size=(n, d))
    issame = np.arange(n) % 2 == 0
    b = np.where(issame[:, None], a, 0.0)
    b[~issame, :] = 0.0
    # impostor partners: orthogonal to the first embedding
    for i in np.nonzero(~issame)[0]:
        v = rng.normal(size=d)
        b[i] = v - (v @ a[i]) / (a[i] @ a[i]) * a[i]
    r = verification_metrics(a, b, issame)
    assert r.accuracy == 1.0 and r.accuracy_std == 0.0
    assert r.auc == 1.0 and r.eer == 0.0
    assert r.best_threshold == pytest.approx(0.01)  # first grid value with dist < t splitting 0 from 2
    assert r.n_genuine == 50 and r.n_impostor == 50


def test_random_embeddings_are_chance() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    e1, e2 = rng.normal(size=(n, 128)), rng.normal(size=(n, 128))
    issame = rng.random(n) < 0.5
    r = verification_metrics(e1, e2, issame)
    assert abs(r.accuracy - 0.5) < 0.05
    assert abs(r.auc - 0.5) < 0.05
    assert abs(r.eer - 0.5) < 0.05
    assert len(r.fold_accuracies) == 10
    assert set(r.tar_at_far) == {1e-1, 1e-2, 1e-3}  # ~1500 impostors: 1e-4 and below are skipped
    assert [f for f, _ in r.skipped_far] == [1e-4, 1e-5, 1e-6]


def test_far_frr_definitions_not_swapped() -> None:
    scores, issame = hand_case()
    far, frr = far_frr_at(scores, issame, 0.55)
    assert far == pytest.approx(1 / 10)  # one impostor (0.6) of ten accepted
    assert frr == pytest.approx(1 / 4)  # one genuine (0.2) of four rejected
    tar, thr, achieved = tar_at_far(scores, issame, 0.1)
    assert (tar, thr, achieved) == (pytest.approx(0.75), pytest.approx(0.6), pytest.approx(0.1))
    assert threshold_at_far(scores, issame, 0.1) == pytest.approx(0.6)
    assert fnmr_at_fmr(scores, issame, 0.1) == pytest.approx(0.25)
    # ROC: EER crossing between thresholds 0.5 (FAR .2, FRR .25) and 0.3 (FAR .3, FRR .25)
    fpr, tpr, thr_arr = roc_curve(scores, issame)
    eer, eer_thr = eer_from_roc(fpr, tpr, thr_arr)
    assert eer == pytest.approx(0.25) and eer_thr == pytest.approx(0.4)


def test_hand_case_through_embeddings() -> None:
    e1, e2 = pairs_with_cosines(GEN + IMP)
    issame = np.array([True] * 4 + [False] * 10)
    r = verification_metrics(e1, e2, issame, nfolds=2, far_targets=(0.1, 0.01))
    assert r.tar_at_far[0.1] == pytest.approx(0.75)
    assert r.threshold_at_far[0.1] == pytest.approx(0.6)
    assert r.far_achieved[0.1] == pytest.approx(0.1)
    assert r.eer == pytest.approx(0.25) and r.eer_threshold == pytest.approx(0.4)
    # 10 impostors cannot measure FAR 1e-2: omitted, with the reason
    assert 0.01 not in r.tar_at_far
    assert r.skipped_far[0][0] == 0.01 and "100 impostor" in r.skipped_far[0][1]
    rows = dict(r.to_rows())
    assert "tar@far=1e-01" in rows and "tar@far=1e-02" not in rows
    assert {"accuracy", "accuracy_std", "best_threshold", "eer", "auc"} <= set(rows)
    assert all(isinstance(v, float) for v in rows.values())


def test_tar_at_far_never_splits_ties() -> None:
    scores = np.array(GEN + [0.6, 0.6] + IMP[2:])  # two impostors tied at 0.6
    issame = np.array([True] * 4 + [False] * 10)
    tar, thr, achieved = tar_at_far(scores, issame, 0.1)  # allows 1 of 10, the tie has 2
    assert thr == pytest.approx(0.7) and tar == pytest.approx(0.75) and achieved == 0.0
    with pytest.raises(FcbenchError, match="100 impostor"):
        tar_at_far(scores, issame, 0.01)


def test_kfold_like_sklearn() -> None:
    folds = kfold_indices(23, 10)
    assert [t.tolist() for _, t in folds[:4]] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    assert [len(t) for _, t in folds] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    for train, test in folds:
        assert sorted(np.r_[train, test].tolist()) == list(range(23))
    assert {len(t) for _, t in kfold_indices(6000, 10)} == {600}
    (train, test), = kfold_indices(5, 1)
    assert train.tolist() == test.tolist() == [0, 1, 2, 3, 4]


def brute_insightface(dist: np.ndarray, same: np.ndarray, k: int) -> tuple[list[float], list[float]]:
    """Loop-by-loop reading of the insightface protocol, for cross-checking."""
    thresholds = [i / 100 for i in range(400)]
    accs, best = [], []
    for test in np.array_split(np.arange(dist.size), k):
        train = np.setdiff1d(np.arange(dist.size), test)
        best_t, best_acc = None, -1.0
        for t in thresholds:
            acc = sum((dist[i] < t) == same[i] for i in train) / len(train)
            if acc > best_acc:
                best_t, best_acc = t, acc
        best.append(best_t)
        accs.append(sum((dist[i] < best_t) == same[i] for i in test) / len(test))
    return accs, best


def test_cross_check_brute_force() -> None:
    rng = np.random.default_rng(2)
    n, d = 203, 8
    same = rng.random(n) < 0.5
    e1 = rng.normal(size=(n, d))
    e2 = np.where(same[:, None], e1 + rng.normal(scale=0.8, size=(n, d)), rng.normal(size=(n, d)))
    r = verification_metrics(e1, e2, same, far_targets=(0.1, 0.05, 0.02))
    sim, dist = pair_scores(e1, e2)
    accs, best = brute_insightface(dist, same, 10)
    np.testing.assert_allclose(r.fold_accuracies, accs)
    np.testing.assert_allclose(r.fold_thresholds, best)
    assert r.accuracy == pytest.approx(np.mean(accs)) and r.accuracy_std == pytest.approx(np.std(accs))
    assert r.best_threshold == pytest.approx(np.mean(best))

    gen, imp = sim[same], sim[~same]
    auc = np.mean([(g > i) + 0.5 * (g == i) for g in gen for i in imp])
    assert r.auc == pytest.approx(auc)
    for far in (0.1, 0.05, 0.02):
        ok = [t for t in sim if np.mean(imp >= t) <= far]
        t = min(ok)
        assert r.threshold_at_far[far] == t
        assert r.tar_at_far[far] == pytest.approx(np.mean(gen >= t))

    # EER: intersect FAR and FRR between the last point with FAR < FRR and the next one
    pts = sorted({(float(np.mean(imp >= t)), float(np.mean(gen < t)), float(t)) for t in sim})
    below = [p for p in pts if p[0] < p[1]][-1]
    above = [p for p in pts if p[0] >= p[1]][0]
    a = (below[1] - below[0]) / ((below[1] - below[0]) - (above[1] - above[0]))
    assert r.eer == pytest.approx(below[0] + a * (above[0] - below[0]))


def test_auc_with_ties_matches_mann_whitney() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(300), 1)  # many ties
    issame = rng.random(300) < 0.4
    fpr, tpr, _ = roc_curve(scores, issame)
    gen, imp = scores[issame], scores[~issame]
    expected = np.mean([(g > i) + 0.5 * (g == i) for g in gen for i in imp])
    assert auc_score(fpr, tpr) == pytest.approx(expected)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0


def test_fuse_flip() -> None:
    e = np.array([[3.0, 0.0], [0.0, 1.0]])
    f = np.array([[0.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(fuse_flip(e, f), [[0.6, 0.8], [0.0, 1.0]])
    with pytest.raises(FcbenchError):
        fuse_flip(e, f[:1])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.ones((20, 4)), np.ones((20, 5)), np.arange(20) % 2 == 0), "differ in shape"),
        ((np.ones(20), np.ones(20), np.arange(20) % 2 == 0), r"\[N, D\]"),
        ((np.ones((20, 4)), np.ones((20, 4)), np.arange(19) % 2 == 0), "19 entries"),
        ((np.ones((5, 4)), np.ones((5, 4)), np.arange(5) % 2 == 0), "fewer than the 10 folds"),
        ((np.ones((20, 4)), np.ones((20, 4)), np.ones(20, bool)), "no impostor"),
        ((np.ones((20, 4)), np.ones((20, 4)), np.zeros(20, bool)), "no genuine"),
        ((np.full((20, 4), np.nan), np.ones((20, 4)), np.arange(20) % 2 == 0), "NaN"),
        ((np.ones((20, 4)), np.ones((20, 4)), np.arange(20) % 3), "bool or 0/1"),
    ],
)
def test_verification_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(FcbenchError, match=match):
        verification_metrics(*args)


def test_issame_as_ints_and_fewer_folds() -> None:
    e1, e2 = pairs_with_cosines(GEN + IMP)
    r = verification_metrics(e1, e2, np.array([1] * 4 + [0] * 10), nfolds=3, far_targets=())
    assert len(r.fold_accuracies) == 3 and r.skipped_far == [] and r.tar_at_far == {}


# ---------------------------------------------------------------------------------- classification


def test_classification_topk() -> None:
    logits = np.array([
        [9, 1, 2, 3, 4, 5],  # label 0: top1
        [1, 9, 2, 3, 4, 5],  # label 2: rank 4 (9,5,4,3 above) -> top5 only
        [1, 2, 3, 4, 5, 9],  # label 0: last -> miss
        [5, 4, 3, 2, 1, 0],  # label 1: rank 1 -> top5
    ], dtype=np.float32)
    r = classification_metrics(logits, np.array([0, 2, 0, 1]))
    assert r.top1 == 0.25 and r.top5 == 0.75 and r.n == 4
    assert dict(r.to_rows()) == {"top1": 0.25, "top5": 0.75}


def test_classification_few_classes_and_ties() -> None:
    r = classification_metrics(np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 0.0]]), np.array([2, 0]))
    assert r.top5 is None and r.top1 == 0.5  # the tie in row 2 does not count as a hit
    assert [name for name, _ in r.to_rows()] == ["top1"]


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (np.zeros((3, 4)), np.array([0, 1, 4]), "0..3"),
        (np.zeros((3, 4)), np.array([0, 1]), "shape"),
        (np.zeros(4), np.array([0]), r"\[N, C\]"),
        (np.array([[np.nan, 0.0]]), np.array([0]), "NaN"),
        (np.zeros((2, 4)), np.array([0.5, 1.0]), "integer"),
    ],
)
def test_classification_bad_input(logits: np.ndarray, labels: np.ndarray, match: str) -> None:
    with pytest.raises(FcbenchError, match=match):
        classification_metrics(logits, labels)


# ---------------------------------------------------------------------------------- identification


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_identification_closed_set() -> None:
    ids = ["A", "B", "C", "D", "E", "F"]
    gallery = np.array([unit(a) for a in (0, 60, 120, 180, 240, 300, 10)]) * 3.0  # norms do not matter
    gallery_labels = np.array(ids + ["A"])
    probe = np.array([unit(5), unit(95), unit(180), unit(30)])
    probe_labels = np.array(["A", "B", "D", "Z"])  # B is nearer C; Z is not enrolled
    r = identification_metrics(gallery, gallery_labels, probe, probe_labels)
    assert r.rank1 == pytest.approx(2 / 3) and r.rank5 == 1.0
    assert r.n_probe == 3 and r.n_unknown == 1 and r.n_identities == 6
    assert dict(r.to_rows()) == {"rank1": pytest.approx(2 / 3), "rank5": 1.0}


def test_identification_ties_and_small_gallery() -> None:
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    r = identification_metrics(gallery, np.array([1, 2, 3]), np.array([[1.0, 0.0]]), np.array([1]))
    assert r.rank1 == 0.0 and r.rank5 is None and r.ranks == {1: 0.0}  # tie with id 2 counts against


def open_set_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = 8
    eye = np.eye(d)
    gallery, gallery_labels = eye[:5], np.arange(5)

    def vec(cos: float, ident: int, spare: int) -> np.ndarray:
        return cos * eye[ident] + math.sqrt(1 - cos**2) * eye[spare]

    known = [vec(c, i, 7) for i, c in enumerate([0.9, 0.8, 0.7, 0.6, 0.5])]
    known.append(vec(0.95, 2, 7))  # label 1 but best match is identity 2: never a true accept
    dis = [vec(b, 0, 6) for b in [0.75, 0.65, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.0]]
    probe = np.array(known + dis)
    probe_labels = np.array([0, 1, 2, 3, 4, 1] + [99] * 10)
    return gallery, gallery_labels, probe, probe_labels


def test_open_set_tar_at_far() -> None:
    case = open_set_case()
    r = open_set_tar_at_far(*case, far=0.1)  # one distractor (0.75) may pass: threshold 0.7
    assert r.threshold == pytest.approx(0.7) and r.tar == pytest.approx(3 / 6)
    assert r.far_achieved == pytest.approx(0.1) and r.n_known == 6 and r.n_distractor == 10
    r2 = open_set_tar_at_far(*case, far=0.2)  # two may pass (0.75, 0.65): threshold 0.5
    assert r2.threshold == pytest.approx(0.5) and r2.tar == pytest.approx(5 / 6)
    assert dict(r.to_rows())["open_set_tar@far=1e-01"] == pytest.approx(0.5)
    with pytest.raises(FcbenchError, match="100 distractor"):
        open_set_tar_at_far(*case, far=0.01)


def test_identification_bad_input() -> None:
    g, gl, p, pl = open_set_case()
    with pytest.raises(FcbenchError, match="dim"):
        identification_metrics(g, gl, p[:, :4], pl)
    with pytest.raises(FcbenchError, match="entries"):
        identification_metrics(g, gl[:3], p, pl)
    with pytest.raises(FcbenchError, match="no probe identity"):
        identification_metrics(g, gl, p[6:], pl[6:])
    with pytest.raises(FcbenchError, match="not comparable"):
        identification_metrics(g, gl, p, pl.astype(str))
    bad = p.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FcbenchError, match="NaN"):
        identification_metrics(g, gl, bad, pl)
