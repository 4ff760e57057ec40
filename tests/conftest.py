from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("COLUMNS", "200")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real console entry point in-process; return exit code, stdout, stderr."""
    from fcbench.cli import main

    def run(*args: object) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["fcbench", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def converted_file(outcomes, fmt: str) -> Path:
    """The file ``fmt``'s conversion wrote, from ``convert``'s outcomes (objects or their JSON dicts).

    Skips only when the format's exporter is not installed here (status ``skipped``, and its
    exporter really is unavailable), naming it; any other status (``failed``, ``parity-failed``,
    ``skipped`` with the exporter installed) or an ``ok`` without its file fails the test with the reason.
    """
    from fcbench.conversion import exporter_class

    def get(o, key: str):
        return o[key] if isinstance(o, dict) else getattr(o, key)

    found = [o for o in outcomes if get(o, "format") == fmt]
    assert len(found) == 1, f"expected one {fmt} outcome, got {len(found)}: {outcomes}"
    o = found[0]
    status, reason = get(o, "status"), get(o, "reason")
    if status == "skipped":
        installed, why = exporter_class(fmt).available()
        if installed:
            pytest.fail(f"{fmt} conversion skipped although its exporter is installed here: {reason}")
        pytest.skip(f"{fmt} exporter is not installed here: {why}")
    if status != "ok":
        pytest.fail(f"{fmt} conversion {status}: {reason}")
    file = get(o, "file")
    assert file and Path(file).is_file(), f"{fmt} conversion says ok but its file is not there: {o}"
    return Path(file)


def manifest_for(file: Path, like: Path) -> None:
    """Give ``file`` the manifest of ``like``, re-recorded for ``file``'s own bytes (its sha256 and size):
    a manifest that vouches for exactly this file, as tests that bench a deliberately broken or
    rewritten artifact need (a copied manifest alone is refused: its sha256 is another file's)."""
    import json

    from fcbench.artifact import manifest_path, sha256_file

    data = json.loads(manifest_path(like).read_text())
    data.update(file=Path(file).name, sha256=sha256_file(file), size=Path(file).stat().st_size)
    manifest_path(file).write_text(json.dumps(data))
