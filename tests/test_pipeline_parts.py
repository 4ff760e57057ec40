"""The detect -> embed -> identify pieces: crop and 5-point alignment, the open-set metrics from score
matrices (DIR at FPIR, FNMR at FMR), and ``identify`` over a toy video with a hand-weighted detector."""

from __future__ import annotations

import numpy as np
import pytest
from detection_toys import background, decode_cells, onnx_parts, toy_detector

import fcbench.metrics.identification as ident
from fcbench.data.preprocess import Preprocessing
from fcbench.detection.align import ARCFACE_TEMPLATE, align, crop, similarity_transform, template, warp_affine
from fcbench.detection.gating import MotionGate
from fcbench.detection.pipeline import (
    IDENTIFY_STAGES,
    Detector,
    Embedder,
    Gallery,
    identify,
    numpy_callable,
    probe_set,
)
from fcbench.errors import FcbenchError

# ------------------------------------------------------------------------------------------------ align


def pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth RGB pattern in the aligned face's coordinates (float, 0..255)."""
    return np.stack([127.5 + 100 * np.sin(u / 7.0) * np.cos(v / 9.0),
                     127.5 + 100 * np.cos(u / 11.0 + 1.0),
                     127.5 + 100 * np.sin((u + v) / 13.0)], axis=-1)


def similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    th = np.deg2rad(degrees)
    r = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return np.hstack([r, np.asarray(shift, float)[:, None]])


def test_umeyama_recovers_a_known_similarity() -> None:
    t = similarity(1.7, 25.0, (60.0, 20.0))
    src = ARCFACE_TEMPLATE @ t[:, :2].T + t[:, 2]
    est = similarity_transform(ARCFACE_TEMPLATE, src)
    np.testing.assert_allclose(est, t, atol=1e-9)
    back = similarity_transform(src, ARCFACE_TEMPLATE)  # the inverse
    np.testing.assert_allclose(np.vstack([back, [0, 0, 1]]) @ np.vstack([t, [0, 0, 1]]), np.eye(3), atol=1e-9)


def test_umeyama_is_the_least_squares_similarity() -> None:
    rng = np.random.default_rng(0)
    t = similarity(0.8, -40.0, (5.0, -3.0))
    dst = ARCFACE_TEMPLATE @ t[:, :2].T + t[:, 2] + rng.normal(scale=2.0, size=(5, 2))
    est = similarity_transform(ARCFACE_TEMPLATE, dst)

    def residual(m: np.ndarray) -> float:
        return float(((ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2] - dst) ** 2).sum())

    for _ in range(200):  # every nearby similarity fits worse
        s, a, dx, dy = rng.normal(scale=[0.01, 0.5, 0.2, 0.2])
        scale = np.hypot(*est[:, 0]) * (1 + s)
        angle = np.rad2deg(np.arctan2(est[1, 0], est[0, 0])) + a
        assert residual(similarity(scale, angle, (est[0, 2] + dx, est[1, 2] + dy))) > residual(est)


def test_umeyama_never_reflects() -> None:
    mirrored = ARCFACE_TEMPLATE * [-1, 1]
    est = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(est[:, :2]) > 0


def test_align_warps_a_rotated_scaled_face_onto_the_template() -> None:
    """A frame made analytically from the aligned pattern through a known similarity (no warp used to make
    it); aligning by the landmarks that similarity puts the template at gives the pattern back."""
    t = similarity(1.7, 25.0, (160.0, 30.0))  # aligned -> frame
    inv = np.linalg.inv(np.vstack([t, [0, 0, 1]]))
    y, x = np.mgrid[0:400, 0:400].astype(float)  # holds the whole rotated face
    frame = np.clip(np.rint(pattern(inv[0, 0] * x + inv[0, 1] * y + inv[0, 2],
                                    inv[1, 0] * x + inv[1, 1] * y + inv[1, 2])), 0, 255).astype(np.uint8)
    landmarks = ARCFACE_TEMPLATE @ t[:, :2].T + t[:, 2]
    out = align(frame, landmarks)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    v, u = np.mgrid[0:112, 0:112].astype(float)
    err = np.abs(out.astype(float) - pattern(u, v))
    assert err.mean() < 0.5 and err.max() < 2.0  # rounding of the frame and of the output, and bilinear
    # and a wrong alignment (the landmarks of another rotation) is far off: the check can fail
    wrong = ARCFACE_TEMPLATE @ similarity(1.7, 35.0, (160.0, 30.0))[:, :2].T + t[:, 2]
    assert np.abs(align(frame, wrong).astype(float) - pattern(u, v)).mean() > 10


