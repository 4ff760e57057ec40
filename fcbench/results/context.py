"""What every row of one run shares: run id, time, git revision, versions, recipe."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata

import fcbench
from fcbench.devices.fingerprint import this_machine
from fcbench.results.store import Row


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if out.returncode != 0:
        return ""
    rev = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5)
    return rev + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class RunContext:
    """Shared fields stamped on every row a run writes."""

    run_id: str = field(default_factory=lambda: os.environ.get("FCBENCH_RUN_ID") or new_run_id())
    recipe: str = ""
    git_rev: str = field(default_factory=_git_rev)
    device: str = "local"  # the device driver's name for where rows are measured (bench cells say their own)
    device_info: dict = field(default_factory=lambda: this_machine()[0], repr=False)
    device_fingerprint: str = field(default_factory=lambda: this_machine()[1])
    store: str = field(default="", repr=False)  # where the caller stores this run's rows ("": unknown); read-only use

    def row(self, kind: str, **values) -> Row:
        versions = values.pop("runtime_versions", None) or {"torch": package_version("torch")}
        row = Row(
            kind=kind,
            run_id=self.run_id,
            time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            git_rev=self.git_rev,
            fcbench_version=fcbench.__version__,
            runtime_versions=versions,
            recipe=self.recipe,
            device=self.device,
            device_info=self.device_info,
            device_fingerprint=self.device_fingerprint,
        )
        return replace(row, **values)
