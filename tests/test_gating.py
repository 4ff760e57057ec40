"""Motion gating (fcbench.detection.gating) and the gated video runner (fcbench.detection.pipeline.run_video)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from detection_toys import STILL_BOX, decode_cells, onnx_parts, to_input, toy_detector, toy_video, tp_fp

from fcbench.detection.gating import DEFAULT_ALPHA, DEFAULT_LAM, DEFAULT_LAYER, MotionGate, box_cells, cosine_diff
from fcbench.detection.pipeline import VIDEO_STAGES, numpy_callable, run_video
from fcbench.errors import FcbenchError


def fmap(vectors: dict[tuple[int, int], list[float]], base: list[float], hw: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A [C, H, W] map holding ``base`` in every cell except those given."""
    f = np.tile(np.asarray(base, np.float64)[:, None, None], (1, *hw))
    for (y, x), v in vectors.items():
        f[:, y, x] = v
    return f


# ----------------------------------------------------------------------------------------- the method


def test_defaults_are_the_dissertations() -> None:
    g = MotionGate()
    assert (g.layer, g.lam, g.alpha) == (DEFAULT_LAYER, DEFAULT_LAM, DEFAULT_ALPHA) == (11, 0.4, 0.9)


def test_cosine_diff_values() -> None:
    bg = fmap({(0, 1): [0.0, 0.0], (0, 2): [0.0, 0.0], (0, 3): [1.0, 0.0]}, [1.0, 0.0])
    cur = fmap({(0, 0): [1.0, 1.0], (0, 1): [0.0, 0.0], (0, 2): [3.0, 0.0], (0, 3): [-2.0, 0.0],
                (1, 0): [5.0, 0.0], (1, 1): [0.0, 1.0]}, [1.0, 0.0])
    d = cosine_diff(bg, cur)
    assert d.shape == (4, 4)
    assert d[0, 0] == pytest.approx(1 - 1 / np.sqrt(2))  # 45 degrees
    assert d[0, 1] == 0.0  # both zero: nothing there, nothing changed
    assert d[0, 2] == 1.0  # one zero: cos taken as 0
    assert d[0, 3] == pytest.approx(2.0)  # opposite
    assert d[1, 0] == pytest.approx(0.0)  # brighter, same direction: not motion
    assert d[1, 1] == pytest.approx(1.0)  # orthogonal
    assert d[2:].max() == pytest.approx(0.0)


def test_first_frame_initialises_and_runs_the_head() -> None:
    g = MotionGate(lam=0.4, alpha=0.5)
    f0 = fmap({}, [1.0, 0.0])
    d = g.step(f0)
    assert d.run_head and d.first and d.diff_map is None and d.max_diff == 0.0
    assert g.keep(np.array([[0, 0, 1, 1], [0.2, 0.2, 0.3, 0.3]]), d.diff_map).tolist() == [True, True]
    np.testing.assert_array_equal(g.background, f0)


def test_static_frames_skip_and_update_the_background() -> None:
    g = MotionGate(lam=0.4, alpha=0.5)
    g.step(fmap({}, [1.0, 0.0]))
    small = fmap({(2, 2): [1.0, 0.5]}, [1.0, 0.0])  # 1 - cos = 0.106 < 0.4
    d = g.step(small)
    assert not d.run_head and not d.first
    assert d.max_diff == pytest.approx(1 - 1 / np.sqrt(1.25))
    expected = 0.5 * fmap({}, [1.0, 0.0]) + 0.5 * small
    np.testing.assert_allclose(g.background, expected)
    assert (g.frames, g.skipped) == (2, 1)


def test_moving_frame_runs_the_head_leaves_the_background_and_filters_boxes() -> None:
    g = MotionGate(lam=0.4, alpha=0.5)
    bg = fmap({}, [1.0, 0.0])
    g.step(bg)
    moved = fmap({(0, 0): [0.0, 1.0], (0, 1): [0.0, 1.0], (1, 0): [0.0, 1.0], (1, 1): [0.0, 1.0]}, [1.0, 0.0])
    d = g.step(moved)
    assert d.run_head and d.max_diff == pytest.approx(1.0)
    np.testing.assert_array_equal(g.background, bg)  # not updated on a frame that runs the head
    boxes = np.array([[0.0, 0.0, 0.5, 0.5],  # exactly the 2 x 2 moved cells: mean 1.0
                      [0.5, 0.5, 1.0, 1.0],  # nothing moved there: mean 0
                      [0.0, 0.0, 1.0, 1.0],  # 4 moved of 16 cells: mean 0.25 < 0.4
                      [0.0, 0.0, 0.75, 0.5],  # 4 of 6: 0.667
                      [0.01, 0.01, 0.02, 0.02]])  # smaller than a cell: the cell under its centre, moved
    np.testing.assert_allclose(g.box_diff(boxes, d.diff_map), [1.0, 0.0, 0.25, 4 / 6, 1.0])
    assert g.keep(boxes, d.diff_map).tolist() == [True, False, False, True, True]