def test_align_to_another_size_scales_the_template() -> None:
    np.testing.assert_allclose(template((56, 56)), ARCFACE_TEMPLATE / 2)
    img = np.zeros((100, 100, 3), np.uint8)
    assert align(img, ARCFACE_TEMPLATE, size=(56, 64)).shape == (56, 64, 3)


def test_crop_by_box_margin_and_outside_the_frame() -> None:
    img = (np.arange(60 * 80 * 3).reshape(60, 80, 3) % 251).astype(np.uint8)
    np.testing.assert_array_equal(crop(img, [0, 0, 80, 60], size=(60, 80)), img)
    np.testing.assert_array_equal(crop(img, [10, 20, 30, 40], size=(20, 20)), img[20:40, 10:30])
    np.testing.assert_array_equal(crop(img, [20, 20, 30, 30], size=(20, 20), margin=0.5), img[15:35, 15:35])
    y, x = np.mgrid[0:60, 0:80]
    ramp = (x + 2 * y).astype(np.uint8)  # linear, so bilinear resampling is exact
    big = crop(ramp, [10, 20, 30, 40], size=(40, 40))  # 2x: output pixel u shows frame x = (u + 19.5) / 2
    v, u = np.mgrid[0:40, 0:40]
    np.testing.assert_array_equal(big, np.rint((u + 19.5) / 2 + 2 * (v + 39.5) / 2))
    edge = crop(img, [-10, -10, 10, 10], size=(20, 20))
    assert (edge[:10, :10] == 0).all() and (edge[:10, 10:] == 0).all()  # outside the frame: black
    np.testing.assert_array_equal(edge[10:, 10:], img[:10, :10])


def test_warp_is_bilinear() -> None:
    img = np.array([[0, 100], [200, 50]], np.uint8)
    half = np.array([[1.0, 0, -0.5], [0, 1.0, -0.5]])  # output (0, 0) shows the frame at (0.5, 0.5)
    assert warp_affine(img, half, (1, 1))[0, 0] == round((0 + 100 + 200 + 50) / 4)


@pytest.mark.parametrize("call, words", [
    (lambda img: align(img, np.zeros((4, 2))), "need 5 landmarks"),
    (lambda img: align(img, np.ones((5, 2))), "all lie on one point"),
    (lambda img: align(img, np.full((5, 2), np.nan)), "NaN or inf"),
    (lambda img: crop(img, [10, 10, 5, 20]), "empty or inverted"),
    (lambda img: crop(img, [0, 0, 5, 5], margin=-1), "margin"),
    (lambda img: crop(img, [0, 0, 5, 5], size=(0, 5)), "size must be positive"),
    (lambda img: crop(np.zeros((0, 4, 3), np.uint8), [0, 0, 5, 5]), "HWC image"),
])
def test_align_bad_input_is_one_line(call, words: str) -> None:
    with pytest.raises(FcbenchError) as e:
        call(np.zeros((32, 32, 3), np.uint8))
    assert words in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------- open-set metrics


