"""The local device driver: this machine. adb and ssh drivers follow the same contract."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fcbench.devices.fingerprint import cpu_model as _cpu_model  # noqa: F401  (fcbench.benchmark.peak keys its cache by it)
from fcbench.devices.fingerprint import fingerprint, machine_info


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


class LocalDevice:
    """Runs everything here; ``push``/``pull`` copy files inside a private work dir. ``python`` is the
    command that runs the bench worker here: this interpreter."""

    name = "local"

    def __init__(self, workdir: str | None = None) -> None:
        self.python = [sys.executable]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fcbench-local-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_profile(cls, profile: Any) -> LocalDevice:
        """From an inventory profile (``driver = "local"``): its ``workdir`` and ``python``, when given."""
        dev = cls(workdir=profile.workdir)
        if profile.python:
            dev.python = [str(Path(profile.python).expanduser())]
        dev.name = profile.name
        return dev

    @staticmethod
    def available() -> tuple[bool, str]:
        return True, ""

    def _remote(self, remote: str) -> Path:
        p = Path(remote)
        return p if p.is_absolute() else self.workdir / p

    def push(self, local: str, remote: str) -> None:
        dst = self._remote(remote)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if Path(local).is_dir():
            shutil.copytree(local, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(local, dst)

    def pull(self, remote: str, local: str) -> None:
        src = self._remote(remote)
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, local, dirs_exist_ok=True)
        else:
            shutil.copy2(src, local)

    def exec(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        try:
            p = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return 124, exc.stdout or "", (exc.stderr or "") + f"\ntimed out after {timeout} s"
        except FileNotFoundError as exc:
            return 127, "", str(exc)
        return p.returncode, p.stdout, p.stderr

    def info(self) -> dict[str, Any]:
        """The machine (``machine_info()``: CPU, ISA flags, cores, memory, OS) and its fingerprint,
        hostname, governor and temperature where the kernel tells."""
        machine = machine_info()
        info: dict[str, Any] = {"driver": "local", "hostname": platform.node(), **machine,
                                "fingerprint": fingerprint(machine)}
        gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
        if gov:
            info["governor"] = gov
        temps = []
        for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
            t = _read(str(zone / "temp"))
            if t and t.lstrip("-").isdigit():
                temps.append(int(t) / 1000.0)
        if temps:
            info["temperature_c"] = max(temps)
        return info

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
