"""insightface training sets in MXNet RecordIO (``train.rec`` + ``train.idx``), read without MXNet.

Layout (dmlc-core RecordIO, as MXNet's ``MXIndexedRecordIO`` writes it):

* ``train.idx``: one ``key<TAB>byte_offset`` line per record.
* ``train.rec``: records, each ``uint32 magic 0xced7230a``, ``uint32 lrecord`` (upper 3 bits a
  continuation flag, lower 29 bits the length), the payload, zero padding to 4 bytes. A payload
  that contains the magic word at a 4-byte boundary is split into parts (flag 1 first, 2 middle,
  3 last) with the magic word dropped between them; parts are joined back with the magic word.
* payload: ``IRHeader`` packed as ``<IfQQ`` (flag, label, id, id2); when ``flag > 0`` it is
  followed by ``flag`` float32 labels (the label is the first), then the encoded image.
* record 0 is, in insightface sets, a header with ``flag > 0``, no image, and labels
  ``(images_end, identities_end)``: images are keys ``1 .. images_end-1`` and identity records
  ``images_end .. identities_end-1`` (one per class). Without that header every key is an image.

Reads are lazy (seek by offset); each process opens its own file handle, so DataLoader workers
and DDP ranks never share one.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch

from fcbench.data.base import DatasetPlugin, LabelledImages, _check_index, decode_image, to_tensor
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR = struct.Struct("<IfQQ")
_LEN_MASK = (1 << 29) - 1


def parse_idx(idx_path: Path) -> dict[int, int]:
    """``train.idx`` -> {key: offset}, in file order."""
    out: dict[int, int] = {}
    try:
        text = idx_path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise FcbenchError(f"{idx_path}: cannot be read ({exc.strerror or exc})") from exc
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t")
        try:
            out[int(parts[0])] = int(parts[1])
        except (IndexError, ValueError):
            raise FcbenchError(f"{idx_path}: line {n} is not 'key<TAB>offset' ({line[:40]!r}); "
                               "the index is corrupt, re-create it") from None
    if not out:
        raise FcbenchError(f"{idx_path}: index is empty; re-create it next to the .rec")
    return out


class RecordFile:
    """Random access to the records of one ``.rec`` through its ``.idx``; safe across fork."""

    def __init__(self, rec_path: Path, idx_path: Path) -> None:
        self.rec_path, self.idx_path = rec_path, idx_path
        self.offsets = parse_idx(idx_path)
        self.size = rec_path.stat().st_size
        self._fh: BinaryIO | None = None
        self._pid = -1
        for key, off in self.offsets.items():
            if off < 0 or off + 8 > self.size:
                raise FcbenchError(f"{rec_path}: idx offset {off} of record {key} is past the end of the file "
                                   f"({self.size} bytes); the .rec is truncated or the .idx belongs to another file")

    def _file(self) -> BinaryIO:
        if self._fh is None or self._pid != os.getpid():  # reopen after fork (DataLoader workers)
            if self._fh is not None:
                self._fh.close()  # the parent's handle, inherited: closing our copy leaves theirs be
            self._fh = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for the dataset's life
            self._pid = os.getpid()
        return self._fh

    def close(self) -> None:
        if self._fh is not None and self._pid == os.getpid():
            self._fh.close()
        self._fh = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fh"], state["_pid"] = None, -1
        return state

    def _bad(self, key: int, off: int, what: str) -> FcbenchError:
        return FcbenchError(f"{self.rec_path}: record {key} at offset {off}: {what}; "
                            "the .rec is truncated or corrupt (or the .idx does not match it)")

    def read(self, key: int, limit: int | None = None) -> bytes:
        """The payload of record ``key`` (multi-part records joined). With ``limit``, stop after
        the first part and return at most ``limit`` bytes (enough to read a header cheaply)."""
        if key not in self.offsets:
            raise FcbenchError(f"{self.rec_path}: no record {key} in {self.idx_path}")
        off = self.offsets[key]
        f = self._file()
        f.seek(off)
        pos, chunks, part = off, [], 0
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise self._bad(key, off, f"record header at byte {pos} runs past the end of the file")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise self._bad(key, off, f"wrong magic 0x{magic:08x} at byte {pos} (expected 0x{MAGIC:08x})")
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            if cflag > 3 or (part == 0) != (cflag in (0, 1)):
                raise self._bad(key, off, f"unexpected continuation flag {cflag} in part {part}")
            if limit is not None and part == 0 and (cflag == 0 or length >= limit):
                return f.read(min(length, limit))
            padded = (length + 3) & ~3
            if pos + 8 + padded > self.size:
                raise self._bad(key, off, f"length {length} runs past the end of the file ({self.size} bytes)")
            chunks.append(f.read(padded)[:length])
            pos += 8 + padded
            part += 1
            if cflag in (0, 3):
                break
            chunks.append(_MAGIC_BYTES)
        return b"".join(chunks)

    def check(self, key: int) -> None:
        """Walk record ``key``'s parts (lengths and magic) without keeping the payload."""
        self.read(key)