def dir_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One gallery photo for each of 3 people; 4 mated probes and 10 distractors, top scores worked out by hand."""
    mated = [[0.9, 0.2, 0.1],  # label 0: mate 0.9, rank 1
             [0.3, 0.8, 0.1],  # label 1: mate 0.8, rank 1
             [0.7, 0.1, 0.6],  # label 2: mate 0.6, rank 2 (person 0 scores higher)
             [0.5, 0.3, 0.2]]  # label 0: mate 0.5, rank 1
    tops = [0.85, 0.55, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1]
    distractors = [[t, t / 2, t / 3][k % 3:] + [t, t / 2, t / 3][:k % 3] for k, t in enumerate(tops)]
    return np.array(mated + distractors), np.array([0, 1, 2]), np.array([0, 1, 2, 0] + list(range(10, 20)))


def test_dir_at_fpir_hand_computed() -> None:
    scores, gl, pl = dir_case()
    r = ident.dir_at_fpir(scores, gl, pl, fpir=0.1)  # 1 of 10 distractors may pass: threshold 0.8
    assert (r.threshold, r.dir, r.fpir_achieved) == (pytest.approx(0.8), 0.5, pytest.approx(0.1))
    assert (r.n_mated, r.n_nonmated, r.n_identities, r.rank) == (4, 10, 3, 1)
    r3 = ident.dir_at_fpir(scores, gl, pl, fpir=0.3)  # 3 may pass (0.85, 0.55, 0.45): threshold 0.45
    assert (r3.threshold, r3.dir, r3.fpir_achieved) == (pytest.approx(0.45), 0.75, pytest.approx(0.3))
    r3k = ident.dir_at_fpir(scores, gl, pl, fpir=0.3, rank=2)  # the rank-2 mate (0.6) now counts
    assert r3k.dir == 1.0
    rows = dict(r.to_rows())
    assert rows["dir@fpir=1e-01"] == 0.5 and rows["dir_threshold@fpir=1e-01"] == pytest.approx(0.8)
    assert "dir@fpir=3e-01,rank=2" in dict(r3k.to_rows())


def test_dir_at_fpir_takes_each_identitys_best_photo() -> None:
    scores, gl, pl = dir_case()
    extra = np.c_[scores, np.r_[[0.95, 0, 0, 0], np.zeros(10)]]  # a second photo of person 2 ...
    r = ident.dir_at_fpir(extra, np.array([0, 1, 2, 2]), pl, fpir=0.1)
    assert r.n_identities == 3
    assert r.dir == 0.25  # ... scoring 0.95 for probe 0: person 2 outranks its mate, only probe 1 is left
    extra = np.c_[scores, np.r_[[0, 0, 0, 0.95], np.zeros(10)]]  # a second photo of person 0 ...
    r1 = ident.dir_at_fpir(extra, np.array([0, 1, 2, 0]), pl, fpir=0.1)
    assert r1.dir == 0.75  # ... scoring 0.95 for probe 3, whose mate scored 0.5 before


def test_dir_at_fpir_agrees_with_open_set_tar_at_far() -> None:
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(20, 16))
    gl = np.arange(20)
    probe = np.r_[gallery[:15] + rng.normal(scale=0.8, size=(15, 16)), rng.normal(size=(30, 16))]
    pl = np.r_[np.arange(15), np.arange(100, 130)]
    a = ident.dir_at_fpir(ident.similarity_matrix(probe, gallery), gl, pl, fpir=0.1)
    b = ident.open_set_tar_at_far(gallery, gl, probe, pl, far=0.1)
    assert (a.dir, a.threshold, a.fpir_achieved) == (pytest.approx(b.tar), pytest.approx(b.threshold),
                                                     pytest.approx(b.far_achieved))


def test_dir_at_fpir_refuses_too_few_distractors() -> None:
    scores, gl, pl = dir_case()
    with pytest.raises(FcbenchError) as e:
        ident.dir_at_fpir(scores, gl, pl, fpir=0.05)
    assert "FPIR 0.05 needs at least 20 distractor probes" in str(e.value) and "only 10" in str(e.value)
    with pytest.raises(FcbenchError, match="no probe identity appears in the gallery"):
        ident.dir_at_fpir(scores[4:], gl, pl[4:], fpir=0.1)
    with pytest.raises(FcbenchError, match="rank must be a positive integer"):
        ident.dir_at_fpir(scores, gl, pl, rank=0)
    with pytest.raises(FcbenchError, match=r"gallery labels must be 1-D with 3 entries"):
        ident.dir_at_fpir(scores, gl[:2], pl)


def fnmr_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 genuine comparisons (0.9, 0.7, 0.45, 0.6) and 11 impostor ones (0.55 the highest, then 0.5, 0.4 ...)."""
    scores = np.array([[0.9, 0.3, 0.2],
                       [0.4, 0.7, 0.1],
                       [0.5, 0.35, 0.45],
                       [0.6, 0.25, 0.15],
                       [0.55, 0.05, 0.0]])
    return scores, np.array([0, 1, 2]), np.array([0, 1, 2, 0, 5])


