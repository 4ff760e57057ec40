"""Test fixtures: small files in the real on-disk formats the dataset readers accept.

Written from the format descriptions (dmlc-core RecordIO + MXNet IRHeader, insightface .bin,
CIFAR-10 python batches, image folders); not library code.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

MAGIC = 0xCED7230A


def smooth_image(rng: np.random.Generator, size: tuple[int, int] = (24, 20)) -> np.ndarray:
    """A smooth random RGB uint8 image (survives JPEG almost unchanged)."""
    h, w = size
    coarse = rng.integers(30, 226, size=(3, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))


def encode(rgb: np.ndarray, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 95} | kw if fmt == "JPEG" else kw))
    return buf.getvalue()


# --- RecordIO ---------------------------------------------------------------------------------

def rec_frame(payload: bytes) -> bytes:
    """One dmlc RecordIO record: the payload split at every 4-aligned magic word into parts
    (cflag 1 first, 2 middle, 3 last; 0 when whole), each framed, zero-padded to 4 bytes."""
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(payload) - len(payload) % 4, 4) if payload[i:i + 4] == magic]
    parts, start = [], 0
    for c in cuts:
        parts.append(payload[start:c])
        start = c + 4
    parts.append(payload[start:])
    out = bytearray()
    for n, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        else:
            cflag = 1 if n == 0 else (3 if n == len(parts) - 1 else 2)
        out += magic + struct.pack("<I", (cflag << 29) | len(part)) + part
        out += b"\0" * (-len(part) % 4)
    return bytes(out)


def ir_pack(label: float | Sequence[float], body: bytes, key: int = 0) -> bytes:
    """MXNet ``recordio.pack``: IRHeader ``<IfQQ``; a label list goes after it as float32."""
    if isinstance(label, (int, float)):
        return struct.pack("<IfQQ", 0, float(label), key, 0) + body
    arr = np.asarray(label, dtype="<f4")
    return struct.pack("<IfQQ", arr.size, 0.0, key, 0) + arr.tobytes() + body


def write_rec(rec: Path, idx: Path, records: Sequence[tuple[int, bytes]]) -> None:
    """``records`` = (key, payload) in file order; writes the .rec and its .idx."""
    with open(rec, "wb") as f, open(idx, "w") as fi:
        for key, payload in records:
            fi.write(f"{key}\t{f.tell()}\n")
            f.write(rec_frame(payload))


def write_insightface_rec(folder: Path, images: Sequence[np.ndarray], labels: Sequence[int], *,
                          header: bool = True, label_array: bool = False) -> tuple[Path, Path]:
    """An insightface training set: ``train.rec``/``train.idx``. With ``header``: record 0 holds
    (images_end, identities_end), images are keys 1..n, then one identity record per class with
    its image key range; images of a class must be contiguous for those ranges to be right."""
    folder.mkdir(parents=True, exist_ok=True)
    records: list[tuple[int, bytes]] = []
    first = 1 if header else 0
    for n, (img, lab) in enumerate(zip(images, labels, strict=True)):
        key = first + n
        label = [float(lab), 0.0] if label_array else float(lab)
        records.append((key, ir_pack(label, encode(img), key)))
    if header:
        n_img = len(images)
        classes = sorted(set(int(x) for x in labels))
        end = n_img + 1
        ids = []
        for c in classes:
            keys = [first + i for i, lab in enumerate(labels) if int(lab) == c]
            ids.append((end + len(ids), ir_pack([keys[0], keys[-1] + 1], b"")))
        records = [(0, ir_pack([end, end + len(classes)], b""))] + records + ids
    rec, idx = folder / "train.rec", folder / "train.idx"
    write_rec(rec, idx, records)
    return rec, idx


# --- insightface verification .bin ------------------------------------------------------------

def write_verification_bin(path: Path, images: Sequence[np.ndarray], issame: Sequence[bool]) -> Path:
    """``pickle.dump((bins, issame_list))`` with JPEG bytes, as insightface's lfw.bin."""
    bins = [encode(img) for img in images]
    with open(path, "wb") as f:
        pickle.dump((bins, list(bool(s) for s in issame)), f, protocol=2)
    return path


# --- CIFAR-10 python --------------------------------------------------------------------------

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(folder: Path, per_batch: int = 6, seed: int = 0,
                  batches: Sequence[str] | None = None) -> dict[str, tuple[np.ndarray, list[int]]]:
    """``cifar-10-batches-py``: dict pickles with b'data' uint8 (N, 3072) as R, G, B planes and
    b'labels'; plus batches.meta. Returns {batch: (images N,32,32,3, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = batches or [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = {}
    for name in names:
        imgs = np.stack([smooth_image(rng, (32, 32)) for _ in range(per_batch)])
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        data = imgs.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}, f, protocol=2)
        out[name] = (imgs, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_cases_per_batch": per_batch,
                     b"num_vis": 3072}, f, protocol=2)
    return out


# --- image folder -----------------------------------------------------------------------------

def write_imagefolder(root: Path, classes: dict[str, Sequence[np.ndarray]], ext: str = ".jpg") -> list[Path]:
    """ROOT/<class>/<n><ext>; the format follows the extension (jpg/jpeg/png/bmp, any case)."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}
    written = []
    for name, imgs in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for n, img in enumerate(imgs):
            p = root / name / f"{n:03d}{ext}"
            p.write_bytes(encode(img, fmt[ext.lower()]))
            written.append(p)
    return written
