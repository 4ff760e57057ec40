"""Dataset readers through the public API, on small files written in the real formats."""

from __future__ import annotations

import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import formats  # noqa: E402

from fcbench.data import detect, gallery_probe_split, open_dataset  # noqa: E402
from fcbench.data.preprocess import Preprocessing  # noqa: E402
from fcbench.errors import FcbenchError  # noqa: E402

SIZE = (24, 20)
PP = Preprocessing(size=SIZE)


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [formats.smooth_image(rng, SIZE) for _ in range(n)]


def back_to_rgb(t: torch.Tensor) -> np.ndarray:
    """Undo the face preprocessing (mean 0.5, std 0.5, CHW) -> HWC in 0..255."""
    return (t.numpy().transpose(1, 2, 0) * 0.5 + 0.5) * 255.0


def close(a: np.ndarray, b: np.ndarray, tol: float = 6.0) -> bool:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) < tol


# --- insightface RecordIO ---------------------------------------------------------------------

@pytest.fixture
def rec_dir(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[int]]:
    imgs, labels = images(9), [0, 0, 0, 1, 1, 2, 2, 2, 2]
    formats.write_insightface_rec(tmp_path / "ms1m", imgs, labels)
    return tmp_path / "ms1m", imgs, labels


def test_rec_roundtrip_with_header(rec_dir) -> None:
    folder, imgs, labels = rec_dir
    for spec in (str(folder), f"insightface-rec:{folder}", str(folder / "train.rec")):
        ds = open_dataset(spec, preprocessing=PP)
        assert len(ds) == 9 and ds.num_classes == 3
        assert ds.labels().tolist() == labels
        for i in (0, 4, 8):
            x, y = ds[i]
            assert x.dtype == torch.float32 and tuple(x.shape) == (3, *SIZE) and y == labels[i]
            assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
            assert close(back_to_rgb(x), imgs[i])
    assert ds.header == (10, 13)


def test_rec_without_header_and_label_arrays(tmp_path: Path) -> None:
    imgs, labels = images(5), [4, 1, 1, 0, 4]
    formats.write_insightface_rec(tmp_path, imgs, labels, header=False, label_array=True)
    ds = open_dataset(tmp_path / "train.rec", preprocessing=PP)
    assert len(ds) == 5 and ds.num_classes == 5 and ds.header is None
    assert [ds[i][1] for i in range(5)] == labels
    assert close(back_to_rgb(ds[2][0]), imgs[2])


def test_rec_multipart_record(tmp_path: Path) -> None:
    """A payload holding the magic word at a 4-byte boundary is split into parts; read joins them."""
    magic = struct.pack("<I", formats.MAGIC)
    img = images(1)[0]
    for pad in range(4):  # place the magic in a JPEG comment at an aligned payload offset
        jpeg = formats.encode(img, comment=b"x" * pad + magic + b"tail" + magic)
        payload = formats.ir_pack(3.0, jpeg)
        at = payload.find(magic)
        if at % 4 == 0:
            break
    assert at % 4 == 0, "no padding put the magic word at a 4-aligned offset"
    frame = formats.rec_frame(payload)
    assert struct.unpack("<I", frame[4:8])[0] >> 29 == 1  # really multi-part: the first part's cflag is 1
    formats.write_rec(tmp_path / "train.rec", tmp_path / "train.idx", [(0, formats.ir_pack(7.0, formats.encode(img))),
                                                                         (1, payload)])
    ds = open_dataset(tmp_path, preprocessing=PP)
    assert ds.records.read(1) == payload
    x, y = ds[1]
    assert y == 3 and close(back_to_rgb(x), img)


@pytest.mark.parametrize("cut", [4, 40])
def test_rec_truncated_detected_at_open(rec_dir, cut: int) -> None:
    folder, _, _ = rec_dir
    rec = folder / "train.rec"
    data = rec.read_bytes()
    rec.write_bytes(data[: len(data) - cut])  # into the last record / before it
    with pytest.raises(FcbenchError, match=r"train\.rec.*past the end.*truncated"):
        open_dataset(folder, preprocessing=PP)
    rec.write_bytes(data[:200])  # idx offsets now point past the end
    with pytest.raises(FcbenchError, match=r"train\.rec.*offset .* past the end"):
        open_dataset(folder, preprocessing=PP)