def test_fnmr_at_fmr_hand_computed() -> None:
    scores, gl, pl = fnmr_case()
    r = ident.fnmr_at_fmr_matrix(scores, gl, pl, fmr=0.1)  # 1 of 11 impostors may pass: threshold 0.55
    assert (r.threshold, r.fnmr, r.fmr_achieved) == (pytest.approx(0.55), 0.25, pytest.approx(1 / 11))
    assert (r.n_genuine, r.n_impostor) == (4, 11)
    r2 = ident.fnmr_at_fmr_matrix(scores, gl, pl, fmr=0.2)  # 2 may pass (0.55, 0.5): the genuine 0.45 is the
    assert (r2.threshold, r2.fnmr, r2.fmr_achieved) == (pytest.approx(0.45), 0.0, pytest.approx(2 / 11))  # loosest
    r3 = ident.fnmr_at_fmr_matrix(scores, gl, pl, fmr=0.3)  # 3 may pass: threshold 0.4, every genuine accepted
    assert (r3.threshold, r3.fnmr, r3.fmr_achieved) == (pytest.approx(0.4), 0.0, pytest.approx(3 / 11))
    assert dict(r.to_rows())["fnmr@fmr=1e-01"] == 0.25


def test_fnmr_at_fmr_refuses_too_few_impostor_comparisons() -> None:
    scores, gl, pl = fnmr_case()
    with pytest.raises(FcbenchError) as e:
        ident.fnmr_at_fmr_matrix(scores, gl, pl, fmr=1e-4)
    msg = str(e.value)
    assert "FMR 0.0001 needs at least 10000 impostor comparisons" in msg and "only 11 given" in msg
    assert "\n" not in msg
    with pytest.raises(FcbenchError, match="no genuine comparison"):
        ident.fnmr_at_fmr_matrix(scores, gl, np.array([7, 8, 9, 7, 5]), fmr=0.1)
    with pytest.raises(FcbenchError, match="NaN or inf"):
        ident.fnmr_at_fmr_matrix(np.where(scores > 0.8, np.nan, scores), gl, pl, fmr=0.1)


# ------------------------------------------------------------------------- detect -> embed -> identify

FACE = 16  # face side, pixels (4 x 4 cells of the toy detector)


def face(seed: int) -> np.ndarray:
    """A bright textured 16 x 16 'face' (float in [0.7, 1])."""
    return np.random.default_rng(seed).uniform(0.7, 1.0, size=(FACE, FACE, 3))


def faces_video(frames: int = 6) -> list[np.ndarray]:
    """Alice walks along the top row and an unknown face along the bottom row, 8 px (two cells, half a face) a
    frame; Bob stands still in the middle row, on the right."""
    alice, bob, stranger = face(1), face(2), face(3)
    out = []
    for i in range(frames):
        f = background(0)
        f[4:20, 8 * i:8 * i + FACE] = alice
        f[24:40, 44:60] = bob
        f[44:60, 8 * i:8 * i + FACE] = stranger
        out.append(np.rint(f * 255).astype(np.uint8))
    return out


def pixel_embedder() -> Embedder:
    """The crop's own centred pixels as its embedding: a real function of the crop, so identities match only
    when the right pixels were cut out."""
    return Embedder(embed=lambda x: x.reshape(len(x), -1) - x.reshape(len(x), -1).mean(axis=1, keepdims=True),
                    preprocess=Preprocessing(size=(FACE, FACE)).apply, size=(FACE, FACE))


def toy_gallery(embedder: Embedder, threshold: float = 0.9) -> Gallery:
    photos = np.stack([embedder.preprocess(np.rint(face(s) * 255).astype(np.uint8)) for s in (1, 2)])
    return Gallery(embedder.embed(photos), np.array(["alice", "bob"]), threshold=threshold)


def to_chw(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)


def torch_detector() -> Detector:
    front, back = toy_detector()
    return Detector(numpy_callable(front), numpy_callable(back), decode_cells, to_chw)


def labels(run) -> list[list]:
    return [sorted(m.label or "?" for m in frame) for frame in run.matches]


def test_identify_finds_crops_embeds_and_matches_every_face() -> None:
    emb = pixel_embedder()
    run = identify(faces_video(), torch_detector(), emb, toy_gallery(emb))
    assert labels(run) == [["?", "alice", "bob"]] * 6
    for frame in run.matches:
        for m in frame:
            assert not m.aligned
            assert m.similarity > 0.999 if m.label else m.similarity < 0.5
    assert run.run_head.all() and set(run.times) == set(IDENTIFY_STAGES)
    s = run.summary()
    assert (s["frames"], s["faces"], s["skipped"]) == (6, 18, 0)
    assert s["ms_per_frame"] == pytest.approx(sum(s[f"ms_{k}"] for k in IDENTIFY_STAGES))


