"""Detection readers and the built-in synthetic video, through the public API and the CLI, on tiny files
written in exactly the formats the real tools write (COCO JSON, Pascal VOC XML, CDNet2014 folders, AVI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import fcbench.data as fd
from fcbench.data.detection import DetectionImages, check_boxes, collate
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

PP = Preprocessing(size=(48, 48))
TINY_VIDEO = {"videos": 2, "frames": 12, "height": 48, "width": 64}


def video(**options) -> DetectionImages:
    return fd.open_dataset("synthetic:video", preprocessing=PP, **{**TINY_VIDEO, **options})


# --- synthetic:video ---------------------------------------------------------------------------------

def test_synthetic_video_shape_boxes_and_classes() -> None:
    ds = video()
    assert isinstance(ds, DetectionImages)
    assert len(ds) == 24 and ds.class_names == ["face", "square", "disc"] and ds.num_classes == 3
    assert ds.sequences() == [list(range(12)), list(range(12, 24))]
    seen: set[int] = set()
    for i in range(len(ds)):
        img = ds.rgb(i)
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
        boxes, labels = ds.target(i)
        check_boxes(boxes, labels, 64, 48, 3, f"frame {i}")  # inside the frame, non-empty, labels in range
        ids = ds.identities(i)
        assert len(ids) == len(labels)
        assert all((k >= 0) == (lab == 0) for k, lab in zip(ids.tolist(), labels.tolist(), strict=True))  # faces only
        seen.update(labels.tolist())
    assert seen == {0, 1, 2}
    x, t = ds[3]
    assert x.shape == (3, 48, 48) and t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    assert float(t["boxes"].min()) >= 0.0 and float(t["boxes"].max()) <= 1.0
    xs, ts = next(iter(DataLoader(ds, batch_size=5, collate_fn=collate, num_workers=0)))
    assert xs.shape == (5, 3, 48, 48) and len(ts) == 5


def test_synthetic_video_deterministic_and_split() -> None:
    a, b = video(), video()
    assert all(np.array_equal(a.rgb(i), b.rgb(i)) for i in (0, 7, 19))
    test = video(split="test")
    assert not np.array_equal(a.rgb(0), test.rgb(0))
    assert not np.array_equal(a.rgb(0), video(seed=1).rgb(0))
    assert "test" in test.source and "test" not in a.source


def test_synthetic_video_static_stretches_and_moving() -> None:
    ds = video(noise=0.0, moving_fraction=1.0, objects=3, frames=24, videos=1, static_stretches=2)
    static = [i for i in range(len(ds)) if ds.static(i)]
    assert len(static) >= 4
    # nothing moves inside a stretch: same boxes, same pixels (no sensor noise here), moving() False
    for i in static:
        assert not ds.moving(i)
        assert np.array_equal(ds.target(i)[0], ds.target(i - 1)[0]) and np.array_equal(ds.rgb(i), ds.rgb(i - 1))
    # everything moves at >= 1 pixel a frame outside them
    moving = [i for i in range(1, len(ds)) if not ds.static(i)]
    assert moving and all(ds.moving(i) for i in moving)
    assert ds.moving(0)  # a video's first frame: nothing to compare with
    # sensor noise makes even a static frame differ from the previous one, and only by noise
    noisy = video(noise=0.05, moving_fraction=1.0, objects=3, frames=24, videos=1, static_stretches=2)
    i = static[1]
    diff = noisy.rgb(i).astype(np.float32) - noisy.rgb(i - 1).astype(np.float32)
    assert 0 < float(np.abs(diff).mean()) < 0.1 * 255
    # all still: only the first frame counts as moving
    still = video(moving_fraction=0.0, videos=1)
    assert [still.moving(i) for i in range(len(still))] == [True] + [False] * 11


def test_synthetic_video_faces_are_synthetic_identities() -> None:
    """A face's crop (framed with face_square) is closest to its own identity among synthetic:faces."""
    from PIL import Image

    from fcbench.data.synthetic_video import face_square

    n_ids = 6
    ds = video(difficulty=0.0, noise=0.0, objects=1, moving_fraction=0.0, identities=n_ids, videos=6, frames=1,
               height=96, width=96, min_size=0.5, max_size=0.6)
    side = 40
    faces = fd.open_dataset("synthetic:faces", preprocessing=Preprocessing(size=(side, side)), num_classes=n_ids,
                            samples_per_class=1, difficulty=0.0)
    gallery = np.stack([faces.rgb(k).astype(np.float32).ravel() for k in range(n_ids)])
    gallery -= gallery.mean(1, keepdims=True)
    checked = 0
    for i in range(len(ds)):
        boxes, labels = ds.target(i)
        (ident,) = ds.identities(i).tolist()
        x1, y1, x2, y2 = (int(round(t)) for t in face_square(boxes[0]))
        crop = np.asarray(Image.fromarray(ds.rgb(i)[max(0, y1):y2, max(0, x1):x2]).resize((side, side)))
        probe = crop.astype(np.float32).ravel()
        probe -= probe.mean()
        scores = gallery @ probe / (np.linalg.norm(gallery, axis=1) * np.linalg.norm(probe))
        assert int(np.argmax(scores)) == ident, (i, ident, scores)
        checked += 1
    assert checked == 6


def test_synthetic_video_bad_options(cli, in_tmp) -> None:
    with pytest.raises(FcbenchError, match="frames must be an integer"):
        video(frames=0)
    with pytest.raises(FcbenchError, match="moving_fraction must be in"):
        video(moving_fraction=1.5)
    with pytest.raises(FcbenchError, match="unknown option 'frame'.*did you mean.*frames"):
        video(frame=3)
    r = cli("train", "--model", "r18", "--data", "synthetic:video", "--data-opt", "noise=-1", "--out", "run")
    assert r.code == 2 and "option noise must be in [0, 1]" in r.err and "Traceback" not in r.err