def test_box_cells_maps_normalised_boxes_onto_the_grid() -> None:
    assert box_cells(np.array([0.0, 0.0, 0.5, 0.5]), (4, 4)) == (slice(0, 2), slice(0, 2))
    assert box_cells(np.array([0.0, 0.0, 1.0, 1.0]), (3, 5)) == (slice(0, 3), slice(0, 5))
    assert box_cells(np.array([0.3, 0.6, 0.32, 0.62]), (4, 4)) == (slice(2, 3), slice(1, 2))  # centre (0.31, 0.61)
    assert box_cells(np.array([0.2, 0.2, 0.4, 0.4]), (4, 4)) == (slice(1, 2), slice(1, 2))  # holds centre 0.375 only


def test_box_diff_is_the_mean_over_each_boxs_cells() -> None:
    rng = np.random.default_rng(2)
    d = rng.uniform(0, 2, size=(7, 9))
    xy = rng.uniform(-0.2, 1.2, size=(200, 2, 2))
    boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
    boxes[:20, 2:] = boxes[:20, :2] + 1e-3  # smaller than a cell
    expected = [d[box_cells(b, d.shape)].mean() for b in boxes]
    np.testing.assert_allclose(MotionGate().box_diff(boxes, d), expected, rtol=1e-12)


def test_skipping_equals_running_the_head_then_filtering() -> None:
    """On a static frame every box the head could give is dropped by the filter, so a skipped frame's empty
    output is exactly what running the head would give."""
    rng = np.random.default_rng(0)
    g = MotionGate(lam=0.3)
    bg = rng.normal(size=(8, 6, 6))
    g.step(bg)
    checked = 0
    for _ in range(20):
        d = g.step(bg + 0.1 * rng.normal(size=bg.shape))
        if not d.run_head:
            xy = rng.uniform(0, 1, size=(50, 2, 2))
            boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
            assert not g.keep(boxes, d.diff_map).any()
            checked += 1
    assert checked >= 10


def test_decisions_are_deterministic_and_reset_starts_a_new_video() -> None:
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(4, 5, 5)) * (1 if i % 3 else 0.05) + 1 for i in range(12)]

    def decisions(gate: MotionGate) -> list[tuple[bool, float]]:
        return [(d.run_head, d.max_diff) for d in map(gate.step, feats)]

    g = MotionGate(lam=0.2)
    first = decisions(g)
    g.reset()
    assert decisions(g) == first == decisions(MotionGate(lam=0.2))
    assert {r for r, _ in first} == {True, False}


def test_a_batch_of_one_is_accepted() -> None:
    g = MotionGate()
    g.step(np.ones((1, 3, 2, 2), np.float32))
    assert not g.step(np.ones((3, 2, 2), np.float32)).run_head


@pytest.mark.parametrize("kwargs, words", [
    (dict(lam=0), "lam must be in (0, 2]"),
    (dict(lam=2.5), "lam must be in (0, 2]"),
    (dict(lam="x"), "lam must be a number"),
    (dict(alpha=1.0), "alpha must be in [0, 1)"),
    (dict(alpha=float("nan")), "alpha must be a finite number"),
    (dict(alpha_moving=1.5), "alpha_moving must be in [0, 1]"),
    (dict(layer=-1), "layer must be a non-negative integer"),
    (dict(layer=1.5), "layer must be a non-negative integer"),
])
def test_bad_options_are_one_line(kwargs: dict, words: str) -> None:
    with pytest.raises(FcbenchError) as e:
        MotionGate(**kwargs)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_bad_feature_maps_are_one_line() -> None:
    g = MotionGate()
    with pytest.raises(FcbenchError, match=r"must be \[C, H, W\]"):
        g.step(np.ones((4, 4)))
    g.step(np.ones((3, 4, 4)))
    with pytest.raises(FcbenchError, match="frames of one video need one size"):
        g.step(np.ones((3, 5, 5)))
    with pytest.raises(FcbenchError, match="NaN or inf"):
        g.step(np.full((3, 4, 4), np.nan))
    with pytest.raises(FcbenchError, match="a box has a NaN"):
        g.keep(np.array([[0, 0, np.nan, 1]]), np.zeros((4, 4)))