def test_identify_gated_drops_the_face_that_stands_still() -> None:
    emb = pixel_embedder()
    run = identify(faces_video(), torch_detector(), emb, toy_gallery(emb), gate=MotionGate())
    assert labels(run) == [["?", "alice", "bob"]] + [["?", "alice"]] * 5  # frame 0 keeps all (no background yet)


def test_identify_aligns_by_landmarks_when_the_detector_gives_them() -> None:
    lm16 = template((FACE, FACE))

    def decode_with_landmarks(raw):
        boxes, scores, lab = decode_cells(raw)
        # landmarks where the template sits in each box, normalised (pixel centre + 0.5) / 64
        lms = np.stack([(b[:2] * 64 + lm16 + 0.5) / 64 for b in boxes]) if len(boxes) else np.zeros((0, 5, 2))
        return boxes, scores, lab, lms

    det = torch_detector()
    det.decode = decode_with_landmarks
    emb = pixel_embedder()
    run = identify(faces_video(3), det, emb, toy_gallery(emb))
    assert labels(run) == [["?", "alice", "bob"]] * 3
    assert all(m.aligned and (m.label is None or m.similarity > 0.999) for f in run.matches for m in f)


def test_identify_through_onnxruntime_matches_torch(tmp_path) -> None:
    front, back = onnx_parts(tmp_path)
    emb = pixel_embedder()
    ref = identify(faces_video(), torch_detector(), emb, toy_gallery(emb), gate=MotionGate())
    got = identify(faces_video(), Detector(front, back, decode_cells, to_chw), emb, toy_gallery(emb),
                   gate=MotionGate())
    assert labels(got) == labels(ref)
    assert got.run_head.tolist() == ref.run_head.tolist()


def test_identify_unknown_below_the_threshold_and_bad_wiring_is_one_line() -> None:
    emb = pixel_embedder()
    strict = identify(faces_video(1), torch_detector(), emb, toy_gallery(emb, threshold=1.01))
    assert labels(strict) == [["?", "?", "?"]]
    wrong_dim = Gallery(np.ones((2, 8)), np.array(["a", "b"]))
    with pytest.raises(FcbenchError) as e:
        identify(faces_video(1), torch_detector(), emb, wrong_dim)
    assert "the embedder gives 768-d embeddings, the gallery holds 8-d ones" in str(e.value)
    with pytest.raises(FcbenchError, match="must be an RGB uint8 HWC image"):
        identify([np.zeros((64, 64, 3), np.float32)], torch_detector(), emb, toy_gallery(emb))
    with pytest.raises(FcbenchError, match="gallery: 2 embeddings but labels of shape"):
        Gallery(np.ones((2, 8)), np.array(["a"]))


def faces_truth(frames: int = 6, with_bob: bool = True) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised ground-truth boxes and identities of :func:`faces_video` (the stranger is 'carol')."""
    boxes, ids = [], []
    for i in range(frames):
        b = [[8 * i, 4, 8 * i + FACE, 20], [8 * i, 44, 8 * i + FACE, 60]] + ([[44, 24, 60, 40]] if with_bob else [])
        boxes.append(np.array(b, float) / 64)
        ids.append(np.array(["alice", "carol"] + (["bob"] if with_bob else [])))
    return boxes, ids


def test_faces_found_become_probes_for_dir_at_fpir() -> None:
    emb = pixel_embedder()
    gallery = toy_gallery(emb)
    run = identify(faces_video(), torch_detector(), emb, gallery)
    probes, who = probe_set(run, *faces_truth())
    assert probes.shape == (18, FACE * FACE * 3) and sorted(set(who)) == ["alice", "bob", "carol"]
    r = ident.dir_at_fpir(ident.similarity_matrix(probes, gallery.embeddings), gallery.labels, who, fpir=0.2)
    assert (r.n_mated, r.n_nonmated, r.dir) == (12, 6, 1.0)
    probes, who = probe_set(run, *faces_truth(with_bob=False))  # Bob's boxes now match no truth: left out
    assert len(who) == 12 and "bob" not in set(who)
    with pytest.raises(FcbenchError, match="6 frames were identified but the ground truth has 5"):
        probe_set(run, *(t[:5] for t in faces_truth()))
