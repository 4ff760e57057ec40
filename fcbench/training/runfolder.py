"""A training run folder (``--out``) belongs to one run.

``train`` writes ``init.pt``, ``epoch-NNN.pt`` and ``model.pt`` (each with a ``.manifest.json``) into
its folder. Every one of them records the run it belongs to (``train_run``: a fresh id per new run, kept
by ``--resume``), so a resume can tell this run's checkpoints from another run's that were left in the
same folder. Checkpoints written before run ids existed are told apart by the sha256 of the ``init.pt``
they descend from (``legacy:<sha256>``).

This module only reads and checks; the loop decides what to do with the answers.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError

_CKPT = re.compile(r"^(init|model|epoch-(\d+))\.pt$")
_RUN_FILE = re.compile(r"^(init|model|epoch-\d+)\.pt(\.manifest\.json)?(\.[^/]*\.tmp)?$")

# options that may change between a run and its resume: when to stop, where, and how fast
RESUME_MAY_CHANGE = ("epochs", "max_steps", "out", "resume", "overwrite", "workers", "threads", "device")


def run_files(out: Path) -> list[Path]:
    """The files ``train`` writes in ``out`` (checkpoints, their manifests, left-over ``.tmp`` files)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if _RUN_FILE.match(p.name) and not p.is_dir())


def epoch_of(path: Path) -> int | None:
    m = _CKPT.match(path.name)
    return int(m.group(2)) if m and m.group(2) else None


def describe(paths: list[Path]) -> str:
    """``init.pt, epoch-001.pt..epoch-008.pt (8 files), model.pt with their manifests``: short, for one line."""
    names = [p.name for p in paths]
    ckpts = [n for n in names if _CKPT.match(n)]
    epochs = sorted(n for n in ckpts if n.startswith("epoch-"))
    parts = [n for n in ("init.pt",) if n in ckpts]
    if epochs:
        parts.append(epochs[0] if len(epochs) == 1 else f"{epochs[0]}..{epochs[-1]} ({len(epochs)} files)")
    parts += [n for n in ("model.pt",) if n in ckpts]
    rest = [n for n in names if n not in ckpts]
    manifests = [n for n in rest if n.endswith(".manifest.json")]
    tmps = [n for n in rest if n.endswith(".tmp")]
    text = ", ".join(parts)
    if manifests and len(manifests) == len(ckpts):
        text += " with " + ("its manifest" if len(ckpts) == 1 else "their manifests")
    elif manifests:
        text += f"{' and ' if text else ''}{len(manifests)} manifest{'s' if len(manifests) > 1 else ''}"
    if tmps:
        text += f"{' and ' if text else ''}{len(tmps)} unfinished .tmp file{'s' if len(tmps) > 1 else ''}"
    return text


def check_out(out: Path) -> bool:
    """Refuse an ``--out`` that is a file or cannot be made or written, before anything is written.
    Returns whether the folder exists already."""
    from fcbench.paths import output_dir

    output_dir(out, "train: --out", hint=f"pass a folder for the run's checkpoints, e.g. --out "
                                          f"{out.parent / (out.stem + '-run')}")
    return out.is_dir()


def run_key(path: Path) -> str | None:
    """The run ``path`` (a checkpoint ``train`` wrote) belongs to: its ``train_run``, or for a checkpoint
    from before run ids, ``legacy:<sha256 of its init.pt>``; None when that cannot be told (an old
    ``model.pt``)."""
    from fcbench.artifact import MANIFEST_SUFFIX, sha256_file

    mpath = path.with_name(path.name + MANIFEST_SUFFIX)
    manifest: dict[str, Any] = {}
    if mpath.exists():
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads(mpath.read_text())
    key = (manifest.get("extra") or {}).get("train_run") if isinstance(manifest, dict) else None
    if key:
        return str(key)
    payload = _payload(path)
    if payload.get("train_run"):
        return str(payload["train_run"])
    if path.name == "init.pt":
        return "legacy:" + sha256_file(path)
    ts = payload.get("train_state") or {}
    return "legacy:" + ts["init_sha256"] if ts.get("init_sha256") else None


def _payload(path: Path) -> dict[str, Any]:
    import torch

    try:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip checkpoint: mmap is not possible
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a broken file
        raise FcbenchError(f"train: {path} cannot be read ({type(exc).__name__}); it is not a complete checkpoint: "
                           "delete it, or start afresh with --overwrite") from exc
    if not isinstance(payload, dict) or "fcbench_checkpoint" not in payload:
        raise FcbenchError(f"train: {path} is not an fcbench checkpoint; move it out of the run folder")
    return payload


def config_differences(saved: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """``key saved -> asked`` for every option (but those in :data:`RESUME_MAY_CHANGE`) that differs.
    A key the saved config lacks existed only later and is not compared, except ``loss_hook``."""
    def norm(v: Any) -> str:
        return json.dumps(v, sort_keys=True, default=str)

    out = []
    for key in sorted(set(saved) | set(asked)):
        if key in RESUME_MAY_CHANGE or (key not in saved and key != "loss_hook"):
            continue
        a, b = saved.get(key), asked.get(key)
        if norm(a) != norm(b):
            out.append(f"{key} {_short(a)} -> {_short(b)}")
    return out


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str, separators=(",", ":"))
    return s if len(s) <= 120 else s[:117] + "..."


# --- Ctrl-C: finish what is being written, then stop --------------------------------------------

@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back until the block is done, so a checkpoint and its manifest are
    written whole; then raise it as usual. Only the main thread can do this; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught:
            if callable(old):
                old(signal.SIGINT, None)
            elif old == signal.SIG_DFL:
                raise KeyboardInterrupt


# --- the command that continues a run ---------------------------------------------------------------

def resume_command(cfg: Any, resume: str | None) -> str:
    """The command line that continues this run from ``resume`` (``auto`` or a checkpoint) or, with None,
    starts it again: the command given, when this is the ``fcbench train`` command; else one made from
    the options (a recipe step, the API)."""
    argv = list(sys.argv[1:])
    if argv[:1] == ["train"]:
        args, skip = [], False
        for a in argv:
            if skip:
                skip = False
                continue
            if a == "--resume":
                skip = True
                continue
            if a.startswith("--resume=") or a == "--overwrite":
                continue
            args.append(a)
        words = ["fcbench", *args]
    else:
        words = ["fcbench", "train", *_option_words(cfg)]
    if resume:
        words += ["--resume", resume]
    return shlex.join(words)


def _option_words(cfg: Any) -> list[str]:
    from dataclasses import fields

    default = type(cfg)()
    words: list[str] = []
    values = asdict(cfg)
    for f in fields(cfg):
        if f.name in ("resume", "overwrite") or not f.metadata.get("cli", True):
            continue
        value = values[f.name]
        if value == getattr(default, f.name) and f.name != "out":
            continue
        flag = (f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),))[0]
        if isinstance(value, dict):
            for k, v in value.items():
                words += [flag, f"{k}={_plain(v)}"]
        elif isinstance(value, list):
            words += [flag, ",".join(str(v) for v in value)]
        elif isinstance(value, bool):
            words += [flag] if value else []
        else:
            words += [flag, str(value)]
    return words


def _plain(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
