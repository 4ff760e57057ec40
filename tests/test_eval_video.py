"""``fcbench eval DET --video``: motion gating measured end to end (mAP with and without the gate, frames
skipped, ms per frame by stage), on a checkpoint and through a split pair of runtime artifacts; the
synthetic video's moving-object ground truth and the come-and-go scenes gating skips."""

from __future__ import annotations

import numpy as np
import pytest

from fcbench.data import open_dataset
from fcbench.data.preprocess import Preprocessing

PRE = Preprocessing(size=(64, 64))
SMALL = {"videos": 1, "frames": 24, "height": 64, "width": 64}


def video(**options):
    return open_dataset("synthetic:video", preprocessing=PRE, **{**SMALL, **options})


# --- the data: moving-object truth and scenes where nothing is in motion ------------------------------------


def test_truth_moving_marks_only_the_objects_that_moved() -> None:
    every, moving = video(), video(truth="moving")
    assert "truth=moving" in moving.source and "truth" not in every.source
    video_plan = moving._video(0)
    for i in moving.sequences()[0]:
        all_boxes, moved_boxes = every.target(i)[0], moving.target(i)[0]
        assert {tuple(b) for b in moved_boxes.tolist()} <= {tuple(b) for b in all_boxes.tolist()}
        if moving.static(i):  # nothing moves: nothing is marked
            assert len(moved_boxes) == 0
    # the still objects are in every frame of truth=all and in no frame of truth=moving
    still = [k for k, o in enumerate(video_plan.objects) if not o.moving]
    assert still and not video_plan.moved[:, still].any()
    assert sum(len(moving.target(i)[0]) for i in range(len(moving))) < sum(
        len(every.target(i)[0]) for i in range(len(every)))
    assert any(len(moving.target(i)[0]) for i in range(len(moving)))


def test_visits_open_on_an_empty_scene_and_empty_it_in_every_static_stretch() -> None:
    ds = video(visits=True, truth="moving")
    plan = ds._video(0)
    static = np.array([ds.static(i) for i in range(len(ds))])
    assert static[0] and static.sum() >= 8 and not static.all()
    movers = [k for k, o in enumerate(plan.objects) if o.moving]
    assert movers and not plan.visible[static][:, movers].any() and plan.visible[~static][:, movers].all()
    # an empty stretch shows the same scene on every frame (sensor noise apart): what a gate learns and skips
    lead = [i for i in range(len(ds)) if static[i] and i < np.argmin(static)]
    later = [i for i in range(len(ds)) if static[i] and i > np.argmin(static)]
    noise_free = video(visits=True, noise=0.0)
    assert all(np.array_equal(noise_free.rgb(lead[0]), noise_free.rgb(i)) for i in lead + later)
    assert not np.array_equal(noise_free.rgb(lead[0]), noise_free.rgb(int(np.argmin(static))))
    # coming into view and leaving it are motion
    first_in = int(np.argmin(static))
    assert ds.moving(first_in) and len(ds.target(first_in)[0]) > 0
    left = [i for i in range(1, len(ds)) if static[i] and not static[i - 1]]
    assert left and all(ds.moving(i) for i in left)


def test_the_new_options_are_deterministic_and_checked() -> None:
    a, b = video(visits=True, truth="moving", seed=3), video(visits=True, truth="moving", seed=3)
    for i in (0, 7, 15):
        assert np.array_equal(a.rgb(i), b.rgb(i))
        assert np.array_equal(a.target(i)[0], b.target(i)[0])
    from fcbench.errors import FcbenchError

    with pytest.raises(FcbenchError, match="truth='moved' is not one of all, moving"):
        video(truth="moved")
    with pytest.raises(FcbenchError, match="visits"):
        video(visits="often")
