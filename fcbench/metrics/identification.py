"""1:N identification by cosine similarity: closed-set rank-k and open-set TAR@FAR.

A probe is compared with every gallery identity; an identity's score is the best cosine similarity
over its gallery images. The true identity's rank is the number of *other* identities scoring at
least as high (ties count against the probe), so rank 0 is a rank-1 hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fcbench.errors import FcbenchError
from fcbench.metrics.verification import _check_finite, far_label, l2_normalize, min_impostors, operating_point

_BLOCK_ELEMENTS = 4_000_000  # probe x gallery similarities held at once


@dataclass
class IdentificationResult:
    """Closed-set rank-k accuracy over probes whose identity is in the gallery."""

    rank1: float
    rank5: float | None  # None with fewer than 5 gallery identities
    n_probe: int  # probes evaluated (identity enrolled)
    ranks: dict[int, float] = field(default_factory=dict)
    n_identities: int = 0
    n_unknown: int = 0  # probes left out: identity not in the gallery

    def to_rows(self) -> list[tuple[str, float]]:
        """(metric, value) pairs: 'rank1', 'rank5', ... for each rank measured."""
        ranks = dict(self.ranks) or {1: self.rank1, **({5: self.rank5} if self.rank5 is not None else {})}
        ranks.setdefault(1, self.rank1)
        return [(f"rank{k}", float(v)) for k, v in sorted(ranks.items())]


@dataclass
class OpenSetResult:
    """Open-set identification at one FAR: distractors are probes whose identity is not enrolled."""

    tar: float  # known probes whose best match is correct and >= threshold / known probes
    far: float  # the target
    far_achieved: float  # distractors whose best match is >= threshold / distractors
    threshold: float  # cosine similarity, accept when >= threshold
    n_known: int
    n_distractor: int

    def to_rows(self) -> list[tuple[str, float]]:
        """(metric, value) pairs, e.g. ('open_set_tar@far=1e-01', 0.93)."""
        label = far_label(self.far)
        return [(f"open_set_tar@far={label}", float(self.tar)),
                (f"open_set_threshold@far={label}", float(self.threshold)),
                (f"open_set_far_achieved@far={label}", float(self.far_achieved))]


@dataclass
class _Matches:
    rank: np.ndarray  # rank of the true identity, -1 for probes not enrolled
    best: np.ndarray  # best identity score of each probe
    known: np.ndarray  # probe identity is in the gallery
    n_identities: int


def _labels(labels: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise FcbenchError(f"identification: {what} labels must be 1-D with {n} entries, got shape {arr.shape}")
    if arr.dtype == object:
        raise FcbenchError(f"identification: {what} labels must be numbers or strings, not Python objects")
    return arr


def _embeddings(emb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(emb)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FcbenchError(f"identification: {what} must be a non-empty [N, D] array, got shape {arr.shape}")
    _check_finite(arr, f"identification: {what} embeddings")
    return arr


def _match(gallery: np.ndarray, gallery_labels: np.ndarray, probe: np.ndarray, probe_labels: np.ndarray) -> _Matches:
    g, p = _embeddings(gallery, "gallery"), _embeddings(probe, "probe")
    if g.shape[1] != p.shape[1]:
        raise FcbenchError(f"identification: gallery dim {g.shape[1]} differs from probe dim {p.shape[1]}")
    gl, pl = _labels(gallery_labels, g.shape[0], "gallery"), _labels(probe_labels, p.shape[0], "probe")
    if (gl.dtype.kind in "US") != (pl.dtype.kind in "US"):
        raise FcbenchError(f"identification: gallery labels ({gl.dtype}) and probe labels ({pl.dtype}) "
                           "are not comparable; use the same kind of label")

    order = np.argsort(gl, kind="stable")
    g = l2_normalize(g[order])
    ids, starts = np.unique(gl[order], return_index=True)
    slot = np.clip(np.searchsorted(ids, pl), 0, ids.size - 1)
    known = ids[slot] == pl
    true_col = np.where(known, slot, 0)

    rank = np.full(p.shape[0], -1, dtype=np.int64)
    best = np.empty(p.shape[0], dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // g.shape[0])
    for s in range(0, p.shape[0], step):
        sims = l2_normalize(p[s:s + step]) @ g.T
        per_id = np.maximum.reduceat(sims, starts, axis=1)  # best image of each identity
        best[s:s + step] = per_id.max(axis=1)
        true_score = per_id[np.arange(per_id.shape[0]), true_col[s:s + step]][:, None]
        r = (per_id >= true_score).sum(axis=1) - 1
        rank[s:s + step] = np.where(known[s:s + step], r, -1)
    return _Matches(rank=rank, best=best, known=known, n_identities=int(ids.size))


def identification_metrics(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probe: np.ndarray,
    probe_labels: np.ndarray,
    ranks: tuple[int, ...] = (1, 5),
) -> IdentificationResult:
    """Closed-set rank-k identification accuracy by cosine similarity.

    Probes whose identity has no gallery image cannot be identified in a closed set; they are
    left out and counted in ``n_unknown``. A rank larger than the number of identities is left out.
    """
    bad = [k for k in ranks if not isinstance(k, (int, np.integer)) or k < 1]
    if bad:
        raise FcbenchError(f"identification: ranks must be positive integers, got {bad}")
    m = _match(gallery, gallery_labels, probe, probe_labels)
    n_known = int(m.known.sum())
    if n_known == 0:
        raise FcbenchError("identification: no probe identity appears in the gallery; check the gallery/probe split")
    r = m.rank[m.known]
    out = {int(k): float(np.mean(r < k)) for k in sorted(set(ranks) | {1}) if k <= m.n_identities}
    return IdentificationResult(rank1=out[1], rank5=out.get(5), n_probe=n_known, ranks=out,
                                n_identities=m.n_identities, n_unknown=int(m.known.size - n_known))


def open_set_tar_at_far(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probe: np.ndarray,
    probe_labels: np.ndarray,
    far: float = 0.1,
) -> OpenSetResult:
    """Open-set TAR at a FAR over distractors (probes whose identity is not in the gallery).

    FAR = distractors whose best gallery score is ``>= threshold`` / distractors; the threshold is
    the loosest observed score keeping FAR <= ``far`` (ties never split; see
    :func:`fcbench.metrics.verification.operating_point`). TAR = known probes whose best match is the
    right identity *and* scores ``>= threshold`` / known probes. Needs ``ceil(1 / far)`` distractors.
    """
    if not 0.0 < far <= 1.0:
        raise FcbenchError(f"open-set: FAR target must be in (0, 1], got {far}")
    m = _match(gallery, gallery_labels, probe, probe_labels)
    n_known, n_dis = int(m.known.sum()), int((~m.known).sum())
    if n_known == 0:
        raise FcbenchError("open-set: no probe identity appears in the gallery, so TAR is undefined")
    if n_dis < min_impostors(far):
        raise FcbenchError(f"open-set: FAR {far:g} needs at least {min_impostors(far)} distractor probes "
                           f"(identity not in the gallery), only {n_dis} given")
    correct = m.known & (m.rank == 0)
    t, tar, achieved = operating_point(m.best[correct], m.best[~m.known], far, n_pos=n_known)
    return OpenSetResult(tar=tar, far=float(far), far_achieved=achieved, threshold=t,
                         n_known=n_known, n_distractor=n_dis)
