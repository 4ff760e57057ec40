"""What machine a measurement came from: CPU, ISA extensions, cores, memory, OS (stdlib only).

This module runs inside the bench worker on the device (a phone, a board, this host), so it
imports nothing but the standard library. ``machine_info()`` reads what the kernel tells
(``/proc/cpuinfo``, ``/proc/meminfo``; ``sysctl`` on macOS); ``fingerprint(info)`` hashes the
keys that name the hardware and its OS family, so two results with the same fingerprint came
from the same kind of machine. Software versions (kernel release, python) are reported but not
hashed: upgrading them does not make another machine, and result rows record them anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# ISA extensions that decide which kernels a runtime can pick (x86: /proc/cpuinfo "flags";
# arm: "Features"; macOS: sysctl hw.optional.*)
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "neon", "asimd", "asimdhp", "asimddp", "fphp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2",
)
STABLE_KEYS = ("arch", "cpu", "isa", "cores", "memory_gb", "system")
_MAC_FLAGS = {"hw.optional.neon": "asimd", "hw.optional.arm.FEAT_DotProd": "asimddp",
              "hw.optional.arm.FEAT_I8MM": "i8mm", "hw.optional.arm.FEAT_BF16": "bf16",
              "hw.optional.arm.FEAT_FP16": "asimdhp",
              "hw.optional.arm.FEAT_SME": "sme", "hw.optional.avx2_0": "avx2", "hw.optional.avx512f": "avx512f"}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _sysctl(*names: str) -> dict[str, str]:
    try:
        out = subprocess.run(["sysctl", *names], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def _cpuinfo() -> tuple[str, set[str]]:
    return parse_cpuinfo(_read("/proc/cpuinfo"))


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(CPU model, ISA flags) from the text of /proc/cpuinfo (this machine's, or a device's read over
    ssh): x86 'model name' and 'flags'; arm 'Hardware' or 'CPU implementer'/'CPU part' and 'Features'."""
    model, flags, implementer, part = "", set(), "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key == "cpu implementer" and not implementer:
            implementer = value
        elif key == "cpu part" and not part:
            part = value
    if not model and implementer:
        model = f"arm implementer {implementer} part {part}"
    return model, flags


def cpu_model() -> str:
    model, _ = _cpuinfo()
    if not model and platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string").get("machdep.cpu.brand_string", "")
    return model or platform.processor() or platform.machine() or "unknown CPU"


def parse_meminfo(text: str) -> float | None:
    """MemTotal in GiB (one decimal) from the text of /proc/meminfo."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _memory_gb() -> float | None:
    found = parse_meminfo(_read("/proc/meminfo"))
    if found is not None:
        return found
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def parse_os_release(text: str) -> str:
    """PRETTY_NAME from the text of /etc/os-release ('' when absent)."""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def _os_name() -> str:
    found = parse_os_release(_read("/etc/os-release"))
    if found:
        return found
    if platform.system() == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return f"{platform.system()} {platform.release()}"


def machine_info() -> dict[str, Any]:
    """CPU model, the ISA extensions runtimes care about, cores, memory, OS, kernel, python, arch."""
    model, flags = _cpuinfo()
    if not flags and platform.system() == "Darwin":
        found = _sysctl(*_MAC_FLAGS)
        flags = {name for key, name in _MAC_FLAGS.items() if found.get(key) == "1"}
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": model or cpu_model(),
        "arch": platform.machine(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gb": _memory_gb(),
        "system": platform.system(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def fingerprint(info: dict[str, Any]) -> str:
    """12 hex digits naming the machine: a hash of ``STABLE_KEYS`` (memory rounded to whole GiB, so
    a kernel reserving a little more after an update is the same machine)."""
    stable = {k: info.get(k) for k in STABLE_KEYS}
    if isinstance(stable["memory_gb"], (int, float)):
        stable["memory_gb"] = round(stable["memory_gb"])
    if isinstance(stable["isa"], list):
        stable["isa"] = sorted(stable["isa"])
    blob = json.dumps(stable, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


_THIS: list[tuple[dict[str, Any], str]] = []


def this_machine() -> tuple[dict[str, Any], str]:
    """This machine's ``machine_info()`` and its ``fingerprint``, read once per process (rows and
    in-process cells all need it; the hardware does not change under a running process)."""
    if not _THIS:
        info = machine_info()
        _THIS.append((info, fingerprint(info)))
    return _THIS[0]