# ---------------------------------------------------------------------------- the gated video runner


@pytest.fixture(scope="module")
def video():
    front, back = toy_detector()
    frames, truth, stretch = toy_video()
    return numpy_callable(front), numpy_callable(back), [to_input(f) for f in frames], truth, stretch


def counts(run, truth, stretch, which: str) -> tuple[int, int]:
    tp = fp = 0
    for dets, gt, s in zip(run.detections, truth, stretch, strict=True):
        if s == which:
            a, b = tp_fp(dets.boxes, gt)
            tp, fp = tp + a, fp + b
    return tp, fp


def test_without_a_gate_every_frame_runs_the_head(video) -> None:
    front, back, frames, truth, stretch = video
    run = run_video(front, back, decode_cells, frames)
    assert run.run_head.all() and run.skipped == 0 and not run.gated
    assert np.isnan(run.max_diff).all()
    still = np.array(STILL_BOX) / 64
    assert all(np.allclose(d.boxes[0], still) for d in run.detections)  # the still object, every frame
    assert counts(run, truth, stretch, "moving") == (8, 8)  # the mover found; the still object is a false positive
    assert counts(run, truth, stretch, "static") == (0, 16)


def test_gating_skips_static_frames_and_keeps_what_moved(video) -> None:
    front, back, frames, truth, stretch = video
    plain = run_video(front, back, decode_cells, frames)
    gate = MotionGate(lam=0.4, alpha=0.9)
    run = run_video(front, back, decode_cells, frames, gate=gate)
    assert run.gated and run.frames == 24
    assert run.run_head.tolist() == [True] + [False] * 5 + [True] * 8 + [False] * 10
    assert run.skipped == gate.skipped == 15 and run.skipped_fraction == pytest.approx(15 / 24)
    assert all(len(run.detections[i]) == 0 for i in np.nonzero(~run.run_head)[0])
    assert np.allclose(run.detections[0].boxes, plain.detections[0].boxes)  # first frame: all kept
    for i in range(6, 14):  # moving stretch: the mover kept, the still object's box dropped
        assert len(run.detections[i]) == 1 and tp_fp(run.detections[i].boxes, truth[i]) == (1, 0)
    # true positives unchanged, false positives fewer: on the static stretches and overall
    assert counts(run, truth, stretch, "moving") == (8, 0)
    assert counts(run, truth, stretch, "static") == (0, 1)  # frame 0 only
    assert run.max_diff[1:6].max() < 0.05 and run.max_diff[6:14].min() > 0.9


def test_stage_times_follow_the_decisions() -> None:
    """A clock that ticks once per call: each stage that runs costs one tick per clock read, a skipped
    stage none."""
    front, back = toy_detector()
    frames, _, _ = toy_video()
    ticks = itertools.count()
    run = run_video(numpy_callable(front), numpy_callable(back), decode_cells, [to_input(f) for f in frames],
                    gate=MotionGate(), clock=lambda: float(next(ticks)))
    t = run.times
    assert set(t) == set(VIDEO_STAGES)
    ran = run.run_head
    assert (t["front"] == 1).all()
    assert (t["back"][ran] == 1).all() and (t["decode"][ran] == 1).all()
    assert (t["back"][~ran] == 0).all() and (t["decode"][~ran] == 0).all()
    assert (t["gate"][ran] == 2).all() and (t["gate"][~ran] == 1).all()  # decision, plus the box filter
    s = run.summary()
    assert s["frames"] == 24 and s["skipped"] == run.skipped
    assert s["ms_per_frame"] == pytest.approx(1e3 * run.frame_times().mean())
    assert s["ms_per_frame"] == pytest.approx(sum(s[f"ms_{k}"] for k in VIDEO_STAGES))


def test_gated_runner_through_onnxruntime_matches_torch(video, tmp_path) -> None:
    """The same split detector exported to two ONNX files and run by ONNX Runtime: the same decisions and boxes."""
    onnx_front, onnx_back = onnx_parts(tmp_path)
    front, back, frames, _, _ = video
    ref = run_video(front, back, decode_cells, frames, gate=MotionGate())
    got = run_video(onnx_front, onnx_back, decode_cells, frames, gate=MotionGate())
    assert got.run_head.tolist() == ref.run_head.tolist()
    np.testing.assert_allclose(got.max_diff, ref.max_diff, atol=1e-5)
    for a, b in zip(got.detections, ref.detections, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes)


