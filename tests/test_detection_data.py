"""Detection readers and the built-in synthetic video, through the public API and the CLI, on tiny files
written in exactly the formats the real tools write (COCO JSON, Pascal VOC XML, CDNet2014 folders, AVI)."""

from __future__ import annotations

import json
from pathlib import Path

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


# --- writers of the real formats ---------------------------------------------------------------------

def _image(path: Path, w: int, h: int, seed: int) -> np.ndarray:
    from PIL import Image

    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return img


COCO_BOXES = {  # image id -> [(category_id, [x, y, w, h], iscrowd)]
    1: [(3, [2.0, 3.0, 10.0, 8.0], 0), (7, [20.5, 1.0, 11.5, 15.0], 0)],
    2: [(7, [0.0, 0.0, 40.0, 30.0], 1), (3, [5.0, 5.0, 0.0, 4.0], 0)],  # the second: zero width
    3: [],
}


def write_coco(root: Path, images_dir: str = "", boxes: dict | None = None, **extra) -> Path:
    """A COCO instances JSON (as pycocotools and the COCO exporters write it) + 3 PNGs of 40x30."""
    boxes = COCO_BOXES if boxes is None else boxes
    images = []
    for iid in (1, 2, 3):
        name = f"img{iid:03d}.png"
        _image(root / images_dir / name, 40, 30, iid)
        images.append({"id": iid, "file_name": name, "width": 40, "height": 30, "license": 1})
    anns = [{"id": 100 * iid + k, "image_id": iid, "category_id": cid, "bbox": bbox, "area": bbox[2] * bbox[3],
             "iscrowd": crowd, "segmentation": []}
            for iid, objs in boxes.items() for k, (cid, bbox, crowd) in enumerate(objs)]
    doc = {"info": {"description": "test"}, "licenses": [{"id": 1, "name": "x"}], "images": images,
           "annotations": anns, "categories": [{"id": 7, "name": "person", "supercategory": "human"},
                                               {"id": 3, "name": "car", "supercategory": "vehicle"}], **extra}
    path = root / ("annotations/instances_val.json" if images_dir else "instances_val.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


VOC_XML = """<annotation>
\t<folder>VOC2007</folder>
\t<filename>{id}.jpg</filename>
\t<size><width>48</width><height>32</height><depth>3</depth></size>
\t<segmented>0</segmented>
{objects}</annotation>
"""
VOC_OBJECT = """\t<object>
\t\t<name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{difficult}</difficult>
\t\t<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>
\t</object>
"""
VOC_OBJECTS = {"000005": [("dog", (1, 1, 10, 12), 0), ("cat", (20, 5, 48, 32), 1)],
               "000007": [("person", (5, 6, 15, 16), 0)],
               "000009": []}


def write_voc(root: Path, objects: dict | None = None) -> Path:
    """A VOC2007 folder: Annotations/*.xml, JPEGImages/*.jpg (48x32), ImageSets/Main/{train,val}.txt."""
    objects = VOC_OBJECTS if objects is None else objects
    (root / "Annotations").mkdir(parents=True)
    for k, (iid, objs) in enumerate(objects.items()):
        _image(root / "JPEGImages" / f"{iid}.jpg", 48, 32, k)
        body = "".join(VOC_OBJECT.format(name=n, b=b, difficult=d) for n, b, d in objs)
        (root / "Annotations" / f"{iid}.xml").write_text(VOC_XML.format(id=iid, objects=body))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("000005\n000009\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("000007\n")
    (root / "ImageSets" / "Main" / "dog_train.txt").write_text("000005  1\n000009 -1\n")
    return root


def write_cdnet(root: Path, frames: int = 6, roi: tuple[int, int] = (3, 6)) -> Path:
    """A CDNet2014 video folder: input/in%06d.jpg, groundtruth/gt%06d.png (0/50/85/170/255), temporalROI.txt."""
    from PIL import Image

    (root / "groundtruth").mkdir(parents=True)
    for n in range(1, frames + 1):
        _image(root / "input" / f"in{n:06d}.jpg", 40, 30, n)
        mask = np.zeros((30, 40), np.uint8)
        if roi[0] <= n <= roi[1]:
            mask[2:10, 3 + n:9 + n] = 255  # a walker moving right
            mask[10:12, 3 + n:9 + n] = 50  # its shadow: not motion
            mask[20:28, 30:34] = 255  # a second component of 32 pixels
            mask[27, 1] = 255  # one-pixel speck: below min_area
            mask[15:18, 15:18] = 170  # unknown motion: not a box
            mask[:, 38:] = 85  # outside the ROI
        else:
            mask[:] = 85
        Image.fromarray(mask).save(root / "groundtruth" / f"gt{n:06d}.png")
    (root / "temporalROI.txt").write_text(f"{roi[0]} {roi[1]}\n")
    return root


# --- COCO ----------------------------------------------------------------------------------------------

def test_coco_boxes_labels_classes_and_crowd(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    assert fd.detect(path) == "coco"
    ds = fd.open_dataset(path, preprocessing=PP)
    assert ds.class_names == ["car", "person"] and len(ds) == 3  # categories in id order (3 car, 7 person)
    boxes, labels = ds.target(0)
    np.testing.assert_allclose(boxes, [[2, 3, 12, 11], [20.5, 1, 32, 16]])  # [x, y, w, h] -> x1 y1 x2 y2
    assert labels.tolist() == [0, 1] and ds.difficult(0).tolist() == [False, False]
    assert ds.target(1)[1].tolist() == [1] and ds.difficult(1).tolist() == [True]  # iscrowd kept, flagged
    assert ds.empty_boxes == 1  # the zero-width box is left out, and counted
    assert ds.target(2)[0].shape == (0, 4)
    assert ds.rgb(1).shape == (30, 40, 3)
    x, t = ds[0]
    np.testing.assert_allclose(t["boxes"][0].numpy(), [2 / 40, 3 / 30, 12 / 40, 11 / 30], rtol=1e-6)
    fixed = fd.open_dataset(f"coco:{path}", preprocessing=PP, classes="person,car")
    assert fixed.class_names == ["person", "car"] and fixed.target(0)[1].tolist() == [1, 0]


def test_coco_images_option_resolves_the_coco_layout(tmp_path: Path, monkeypatch) -> None:
    path = write_coco(tmp_path, images_dir="val")  # annotations/instances_val.json beside val/
    assert fd.open_dataset(path).files[0] == tmp_path / "val" / "img001.png"
    (tmp_path / "val").rename(tmp_path / "val2017")
    with pytest.raises(FcbenchError, match=r"image 'img001.png' \(id 1\) not found at .*images=DIR"):
        fd.open_dataset(path)
    ds = fd.open_dataset(f"coco:{path}", images=str(tmp_path / "val2017"))
    assert len(ds) == 3 and ds.files[0] == tmp_path / "val2017" / "img001.png"
    monkeypatch.chdir(tmp_path)
    assert len(fd.open_dataset(f"coco:{path}", images="val2017")) == 3


def test_coco_bad_input(tmp_path: Path) -> None:
    outside = write_coco(tmp_path / "a", boxes={1: [(7, [30.0, 20.0, 15.0, 5.0], 0)]})
    with pytest.raises(FcbenchError, match=r"annotations\[0\] \(id 100\) on image 'img001.png'.*box 0 "
                                           r"\[30, 20, 45, 25\] lies outside the 40x30 image"):
        fd.open_dataset(outside)
    unknown = write_coco(tmp_path / "b", boxes={2: [(5, [1.0, 1.0, 2.0, 2.0], 0)]})
    with pytest.raises(FcbenchError, match=r"annotations\[0\] \(id 200\) has category_id 5, which 'categories' "
                                           r"does not list \(known: 3 car, 7 person\)"):
        fd.open_dataset(unknown)
    with pytest.raises(FcbenchError, match="category 'car' .id 3. is not in the classes option"):
        fd.open_dataset(f"coco:{unknown}", classes="person")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [\n  {"id": 1,\n   "file_name": "x.png" "width": 3}\n]}')
    with pytest.raises(FcbenchError, match=r"broken.json:3:\d+: malformed JSON \(Expecting ',' delimiter\)"):
        fd.open_dataset(f"coco:{broken}")
    missing = write_coco(tmp_path / "c")
    (tmp_path / "c" / "img002.png").unlink()
    with pytest.raises(FcbenchError, match=r"image 'img002.png' \(id 2\) not found"):
        fd.open_dataset(missing)


# --- Pascal VOC ----------------------------------------------------------------------------------------

def test_voc_boxes_difficult_splits_and_classes(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "VOC2007")
    assert fd.detect(root) == "voc" and fd.detect(tmp_path) == "voc"  # the VOCdevkit above it too
    ds = fd.open_dataset(root, preprocessing=PP)
    assert ds.class_names == ["cat", "dog", "person"] and len(ds) == 3
    boxes, labels = ds.target(0)
    # 1-based inclusive xmin..xmax -> 0-based right-open: (1, 1, 10, 12) covers pixels 0..9 x 0..11
    np.testing.assert_allclose(boxes, [[0, 0, 10, 12], [19, 4, 48, 32]])
    assert labels.tolist() == [1, 0] and ds.difficult(0).tolist() == [False, True]
    assert ds.rgb(0).shape == (32, 48, 3) and ds.target(2)[0].shape == (0, 4)
    train = fd.open_dataset(f"voc:{root}", split="train", classes="dog,cat,person")
    assert [f.name for f in train.files] == ["000005.jpg", "000009.jpg"] and train.class_names == ["dog", "cat",
                                                                                                    "person"]
    assert train.target(0)[1].tolist() == [0, 1] and "split=train" in train.source
    with pytest.raises(FcbenchError, match=r"split 'trian' has no list .*did you mean 'train'.*splits here: "
                                           r"train, val"):
        fd.open_dataset(f"voc:{root}", split="trian")


def test_voc_bad_input(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "a")
    with pytest.raises(FcbenchError, match=r"000005.xml: object 1 'cat': class 'cat' is not in the classes option "
                                           r"\(dog,person\); add it"):
        fd.open_dataset(f"voc:{root}", classes="dog,person")
    outside = write_voc(tmp_path / "b", {"000001": [("dog", (10, 10, 52, 20), 0)]})
    with pytest.raises(FcbenchError, match=r"000001.xml: object 0 'dog' .VOC bndbox.*box 0 \[9, 9, 52, 20\] lies "
                                           r"outside the 48x32 image"):
        fd.open_dataset(f"voc:{outside}")
    broken = write_voc(tmp_path / "c", {"000001": []})
    (broken / "Annotations" / "000001.xml").write_text("<annotation>\n  <filename>000001.jpg</filename>\n"
                                                       "  <size><width>48</width></siz>\n</annotation>\n")
    with pytest.raises(FcbenchError, match=r"000001.xml:3:\d+: malformed XML \(mismatched tag\)"):
        fd.open_dataset(f"voc:{broken}")
    missing = write_voc(tmp_path / "d", {"000001": []})
    (missing / "JPEGImages" / "000001.jpg").unlink()
    with pytest.raises(FcbenchError, match=r"000001.xml: image '000001.jpg' not found at .*JPEGImages"):
        fd.open_dataset(f"voc:{missing}")


# --- CDNet2014 -----------------------------------------------------------------------------------------

def test_cdnet_boxes_from_motion_components_and_temporal_roi(tmp_path: Path) -> None:
    video_dir = write_cdnet(tmp_path / "dataset" / "baseline" / "pedestrians")
    assert fd.detect(video_dir) == "cdnet"
    ds = fd.open_dataset(f"cdnet:{video_dir}", preprocessing=PP)
    assert len(ds) == 6 and ds.sequences() == [list(range(6))] and ds.class_names == ["object"]
    assert [ds.evaluated(i) for i in range(6)] == [False, False, True, True, True, True]
    assert ds.target(0)[0].shape == (0, 4)  # outside the temporal ROI: not scored, no boxes
    boxes, labels = ds.target(3)  # frame in000004: the walker (48 pixels), the 32-pixel blob; shadow, speck,
    np.testing.assert_allclose(boxes, [[7, 2, 13, 10], [30, 20, 34, 28]])  # unknown and outside-ROI ignored
    assert labels.tolist() == [0, 0]
    assert ds.rgb(3).shape == (30, 40, 3)
    big = fd.open_dataset(f"cdnet:{video_dir}", min_area=40, **{"class": "pedestrian"})
    assert big.class_names == ["pedestrian"] and big.target(3)[0].tolist() == [[7, 2, 13, 10]]
    # a category (or the whole dataset) is one sequence per video folder
    write_cdnet(tmp_path / "dataset" / "baseline" / "highway", frames=4, roi=(2, 4))
    both = fd.open_dataset(f"cdnet:{tmp_path / 'dataset'}")
    assert both.sequences() == [list(range(4)), list(range(4, 10))]  # highway, pedestrians (path order)


def test_cdnet_bad_input(tmp_path: Path) -> None:
    root = write_cdnet(tmp_path / "v")
    (root / "groundtruth" / "gt000004.png").unlink()
    with pytest.raises(FcbenchError, match=r"frame 4 of .* is in the temporal ROI 3..6 but groundtruth/gt000004.png "
                                           "is missing"):
        fd.open_dataset(f"cdnet:{root}")
    (root / "temporalROI.txt").write_text("first last\n")
    with pytest.raises(FcbenchError, match=r"temporalROI.txt: is 'first last', not two frame numbers"):
        fd.open_dataset(f"cdnet:{root}")
    with pytest.raises(FcbenchError, match=r"holds no CDNet video folder"):
        fd.open_dataset(f"cdnet:{tmp_path / 'v' / 'input'}")


# --- video files ---------------------------------------------------------------------------------------

def test_video_file_frames_and_boxes_sidecar(tmp_path: Path) -> None:
    src = video(videos=1, frames=8, noise=0.0, static_stretches=0, moving_fraction=1.0)  # every frame differs
    originals = [src.rgb(i).astype(np.float32) for i in range(8)]
    path = fd.write_video(tmp_path / "probe.avi", src)
    assert fd.detect(path) == "video"
    ds = fd.open_dataset(f"video:{path}", preprocessing=PP, classes="face,square,disc")
    assert len(ds) == 8 and ds.sequences() == [list(range(8))] and ds.class_names == src.class_names
    for i in (0, 1, 5, 2, 7):  # in order, then out of order (a seek)
        img = ds.rgb(i)
        assert img.shape == (48, 64, 3)
        errors = [float(np.abs(img.astype(np.float32) - o).mean()) for o in originals]
        assert int(np.argmin(errors)) == i and errors[i] < 10.0  # MJPG is lossy, but this is frame i
        np.testing.assert_allclose(ds.target(i)[0], src.target(i)[0])
        assert ds.target(i)[1].tolist() == src.target(i)[1].tolist()
        assert ds.identities(i).tolist() == src.identities(i).tolist()
    x, _ = ds[4]
    assert x.shape == (3, 48, 48)
    bare = tmp_path / "bare.avi"
    fd.write_video(bare, src, boxes=False)
    plain = fd.open_dataset(bare)
    assert len(plain) == 8 and plain.target(3)[0].shape == (0, 4)
    # DataLoader workers reopen the file (the decoder itself is not pickled)
    xs, _ = next(iter(DataLoader(plain, batch_size=8, collate_fn=collate, num_workers=1)))
    assert xs.shape == (8, 3, 112, 112)


def test_video_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(range(256)) * 8)
    with pytest.raises(FcbenchError, match=r"junk.avi: .*(cannot be decoded|decodes no frame).*re-encode"):
        fd.open_dataset(junk)
    src = video(videos=1, frames=4)
    path = fd.write_video(tmp_path / "v.avi", src)
    with pytest.raises(FcbenchError, match=r"v.avi.boxes.csv:\d+: class 'face' is not in the classes option"):
        fd.open_dataset(path, classes="square,disc")
    sidecar = Path(str(path) + ".boxes.csv")
    sidecar.write_text("frame,x1,y1,x2,y2,label\n0,10,10,70,20,face\n")
    with pytest.raises(FcbenchError, match=r"v.avi.boxes.csv:2: box 0 \[10, 10, 70, 20\] lies outside the 64x48"):
        fd.open_dataset(path)


# --- through the CLI: one line, exit 2 -----------------------------------------------------------------

def _train(cli, data: str, *opts: str):
    return cli("train", "--model", "r18", "-o", "width=0.125", "-o", "input_size=32", "--data", data,
               *(a for o in opts for a in ("--data-opt", o)), "--out", "run")


def test_bad_detection_data_through_the_cli(cli, in_tmp: Path) -> None:
    cases = []
    coco = write_coco(in_tmp / "coco", boxes={1: [(7, [30.0, 20.0, 15.0, 5.0], 0)]})
    cases.append(((f"coco:{coco}",), "lies outside the 40x30 image"))
    voc = write_voc(in_tmp / "VOC2007")
    cases.append(((f"voc:{voc}", "classes=dog,person"), "class 'cat' is not in the classes option"))
    junk = in_tmp / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 300)
    cases.append(((str(junk),), "junk.mp4: "))
    broken = in_tmp / "bad.json"
    broken.write_text('{"images": [}')
    cases.append(((f"coco:{broken}",), "bad.json:1:13: malformed JSON"))
    cases.append(((f"cdnet:{in_tmp / 'nothing'}",), "nothing does not exist"))
    for (data, *opts), expected in cases:
        r = _train(cli, data, *opts)
        assert r.code == 2, (data, r.code, r.err)
        lines = [line for line in r.err.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in r.err, (data, r.err)