def unpack(payload: bytes, where: str) -> tuple[int, np.ndarray, bytes]:
    """(flag, labels as float32 array (at least one), image bytes) of an IRHeader record."""
    if len(payload) < _IR.size:
        raise FcbenchError(f"{where}: record of {len(payload)} bytes is shorter than its {_IR.size}-byte header; "
                           "the .rec is corrupt")
    flag, label, _id, _id2 = _IR.unpack_from(payload)
    body = payload[_IR.size:]
    if flag > 0:
        if len(body) < 4 * flag:
            raise FcbenchError(f"{where}: header says {flag} labels but the record is too short; the .rec is corrupt")
        return flag, np.frombuffer(body[: 4 * flag], dtype="<f4").copy(), body[4 * flag:]
    return flag, np.asarray([label], dtype=np.float32), body


def first_label(head: bytes, where: str) -> int:
    """The label of a record from its first bytes (IRHeader, plus the first float when flag > 0)."""
    if len(head) < _IR.size:
        raise FcbenchError(f"{where}: record of {len(head)} bytes is shorter than its {_IR.size}-byte header; "
                           "the .rec is corrupt")
    flag, label, _id, _id2 = _IR.unpack_from(head)
    if flag > 0:
        if len(head) < _IR.size + 4:
            raise FcbenchError(f"{where}: header says {flag} labels but the record is too short; the .rec is corrupt")
        (label,) = struct.unpack_from("<f", head, _IR.size)
    return int(label)


class RecordIODataset(DatasetPlugin, LabelledImages):
    """insightface ``train.rec``/``train.idx`` (MS1M, Glint360K, CASIA-WebFace, ...)."""

    name: ClassVar[str] = "insightface-rec"
    detects: ClassVar[str] = "a .rec file, or a folder with train.rec and train.idx"
    OPTIONS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        path = Path(path)
        if path.is_dir():
            return (path / "train.rec").is_file() and (path / "train.idx").is_file()
        return path.is_file() and path.suffix.lower() in (".rec", ".idx") and path.with_suffix(".rec").is_file()

    @classmethod
    def open(cls, path: str | None, *, preprocessing: Preprocessing, **options: Any) -> RecordIODataset:
        cls.check_options(options)
        p = cls.need_path(path)
        if p.is_dir():
            rec, idx = p / "train.rec", p / "train.idx"
        else:
            rec, idx = p.with_suffix(".rec"), p.with_suffix(".idx")
        for f in (rec, idx):
            if not f.is_file():
                raise FcbenchError(f"{f} is missing; an insightface RecordIO set needs both {rec.name} and {idx.name}")
        return cls(rec, idx, preprocessing)

    def __init__(self, rec: Path, idx: Path, preprocessing: Preprocessing) -> None:
        self.preprocessing = preprocessing
        self.source = str(rec)
        self.class_names = None
        self.records = RecordFile(rec, idx)
        keys = list(self.records.offsets)
        self.header: tuple[int, int] | None = None
        if 0 in self.records.offsets:
            flag, labels, image = unpack(self.records.read(0), f"{rec}: header record 0")
            if flag > 0 and not image:
                self.header = (int(labels[0]), int(labels[1]) if labels.size > 1 else int(labels[0]))
        if self.header is not None:
            end = self.header[0]
            missing = [k for k in range(1, end) if k not in self.records.offsets]
            if end < 2 or missing:
                raise FcbenchError(f"{rec}: header record says images are keys 1..{end - 1} but "
                                   f"{'none are' if end < 2 else f'key {missing[0]} is'} in {idx.name}; "
                                   "the index is truncated or does not match")
            self.keys = np.arange(1, end, dtype=np.int64)
        else:
            self.keys = np.asarray(keys, dtype=np.int64)
        if self.keys.size == 0:
            raise FcbenchError(f"{rec}: holds no image records")
        last = max(self.records.offsets, key=self.records.offsets.__getitem__)
        self.records.check(last)  # a cut-off file shows at its last record
        self._labels: np.ndarray | None = None
        if self.header is not None and self.header[1] > self.header[0]:
            self.num_classes = self.header[1] - self.header[0]  # one identity record per class
        else:
            self.num_classes = int(self.labels().max()) + 1

    def __len__(self) -> int:
        return int(self.keys.size)

    def _where(self, key: int) -> str:
        return f"{self.source}: record {key}"

    def _read(self, i: int) -> tuple[int, np.ndarray]:
        """(label, decoded RGB image) of image ``i``, from one read of its record."""
        key = int(self.keys[i])
        _, labels, image = unpack(self.records.read(key), self._where(key))
        if not image:
            raise FcbenchError(f"{self._where(key)}: holds no image bytes; the .rec is corrupt")
        return int(labels[0]), decode_image(image, self._where(key))

    def rgb(self, i: int) -> np.ndarray:
        return self._read(i)[1]

    def label(self, i: int) -> int:
        if self._labels is not None:
            return int(self._labels[i])
        key = int(self.keys[i])
        return first_label(self.records.read(key, limit=_IR.size + 4), self._where(key))

    def labels(self) -> np.ndarray:
        """Every image's label, read from the record headers only (no decoding); cached."""
        if self._labels is None:
            self._labels = np.asarray([self.label(i) for i in range(len(self))], dtype=np.int64)
        return self._labels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        label, rgb = self._read(_check_index(i, len(self), self.source))
        return to_tensor(self.preprocessing, rgb), label