def test_runner_bad_callables_and_decode_output_are_one_line(video) -> None:
    front, back, frames, _, _ = video
    with pytest.raises(FcbenchError, match="back must be callable"):
        run_video(front, None, decode_cells, frames)
    with pytest.raises(FcbenchError, match=r"decode must return \(boxes, scores, labels\)"):
        run_video(front, back, lambda raw: raw, frames[:1])
    with pytest.raises(FcbenchError, match=r"need \[N, 4\] normalised"):
        run_video(front, back, lambda raw: (np.zeros((2, 3)), np.zeros(2), np.zeros(2)), frames[:1])
    with pytest.raises(FcbenchError, match="NaN or inf boxes"):
        run_video(front, back, lambda raw: (np.full((1, 4), np.nan), np.ones(1), np.zeros(1)), frames[:1])
    with pytest.raises(FcbenchError, match="gate must be a MotionGate"):
        run_video(front, back, decode_cells, frames, gate="yes")


def test_an_object_that_stops_keeps_the_head_running() -> None:
    """The background learns only on static frames, so an object that arrives and stops differs from it on
    every later frame: the head keeps running and the object keeps its box (the method as the dissertation
    gives it; ``alpha`` never gets a chance to absorb it)."""
    g = MotionGate(lam=0.4, alpha=0.5)
    empty = fmap({}, [1.0, 0.0])
    here = fmap({(1, 1): [0.0, 1.0]}, [1.0, 0.0])
    g.step(empty)
    decisions = [g.step(here) for _ in range(10)]
    assert all(d.run_head for d in decisions)
    assert all(g.keep(np.array([[0.25, 0.25, 0.5, 0.5]]), d.diff_map)[0] for d in decisions)
    np.testing.assert_array_equal(g.background, empty)


# ------------------------------------------------------------------- the built-in synthetic video


def random_split_net() -> tuple:
    """A small conv net with fixed random weights, split by hand at its stride-8 map (signed features: the
    front ends on a convolution, as MobileNetV2's linear bottlenecks do), as numpy callables."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    front = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                          nn.Conv2d(32, 64, 3, 2, 1))
    back = nn.Sequential(nn.ReLU(), nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.Conv2d(64, 1, 1))
    return numpy_callable(front), numpy_callable(back)


def synthetic_video(**options):
    from fcbench.data import open_dataset
    from fcbench.data.preprocess import Preprocessing

    ds = open_dataset("synthetic:video", preprocessing=Preprocessing(size=(96, 96)), **options)
    return ds, [[ds[i][0].numpy()[None] for i in seq] for seq in ds.sequences()]


def test_synthetic_video_a_still_scene_with_sensor_noise_is_skipped() -> None:
    ds, videos = synthetic_video(videos=1, frames=16, moving_fraction=0.0)
    assert not any(ds.moving(i) for i in ds.sequences()[0][1:])
    front, back = random_split_net()
    plain = run_video(front, back, decode_cells, videos[0])
    gated = run_video(front, back, decode_cells, videos[0], gate=MotionGate(lam=0.1))
    assert plain.skipped == 0
    assert gated.run_head.tolist() == [True] + [False] * 15  # noise alone never wakes the head
    assert gated.max_diff[1:].max() < 0.1
    assert gated.times["back"][1:].sum() == 0 and gated.times["decode"][1:].sum() == 0
    assert gated.times["back"].sum() < 0.5 * plain.times["back"].sum()


def test_synthetic_video_frames_with_motion_run_the_head_and_static_stretches_skip() -> None:
    """Motion is never skipped two frames running (an object moving a pixel a frame can stay under lambda for
    one frame; the background follows it only partly, so the next frame catches it). With the dissertation's
    rule (alpha_moving = 1) the objects that paused in a static stretch away from where the background saw
    them keep the head running; letting the background follow (alpha_moving = 0.8) skips most of it."""
    ds, videos = synthetic_video(videos=2, frames=48, static_stretches=1)
    front, back = random_split_net()
    for seq, frames in zip(ds.sequences(), videos, strict=True):
        moving = np.array([ds.moving(i) for i in seq])
        static = np.array([ds.static(i) for i in seq])
        assert static.sum() >= 8 and moving[~static].all()
        literal = run_video(front, back, decode_cells, frames, gate=MotionGate(lam=0.1))
        follow = run_video(front, back, decode_cells, frames, gate=MotionGate(lam=0.1, alpha_moving=0.8))
        for run in (literal, follow):
            missed = moving & ~run.run_head
            assert not (missed[1:] & missed[:-1]).any() and missed.sum() <= 0.1 * moving.sum()
        assert literal.run_head[static].all()
        assert (~follow.run_head[static]).sum() >= static.sum() // 2
