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


# ------------------------------------------------------------------ open-set metrics from a score matrix


@dataclass
class DirResult:
    """Open-set identification at one FPIR (NIST's DIR at FPIR): see :func:`dir_at_fpir`."""

    dir: float  # mated searches with the mate at rank <= rank and scoring >= threshold / mated searches
    fpir: float  # the target
    fpir_achieved: float  # non-mated searches whose top score is >= threshold / non-mated searches
    threshold: float
    rank: int
    n_mated: int
    n_nonmated: int
    n_identities: int

    def to_rows(self) -> list[tuple[str, float]]:
        """(metric, value) pairs, e.g. ('dir@fpir=1e-01', 0.93); rank > 1 adds ',rank=K' to the names."""
        label = far_label(self.fpir) + ("" if self.rank == 1 else f",rank={self.rank}")
        return [(f"dir@fpir={label}", float(self.dir)), (f"dir_threshold@fpir={label}", float(self.threshold)),
                (f"fpir_achieved@fpir={label}", float(self.fpir_achieved))]


@dataclass
class FnmrResult:
    """Verification over every probe x gallery comparison at one FMR: see :func:`fnmr_at_fmr_matrix`."""

    fnmr: float  # genuine comparisons scoring < threshold / genuine comparisons
    fmr: float  # the target
    fmr_achieved: float  # impostor comparisons scoring >= threshold / impostor comparisons
    threshold: float
    n_genuine: int
    n_impostor: int

    def to_rows(self) -> list[tuple[str, float]]:
        """(metric, value) pairs, e.g. ('fnmr@fmr=1e-04', 0.12)."""
        label = far_label(self.fmr)
        return [(f"fnmr@fmr={label}", float(self.fnmr)), (f"fnmr_threshold@fmr={label}", float(self.threshold)),
                (f"fmr_achieved@fmr={label}", float(self.fmr_achieved))]