def test_rec_corrupt_record_and_jpeg_at_read(rec_dir) -> None:
    folder, _, _ = rec_dir
    rec = folder / "train.rec"
    offsets = dict(line.split("\t") for line in (folder / "train.idx").read_text().split("\n") if line)
    data = bytearray(rec.read_bytes())
    off3 = int(offsets["3"])
    data[off3:off3 + 4] = b"\0\0\0\0"  # wrong magic on record 3
    off5 = int(offsets["5"])
    data[off5 + 8 + 24 + 200:off5 + 8 + 24 + 260] = b"\x00" * 60  # garble record 5's JPEG data
    data[off5 + 8 + 24:off5 + 8 + 24 + 4] = b"GIF!"  # and its signature
    rec.write_bytes(bytes(data))
    ds = open_dataset(folder, preprocessing=PP)
    with pytest.raises(FcbenchError, match=r"train\.rec: record 3 .*magic"):
        ds[2]
    with pytest.raises(FcbenchError, match=r"train\.rec: record 5.*cannot be decoded"):
        ds[4]
    assert ds[0][1] == 0  # the others still read


def test_rec_missing_idx(rec_dir) -> None:
    folder, _, _ = rec_dir
    (folder / "train.idx").unlink()
    with pytest.raises(FcbenchError, match=r"train\.idx is missing"):
        open_dataset(f"insightface-rec:{folder / 'train.rec'}", preprocessing=PP)


def test_rec_dataloader_workers_reopen_handle(rec_dir) -> None:
    folder, _, labels = rec_dir
    ds = open_dataset(folder, preprocessing=PP)
    ds[0]  # the parent now holds an open handle; workers must open their own
    seen = []
    for x, y in DataLoader(ds, batch_size=2, num_workers=2, shuffle=False):
        assert x.shape[1:] == (3, *SIZE)
        seen += y.tolist()
    assert seen == labels
    assert pickle.loads(pickle.dumps(ds))[3][1] == labels[3]  # spawn-style workers pickle it


# --- insightface verification .bin ------------------------------------------------------------

def test_bin_roundtrip_flip_and_detection(tmp_path: Path) -> None:
    imgs, issame = images(6), [True, False, True]
    path = formats.write_verification_bin(tmp_path / "lfw.bin", imgs, issame)
    assert detect(path) == "verification-bin"
    ds = open_dataset(path, preprocessing=PP)
    assert ds.name == "lfw" and len(ds) == 6 and ds.issame.tolist() == issame and ds.issame.dtype == bool
    assert close(back_to_rgb(ds[3]), imgs[3])
    flipped = open_dataset(f"verification-bin:{path}", preprocessing=PP, flip=True, name="LFW")
    assert flipped.name == "LFW"
    assert torch.equal(flipped[3], torch.flip(ds[3], dims=[2]))
    assert torch.equal(ds.flipped(3), flipped[3])
    batches = list(DataLoader(ds, batch_size=4))
    assert [tuple(b.shape) for b in batches] == [(4, 3, *SIZE), (2, 3, *SIZE)]


def test_write_verification_bin_writes_what_the_reader_reads(tmp_path: Path) -> None:
    """The public writer (docs/user-guide.md makes a small lfw.bin with it) round-trips synthetic pairs."""
    import fcbench.data

    pairs = open_dataset("synthetic:pairs", preprocessing=PP, num_pairs=6)
    path = fcbench.data.write_verification_bin(tmp_path / "lfw.bin", pairs)
    assert detect(path) == "verification-bin"
    ds = open_dataset(path, preprocessing=PP)
    assert len(ds) == 12 and ds.issame.tolist() == pairs.issame.tolist()
    assert all(close(ds.rgb(i), pairs.rgb(i), tol=10.0) for i in range(len(ds)))  # JPEG q95 of noisy images
    raw = pickle.loads(path.read_bytes())  # insightface's layout: (JPEG bytes, list of bools)
    assert isinstance(raw[0][0], bytes) and raw[0][0][:2] == b"\xff\xd8" and raw[1] == pairs.issame.tolist()


@pytest.mark.parametrize("content, why", [
    (b"this is not a pickle at all", "cannot unpickle"),
    (pickle.dumps({"bins": []}), "not a pair"),
    (pickle.dumps(([b"a", b"b", b"c"], [True])), "odd number"),
    (pickle.dumps(([b"a", b"b", b"c", b"d"], [True])), "4 images but 1 issame"),
    (pickle.dumps(([1, 2], [True])), "not a list of encoded images"),
])
def test_bin_not_a_verification_set(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(FcbenchError, match=rf"bad\.bin: not an insightface verification set.*{why}"):
        open_dataset(path, preprocessing=PP)


def test_bin_refuses_code_and_names_corrupt_image(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([Evil(), b"x"], [True])))
    with pytest.raises(FcbenchError, match="evil.bin.*refusing"):
        open_dataset(path, preprocessing=PP)
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(pickle.dumps(([b"\xff\xd8garbage", formats.encode(images(1)[0])], [False])))
    ds = open_dataset(path, preprocessing=PP)
    assert ds[1].shape == (3, *SIZE)
    with pytest.raises(FcbenchError, match=r"cfp_fp\.bin: image 0 \(pair 0\).*cannot be decoded"):
        ds[0]


