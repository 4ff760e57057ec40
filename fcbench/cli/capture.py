"""Keep stdout for data: while a verb runs, everything else that writes to the process's stdout or stderr
goes to the run's log file.

Third-party runtimes write straight to file descriptors 1 and 2 (C++ logging, absl, TensorFlow, a failed
ONNX export's TorchScript dump) and to Python's ``sys.stdout``/``sys.stderr`` (prints, warnings, logging
handlers). :class:`Capture` points both descriptors and both Python streams at one log file for the verb's
length and hands the command two streams on the real terminal: ``out`` for the verb's data and ``err`` for
fcbench's own log lines and progress. The log is written at ``<store folder>/logs/<run id>.log`` (so a run
that crashes leaves it there); afterwards the descriptors are put back and a log nothing was written to is
deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import IO


def log_path(store: str | None, run_id: str) -> Path:
    """Where a run's log is kept: ``logs/<run id>.log`` beside the results store (``results/`` by default, and
    for a database URL)."""
    from fcbench.results.store import local_dir

    return local_dir(store) / "logs" / f"{run_id}.log"


def _flush_c_stdio() -> None:
    """Flush C stdio buffers (a runtime's printf to a redirected stdout is block-buffered)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def _terminal_stream(stream: IO[str], fd: int, keep: list[int]) -> IO[str]:
    """``stream`` itself, unless it writes to descriptor ``fd`` (which is about to point at the log): then a
    stream of the same encoding on a duplicate of ``fd`` taken now."""
    try:
        own = stream.fileno() == fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        own = False  # a capture object (pytest's capsys, an IDE console): not the descriptor
    if not own:
        return stream
    dup = os.dup(fd)
    keep.append(dup)
    return open(dup, "w", encoding=getattr(stream, "encoding", None) or "utf-8",  # noqa: SIM115
                errors=getattr(stream, "errors", None) or "replace", buffering=1, closefd=False)


class Capture:
    """``with Capture(final_path) as cap:`` ... ``cap.out`` / ``cap.err`` are the terminal's streams."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.kept: Path | None = None  # where the log was kept, when something was written to it
        self.lines = 0
        self._dups: list[int] = []
        self._saved: list[tuple[int, int]] = []
        self._streams: tuple[IO[str], IO[str]] | None = None
        self.out: IO[str] = sys.stdout
        self.err: IO[str] = sys.stderr

    def __enter__(self) -> Capture:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        self._streams = (sys.stdout, sys.stderr)
        fd = self._open_log()
        try:
            self.out = _terminal_stream(sys.stdout, 1, self._dups)
            self.err = _terminal_stream(sys.stderr, 2, self._dups)
            for target in (1, 2):
                try:
                    saved = os.dup(target)
                except OSError:  # descriptor closed (fcbench ... >&-): nothing to keep it from
                    continue
                self._saved.append((target, saved))
                _flush_c_stdio()
                os.dup2(fd, target)
        except BaseException:
            self._restore()
            os.close(fd)
            self._keep()
            raise
        self._log = open(fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False)  # noqa: SIM115
        sys.stdout = sys.stderr = self._log
        self._faulthandler = False
        if not faulthandler.is_enabled():  # a runtime that crashes the process: its Python stack on the terminal
            with contextlib.suppress(Exception):
                faulthandler.enable(file=self.err)
                self._faulthandler = True
        return self

    def _open_log(self) -> int:
        """The log, written where it is kept (a crash leaves it there); the system's temp folder when the
        store's folder cannot be written. Folders made for it are removed again when it stays empty."""
        self._made: list[Path] = []
        try:
            missing = [p for p in (self.final.parent, *self.final.parent.parents) if not p.exists()]
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._made = missing
            path = self.final
            n = 1
            while True:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    break
                except FileExistsError:
                    path = self.final.with_name(f"{self.final.stem}-{n}{self.final.suffix}")
                    n += 1
        except OSError:
            fd, name = tempfile.mkstemp(prefix="fcbench-", suffix=".log")
            path = Path(name)
        self._path = path
        self._log_fd = fd
        return fd

    def _restore(self) -> None:
        _flush_c_stdio()
        for target, saved in self._saved:
            os.dup2(saved, target)
            os.close(saved)
        self._saved = []
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "_faulthandler", False):
            faulthandler.disable()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        self._restore()
        with contextlib.suppress(Exception):
            self._log.close()
        for stream in (self.out, self.err):
            if stream not in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        for dup in self._dups:
            with contextlib.suppress(OSError):
                os.close(dup)
        self._dups = []
        self.out, self.err = sys.stdout, sys.stderr
        os.close(self._log_fd)
        self._keep()

    def _keep(self) -> None:
        try:
            size = self._path.stat().st_size
        except OSError:
            return
        if size:
            with self._path.open("rb") as f:
                self.lines = sum(1 for _ in f)
            self.kept = self._path
            return
        self._path.unlink(missing_ok=True)
        for folder in self._made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
