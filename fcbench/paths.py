"""Checks on the files a verb reads and writes, made before any work starts, each failing with one
line that says what is wrong with which path and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from fcbench.errors import FcbenchError

SQLITE_MAGIC = b"SQLite format 3\x00"


def input_file(path: str | Path, what: str, *, verb: str = "", hint: str = "",
               suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a readable, non-empty file; else one error naming ``verb``, ``what`` it should be
    and ``hint`` (how to fix). For a directory, a file in it ending in one of ``suffixes`` is the example."""
    path = Path(path)
    where = f"{verb}: " if verb else ""
    fix = f"; {hint}" if hint else ""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(suffixes)) \
            if suffixes else []
        eg = f" (e.g. {found[0]})" if found else ""
        raise FcbenchError(f"{where}{what} {path} is a directory, not a file; pass the file inside it{eg}{fix}")
    if not path.exists():
        raise FcbenchError(f"{where}{what} {path} does not exist{fix}")
    if not path.is_file():
        raise FcbenchError(f"{where}{what} {path} is not a regular file{fix}")
    if path.stat().st_size == 0:
        raise FcbenchError(f"{where}{what} {path} is empty (0 bytes){fix}")
    return path


def file_kind(path: str | Path) -> str:
    """What a file is by its bytes, for a message: 'an onnx model', 'empty (0 bytes)', 'a text file', or ''."""
    from fcbench import formats

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty (0 bytes)"
        with path.open("rb") as f:
            head = f.read(512)
    except OSError:
        return ""
    if head.startswith(SQLITE_MAGIC):
        return "an SQLite file"
    for fmt in formats.formats():
        if fmt.magic is not None and fmt.name != "fcbench-ckpt" and fmt.recognise(path):
            return f"{'an' if fmt.name[0] in 'aeio' else 'a'} {fmt.name} model"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return "a text file" if all(c.isprintable() or c in "\r\n\t" for c in text) else ""


def not_a_checkpoint(path: str | Path, exc: BaseException, what: str = "a PyTorch checkpoint") -> str:
    """Why ``torch.load`` could not read ``path``, in words: its kind when known, else the first line
    of torch's message (which for a foreign file runs to a page about ``weights_only``)."""
    from fcbench.errors import first_line

    kind = file_kind(path)
    if kind.endswith(" model"):
        return (f"{path} is {kind}, not {what}; pass the fcbench checkpoint (.pt) it was converted from, "
                "or evaluate/bench the artifact itself")
    if kind:
        return f"{path} is {kind}, not {what} (a torch.save file)"
    return f"{path} is not {what} ({type(exc).__name__}: {first_line(exc)[:120]})"


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def output_file(path: str | Path, option: str, *, make_parent: bool = True, example: str = "") -> Path:
    """``path`` as a file this run can write (it may exist and is then replaced): not a directory, below
    a folder (or folders it may create) that is writable. Fails with one line naming ``option``."""
    path = Path(path)
    if path.is_dir():
        eg = f" (e.g. {path / example})" if example else ""
        raise FcbenchError(f"{option} {path} is a directory; give a file name{eg}")
    parent = path.parent
    base = _first_existing(parent)
    if not base.is_dir():
        raise FcbenchError(f"{option} {path}: {base} is a file, not a folder; pick another path")
    if base != parent and not make_parent:
        raise FcbenchError(f"{option} {path}: folder {parent} does not exist; create it or pick another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise FcbenchError(f"{option} {path}: folder {base} is not writable; pick another path")
    if path.exists() and not os.access(path, os.W_OK):
        raise FcbenchError(f"{option} {path} is not writable; pick another path")
    return path


def output_dir(path: str | Path, option: str, hint: str = "pick a folder path") -> Path:
    """``path`` as a folder this run may create and write in; a file there, or a file above it, fails
    (``hint``: how to fix a file given as the folder)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FcbenchError(f"{option} {path} is a file, not a folder; {hint}")
    base = _first_existing(path)
    if not base.is_dir():
        raise FcbenchError(f"{option} {path} cannot be made: {base} is a file, not a folder; pick another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise FcbenchError(f"{option} {path}: folder {base} is not writable; pick a folder you can write to")
    return path


def store_file(path: str | Path, option: str = "--store") -> Path:
    """A results store path checked before a verb runs (nothing is created): a directory, a file that
    is not SQLite, or a place that cannot be written fails with one line."""
    path = Path(path)
    if path.is_dir():
        raise FcbenchError(f"results store {path} is a directory; pass {option} a file in it, e.g. "
                           f"{path / 'fcbench.sqlite'}")
    if path.is_file():
        kind = file_kind(path)
        if kind not in ("an SQLite file", "empty (0 bytes)"):
            raise FcbenchError(f"results store {path} cannot be opened as SQLite: it is "
                               f"{kind or 'not an SQLite file'}; point {option} at a .sqlite file or a new path")
    return output_file(path, option)