# --- CIFAR-10 ---------------------------------------------------------------------------------

def test_cifar_splits_exact_pixels_and_detection(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    written = formats.write_cifar10(root, per_batch=4)
    assert detect(root) == "cifar10" and detect(tmp_path) == "cifar10"
    pp = Preprocessing(size=(32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    train = open_dataset(f"cifar10:{root}", preprocessing=pp)
    test = open_dataset(tmp_path, preprocessing=pp, split="test")
    assert len(train) == 20 and len(test) == 4
    assert train.num_classes == 10 and train.class_names == formats.CIFAR_NAMES
    imgs, labels = written["data_batch_2"]
    x, y = train[5]  # batch 2, image 1
    assert y == labels[1]
    expect = (imgs[1] / 255.0 - np.asarray(pp.mean)) / np.asarray(pp.std)
    assert np.allclose(x.numpy(), expect.transpose(2, 0, 1), atol=1e-5)
    assert test.labels().tolist() == written["test_batch"][1]


def test_cifar_missing_batch_and_bad_split(tmp_path: Path) -> None:
    formats.write_cifar10(tmp_path, per_batch=2, batches=["data_batch_1", "data_batch_2", "test_batch"])
    with pytest.raises(FcbenchError, match=f"{tmp_path}.*missing data_batch_3, data_batch_4, data_batch_5"):
        open_dataset(tmp_path, preprocessing=PP)
    assert len(open_dataset(tmp_path, preprocessing=PP, split="test")) == 2
    with pytest.raises(FcbenchError, match="split='val'.*train, test"):
        open_dataset(tmp_path, preprocessing=PP, split="val")


# --- image folder -----------------------------------------------------------------------------

def test_imagefolder_classes_extensions_and_layouts(tmp_path: Path) -> None:
    imgs = images(6)
    formats.write_imagefolder(tmp_path, {"bob": imgs[:2]}, ext=".PNG")
    formats.write_imagefolder(tmp_path, {"alice": imgs[2:4]}, ext=".jpeg")
    formats.write_imagefolder(tmp_path, {"carol": imgs[4:]}, ext=".bmp")
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    assert detect(tmp_path) == "imagefolder"
    ds = open_dataset(tmp_path, preprocessing=PP)
    assert ds.class_names == ["alice", "bob", "carol"] and ds.num_classes == 3 and len(ds) == 6
    assert ds.labels().tolist() == [0, 0, 1, 1, 2, 2]
    assert np.allclose(back_to_rgb(ds[2][0]), imgs[0], atol=0.01)  # PNG is lossless
    assert close(back_to_rgb(ds[0][0]), imgs[2])
    bgr = open_dataset(f"imagefolder:{tmp_path}", preprocessing=Preprocessing(size=SIZE, channel_order="BGR"))
    assert torch.equal(bgr[2][0], ds[2][0].flip(0))
    nhwc = open_dataset(tmp_path, preprocessing=Preprocessing(size=(16, 16), layout="NHWC"))
    assert tuple(nhwc[0][0].shape) == (16, 16, 3)
    assert gallery_probe_split(ds) == ([0, 2, 4], [1, 3, 5])


def test_imagefolder_corrupt_image(tmp_path: Path) -> None:
    formats.write_imagefolder(tmp_path, {"a": images(1)})
    bad = tmp_path / "a" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = open_dataset(tmp_path, preprocessing=PP)
    with pytest.raises(FcbenchError, match="broken.jpg.*cannot be decoded"):
        ds[1]


# --- specs, detection, errors -----------------------------------------------------------------

def test_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(FcbenchError, match=r"nowhere.* does not exist"):
        open_dataset(str(tmp_path / "nowhere"), preprocessing=PP)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FcbenchError, match=r"notes\.txt: no dataset format recognises it.*insightface-rec.*cifar10"):
        open_dataset(tmp_path / "notes.txt", preprocessing=PP)
    with pytest.raises(FcbenchError, match=r"unknown dataset 'cifar'.*did you mean 'cifar10'"):
        open_dataset(f"cifar:{tmp_path}", preprocessing=PP)
    with pytest.raises(FcbenchError, match=r"unknown option 'num_clases'.*did you mean 'num_classes'.*valid options"):
        open_dataset("synthetic:faces", preprocessing=PP, num_clases=3)
    with pytest.raises(FcbenchError, match=r"option 'seed' must be int"):
        open_dataset("synthetic", preprocessing=PP, seed="zero")
    with pytest.raises(FcbenchError, match=r"'cifar10' needs a path"):
        open_dataset("cifar10", preprocessing=PP)
    with pytest.raises(FcbenchError, match=r"kind='bogus'.*faces, pairs, classes"):
        open_dataset({"name": "synthetic", "kind": "bogus"}, preprocessing=PP)
    with pytest.raises(FcbenchError, match=r"unknown option 'flip'"):
        open_dataset({"name": "cifar10", "path": str(tmp_path), "flip": True}, preprocessing=PP)


def test_dict_spec_and_detection_of_rec(rec_dir) -> None:
    folder, _, _ = rec_dir
    assert detect(folder) == "insightface-rec" and detect(folder / "train.rec") == "insightface-rec"
    ds = open_dataset({"name": "synthetic", "path": "classes", "num_classes": 3, "samples_per_class": 2},
                      preprocessing=PP)
    assert len(ds) == 6 and ds.num_classes == 3
    assert len(open_dataset({"path": str(folder)}, preprocessing=PP)) == 9


# --- synthetic --------------------------------------------------------------------------------

def test_synthetic_deterministic_and_seeded() -> None:
    a = open_dataset("synthetic:faces", preprocessing=PP, num_classes=4, samples_per_class=3)
    b = open_dataset("synthetic", preprocessing=PP, num_classes=4, samples_per_class=3)
    c = open_dataset("synthetic:faces", preprocessing=PP, num_classes=4, samples_per_class=3, seed=1)
    assert len(a) == 12 and a.num_classes == 4 and a.labels().tolist() == [i // 3 for i in range(12)]
    x, y = a[7]
    assert y == 2 and tuple(x.shape) == (3, *SIZE) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(a[7][0], x) and torch.equal(b[7][0], x)
    assert not torch.equal(c[7][0], x)
    assert not torch.equal(a[6][0], x)  # samples of one identity differ
    assert a.source == "synthetic:faces seed=0 classes=4x3"
    workers = torch.cat([xb for xb, _ in DataLoader(a, batch_size=6, num_workers=2)])
    assert torch.equal(workers[7], x)


def test_synthetic_pairs_open_set_and_balanced() -> None:
    faces = open_dataset("synthetic:faces", preprocessing=PP)
    pairs = open_dataset("synthetic:pairs", preprocessing=PP, num_pairs=40)
    assert len(pairs) == 80 and pairs.issame.dtype == bool and int(pairs.issame.sum()) == 20
    assert 0 < int(pairs.issame[:20].sum()) < 20  # shuffled, not blocks
    assert not set(pairs.image_identities.tolist()) & set(faces.identity_ids.tolist())
    ids = pairs.image_identities.reshape(-1, 2)
    assert ((ids[:, 0] == ids[:, 1]) == pairs.issame).all()
    again = open_dataset({"name": "synthetic", "kind": "pairs", "num_pairs": 40}, preprocessing=PP)
    assert np.array_equal(again.issame, pairs.issame) and torch.equal(again[11], pairs[11])
    assert pairs.name == "synthetic-pairs" and pairs[0].shape == (3, *SIZE)


def test_synthetic_classes_splits() -> None:
    pp = Preprocessing(size=(32, 32))
    train = open_dataset("synthetic:classes", preprocessing=pp, samples_per_class=4)
    test = open_dataset("synthetic:classes", preprocessing=pp, samples_per_class=4, split="test")
    assert train.num_classes == 10 and len(train) == 40
    assert not torch.equal(train[5][0], test[5][0]) and train[5][1] == test[5][1] == 1
    with pytest.raises(FcbenchError, match="conflicts"):
        open_dataset("synthetic:classes", preprocessing=pp, kind="faces")


def test_synthetic_is_learnable_signal() -> None:
    """The true latent separates pairs; identity images are closer to each other than to others."""
    pairs = open_dataset("synthetic:pairs", preprocessing=Preprocessing(size=(56, 56)), num_pairs=60)
    z = np.stack([pairs.latent(i) for i in range(len(pairs))])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    cos = (z[0::2] * z[1::2]).sum(1)
    assert cos[pairs.issame].min() > cos[~pairs.issame].max() - 0.2
    assert cos[pairs.issame].mean() > 0.8 > 0.3 > abs(cos[~pairs.issame].mean())