def similarity_matrix(probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarities ``[P, G]`` of probe and gallery embeddings: the score matrix the two metrics below take."""
    p, g = _embeddings(probe, "probe"), _embeddings(gallery, "gallery")
    if g.shape[1] != p.shape[1]:
        raise FcbenchError(f"identification: gallery dim {g.shape[1]} differs from probe dim {p.shape[1]}")
    return l2_normalize(p) @ l2_normalize(g).T


def _score_matrix(scores: np.ndarray, gallery_labels: np.ndarray, probe_labels: np.ndarray, what: str):
    s = np.asarray(scores)
    if s.ndim != 2 or 0 in s.shape:
        raise FcbenchError(f"{what}: scores must be a non-empty [probes, gallery] matrix, got shape {s.shape}")
    _check_finite(s, f"{what}: scores")
    gl = _labels(gallery_labels, s.shape[1], "gallery")
    pl = _labels(probe_labels, s.shape[0], "probe")
    if (gl.dtype.kind in "US") != (pl.dtype.kind in "US"):
        raise FcbenchError(f"{what}: gallery labels ({gl.dtype}) and probe labels ({pl.dtype}) are not comparable; "
                           "use the same kind of label")
    return s.astype(np.float64), gl, pl


def dir_at_fpir(scores: np.ndarray, gallery_labels: np.ndarray, probe_labels: np.ndarray, fpir: float = 0.1,
                rank: int = 1) -> DirResult:
    """Detection-and-identification rate at a false-positive identification rate, from a ``[P, G]`` score matrix
    (probe x gallery similarities, higher = more alike; :func:`similarity_matrix` makes one from embeddings).

    The dissertation's open-set protocol: a gallery of one photo per person (several are allowed: an identity
    scores its best photo), mated probes (their identity is enrolled) and non-mated *distractor* probes (not
    enrolled). FPIR = distractors whose top identity scores ``>= threshold`` / distractors; the threshold is
    the loosest observed score keeping FPIR <= ``fpir``, ties never split (as :func:`open_set_tar_at_far`).
    DIR = mated probes whose mate ranks within the top ``rank`` identities (ties count against the probe)
    *and* scores ``>= threshold`` / mated probes. Needs ``ceil(1 / fpir)`` distractors (10 for FPIR = 0.1),
    refused with one line below that; the dissertation used >= 500 distractors, where one distractor more or
    less moves FPIR by 0.2 % instead of 10 %. With ``rank = 1`` this is :func:`open_set_tar_at_far`'s figure.
    """
    what = "DIR at FPIR"
    if not 0.0 < fpir <= 1.0:
        raise FcbenchError(f"{what}: the FPIR target must be in (0, 1], got {fpir}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise FcbenchError(f"{what}: rank must be a positive integer, got {rank!r}")
    s, gl, pl = _score_matrix(scores, gallery_labels, probe_labels, what)
    order = np.argsort(gl, kind="stable")
    ids, starts = np.unique(gl[order], return_index=True)
    per_id = np.maximum.reduceat(s[:, order], starts, axis=1)  # [P, identities]: each identity's best photo
    slot = np.clip(np.searchsorted(ids, pl), 0, ids.size - 1)
    mated = ids[slot] == pl
    n_mated, n_non = int(mated.sum()), int((~mated).sum())
    if n_mated == 0:
        raise FcbenchError(f"{what}: no probe identity appears in the gallery, so DIR is undefined; check the labels")
    if n_non < min_impostors(fpir):
        raise FcbenchError(f"{what}: FPIR {fpir:g} needs at least {min_impostors(fpir)} distractor probes "
                           f"(identity not in the gallery), only {n_non} given; add distractors")
    mate = per_id[mated, slot[mated]]
    mate_rank = (per_id[mated] >= mate[:, None]).sum(axis=1) - 1  # other identities at least as high
    top_non = per_id[~mated].max(axis=1)
    t, rate, achieved = operating_point(mate[mate_rank < rank], top_non, fpir, n_pos=n_mated)
    return DirResult(dir=rate, fpir=float(fpir), fpir_achieved=achieved, threshold=t, rank=int(rank),
                     n_mated=n_mated, n_nonmated=n_non, n_identities=int(ids.size))


def fnmr_at_fmr_matrix(scores: np.ndarray, gallery_labels: np.ndarray, probe_labels: np.ndarray,
                       fmr: float = 1e-4) -> FnmrResult:
    """False non-match rate at a false match rate over every probe x gallery comparison of a ``[P, G]`` score
    matrix (1:1 verification: a cell is genuine when probe and gallery labels agree, an impostor otherwise).

    The threshold is the loosest observed score keeping FMR <= ``fmr`` (ties never split); FNMR = genuine
    comparisons scoring ``< threshold`` / genuine comparisons. An FMR of ``fmr`` needs ``ceil(1 / fmr)``
    impostor comparisons: 10,000 for the dissertation's FMR = 1e-4 (e.g. 100 probes x 100 other gallery
    identities); fewer are refused with one line. See :func:`fcbench.metrics.verification.fnmr_at_fmr` for
    a list of pairs instead of a matrix.
    """
    what = "FNMR at FMR"
    if not 0.0 < fmr <= 1.0:
        raise FcbenchError(f"{what}: the FMR target must be in (0, 1], got {fmr}")
    s, gl, pl = _score_matrix(scores, gallery_labels, probe_labels, what)
    same = pl[:, None] == gl[None, :]
    n_gen, n_imp = int(same.sum()), int((~same).sum())
    if n_gen == 0:
        raise FcbenchError(f"{what}: no genuine comparison (no probe shares an identity with a gallery photo)")
    if n_imp < min_impostors(fmr):
        raise FcbenchError(f"{what}: FMR {fmr:g} needs at least {min_impostors(fmr)} impostor comparisons "
                           f"(probe x gallery pairs of different identities), only {n_imp} given; "
                           "add probes or gallery identities")
    t, tar, achieved = operating_point(s[same], s[~same], fmr)
    return FnmrResult(fnmr=1.0 - tar, fmr=float(fmr), fmr_achieved=achieved, threshold=t,
                      n_genuine=n_gen, n_impostor=n_imp)
