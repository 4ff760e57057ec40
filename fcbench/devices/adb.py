"""The adb device driver: an Android phone, through the real ``adb`` client (``adb -s SERIAL ...``).

Android has no Python, so a bench cell on a phone runs the runtime's own native benchmark tool
(:mod:`fcbench.devices.native`) and fcbench parses its output: :meth:`AdbDevice.bench_native`. The
``Device`` protocol (push, pull, exec, info, cleanup) is there too, for the runner and ``devices check``.

- ``push`` is content-addressed: the file goes to ``WORKDIR/blobs/<sha256[:16]>/<name>`` once, and
  ``remote`` is a link to it; a blob already on the phone is not sent again (one ``adb shell`` call checks).
- ``exec`` runs ``cd WORKDIR && CMD; echo __rc=$?`` in ``adb shell`` and reads the exit status from that
  marker, since older adb shells do not forward it. A missing marker means the connection broke: the status
  is adb's own, and adb's line (``error: device 'X' not found``) is the error.
- A serial ``host:port`` is adb over TCP: ``adb connect host:port`` is run first.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from fcbench.devices import native
from fcbench.devices.fingerprint import ISA_FLAGS, fingerprint
from fcbench.errors import FcbenchError

DEFAULT_WORKDIR = "/data/local/tmp/fcbench"
_RC = re.compile(r"__rc=(\d+)\s*$")
_ABI_ARCH = {"arm64-v8a": "aarch64", "armeabi-v7a": "armv7l", "x86_64": "x86_64", "x86": "i686"}
_STATE_HINT = {
    "unauthorized": "unlock the phone and accept the 'Allow USB debugging?' prompt (RSA key), then retry",
    "offline": "replug the cable or run 'adb reconnect'; for adb over TCP run 'adb connect HOST:PORT' again",
    "no permissions": "your user may not open the USB device: add a udev rule for the phone's vendor id",
    "recovery": "the phone is in recovery mode; boot it normally",
    "bootloader": "the phone is in the bootloader; boot it normally",
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first_error(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip().startswith(("error:", "adb: error:", "adb: ")):
            return line.strip()
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else ""


def big_cores_mask(info: dict[str, Any]) -> str | None:
    """The taskset mask (hex, e.g. ``"f0"``) of the cores with the highest ``cpuinfo_max_freq``; None when
    the frequencies are unknown or all cores are alike (nothing to pin)."""
    khz = {int(c): int(f) for c, f in (info.get("cpu_max_khz") or {}).items() if f}
    if not khz or len(set(khz.values())) < 2:
        return None
    top = max(khz.values())
    return format(sum(1 << c for c, f in khz.items() if f == top), "x")


class AdbDevice:
    """An Android device through ``adb``. Relative remote paths are inside ``workdir`` on the phone."""

    name = "adb"
    python = None  # Android has no Python: cells run the native tools (bench_native)

    def __init__(self, serial: str | None = None, workdir: str | None = None, tools: dict[str, str] | None = None,
                 *, adb: str = "adb", timeout_s: float = 600.0, affinity: str = "auto") -> None:
        self.serial = serial
        self.workdir = (workdir or DEFAULT_WORKDIR).rstrip("/")
        self.tools = dict(tools or {})
        self.adb = adb
        self.timeout_s = timeout_s
        self.affinity = affinity
        self._connected = False
        self._info: dict[str, Any] | None = None

    @classmethod
    def from_profile(cls, profile: Any) -> AdbDevice:
        """From an inventory profile (``driver = "adb"``): ``serial`` (or ``host``/``port`` for adb over TCP),
        ``workdir`` (default /data/local/tmp/fcbench), ``[tools]``, ``measure.affinity`` and ``timeout_s``."""
        serial = profile.serial
        if not serial and profile.host:
            serial = f"{profile.host}:{profile.port or 5555}"
        workdir = profile.workdir or DEFAULT_WORKDIR
        if not workdir.startswith("/"):
            raise FcbenchError(f"device profile {profile.location or profile.name}: an adb workdir must be absolute "
                               f"(e.g. {DEFAULT_WORKDIR}), got {workdir!r}")
        dev = cls(serial=serial, workdir=workdir, tools=profile.tools, timeout_s=profile.measure.timeout_s,
                  affinity=profile.measure.affinity)
        dev.name = profile.name
        return dev

    @staticmethod
    def available() -> tuple[bool, str]:
        if shutil.which("adb"):
            return True, ""
        return False, "the adb client is not on PATH (install Android platform-tools: apt install adb)"

    # --- adb itself ------------------------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float | None = None, serial: bool = True) -> subprocess.CompletedProcess:
        argv = [self.adb, *(["-s", self.serial] if serial and self.serial else []), *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace")
        except FileNotFoundError:
            raise FcbenchError(f"adb device {self.name}: the adb client '{self.adb}' was not found; install Android "
                               "platform-tools (apt install adb) and put adb on PATH") from None

    def attached(self) -> dict[str, str]:
        """``adb devices``: serial -> state (device, unauthorized, offline, ...)."""
        p = self._run("devices", serial=False, timeout=30)
        out = {}
        for line in p.stdout.splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 2 and parts[0].strip():
                out[parts[0].strip()] = parts[1].strip()
        return out

    def connect(self) -> None:
        """Make sure the device is there and usable, else one line naming adb's state and the fix."""
        if self._connected:
            return
        where = f"adb device {self.name}" + (f" ({self.serial})" if self.serial and self.serial != self.name else "")
        if self.serial and re.fullmatch(r"[\w.-]+:\d+", self.serial):
            p = self._run("connect", self.serial, serial=False, timeout=30)
            text = (p.stdout + p.stderr).strip()
            if p.returncode != 0 or "cannot" in text or "failed" in text:
                raise FcbenchError(f"{where}: adb connect {self.serial} failed: {_first_error(text)} (is adb over "
                                   "TCP enabled on the phone: 'adb tcpip 5555' over USB, or Wireless debugging?)")
        p = self._run("get-state", timeout=30)
        state = p.stdout.strip()
        if p.returncode == 0 and state == "device":
            self._connected = True
            return
        line = _first_error(p.stderr or p.stdout) or f"state {state or 'unknown'}"
        low = line.lower()
        if "not found" in low and self.serial:
            attached = self.attached()
            if not attached:
                raise FcbenchError(f"{where}: {line}; no device is attached (plug the phone in, enable USB debugging, "
                                   "and check with adb devices -l)")
            listed = ", ".join(f"{s} ({st})" for s, st in attached.items())
            raise FcbenchError(f"{where}: {line}; attached: {listed} (set serial in the device profile to one of "
                               "them)")
        if "no devices" in low:
            raise FcbenchError(f"{where}: {line} (plug the phone in and enable USB debugging in Developer options)")
        if "more than one" in low:
            listed = ", ".join(self.attached()) or "none"
            raise FcbenchError(f"{where}: {line}; set serial in the device profile to one of: {listed}")
        for key, hint in _STATE_HINT.items():
            if key in low or key == state:
                raise FcbenchError(f"{where}: {line} ({hint})")
        raise FcbenchError(f"{where}: {line}")

    def _remote(self, remote: str) -> str:
        return remote if remote.startswith("/") else f"{self.workdir}/{remote}"

    # --- the Device protocol -----------------------------------------------------------------------------------

    def shell(self, script: str, timeout: float | None = None) -> tuple[int, str, str]:
        """Run ``script`` (a shell line) on the phone; (exit status, stdout, stderr). The status comes from an
        ``__rc=`` marker; without it (the connection broke) it is adb's and stderr holds adb's line."""
        self.connect()
        try:
            p = self._run("shell", f"{script}; echo __rc=$?", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return 124, out, err + f"\ntimed out after {timeout} s"
        out = p.stdout
        m = _RC.search(out)
        if not m:
            self._connected = False
            return (p.returncode or 255), out, p.stderr or "adb shell ended without an exit status"
        return int(m.group(1)), out[:m.start()], p.stderr

    def exec(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        """``argv`` in the work dir on the phone (``cd WORKDIR && ...``)."""
        wd = shlex.quote(self.workdir)
        return self.shell(f"mkdir -p {wd} && cd {wd} && {shlex.join(argv)}", timeout=timeout)

    def push(self, local: str, remote: str) -> None:
        """Send ``local`` once per content: to ``WORKDIR/blobs/<sha16>/<name>``, linked from ``remote``;
        skipped when that blob is already on the phone. Folders are pushed as they are."""
        src = Path(local)
        dst = self._remote(remote)
        if src.is_dir():
            self._push_plain(src, dst)
            return
        blob = f"{self.workdir}/blobs/{_sha256(src)[:16]}/{src.name}"
        qb, qd = shlex.quote(blob), shlex.quote(dst)
        link = f"mkdir -p {shlex.quote(str(Path(dst).parent))} && ln -sf {qb} {qd}" if dst != blob else "true"
        rc, out, err = self.shell(f"if [ -f {qb} ]; then {link} && echo __have; else echo __missing; fi")
        if rc == 0 and "__have" in out:
            return
        if rc != 0 or "__missing" not in out:
            raise OSError(f"adb push {local}: {_first_error(err or out) or f'exit {rc}'}")
        self._push_plain(src, blob + ".part")
        rc, out, err = self.shell(f"mv {qb}.part {qb} && {link}")
        if rc != 0:
            raise OSError(f"adb push {local}: {_first_error(err or out) or f'exit {rc}'}")

    def _push_plain(self, src: Path, dst: str) -> None:
        self.connect()
        p = self._run("push", str(src), dst, timeout=self.timeout_s)
        if p.returncode != 0:
            raise OSError(f"adb push {src} {dst}: {_first_error(p.stderr or p.stdout) or f'exit {p.returncode}'}")

    def pull(self, remote: str, local: str) -> None:
        self.connect()
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        p = self._run("pull", self._remote(remote), local, timeout=self.timeout_s)
        if p.returncode != 0:
            line = _first_error(p.stderr or p.stdout) or f"exit {p.returncode}"
            if "No such file" in line or "does not exist" in line:
                raise FileNotFoundError(f"adb pull {remote}: {line}")
            raise OSError(f"adb pull {remote}: {line}")

    def info(self) -> dict[str, Any]:
        """The phone: model, SoC, ABI, Android release, CPU, cores with their max frequency (big/little),
        governor, temperature (max of the thermal zones), battery, memory, and a fingerprint. One adb call."""
        script = (
            "for p in ro.product.model ro.product.manufacturer ro.soc.model ro.soc.manufacturer ro.board.platform "
            "ro.product.cpu.abi ro.build.version.release ro.build.version.sdk; do echo \"__prop $p=$(getprop $p)\"; "
            "done; echo \"__uname $(uname -m)\"; "
            "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
            "echo \"__cpu ${c##*/} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)\"; done; "
            "echo \"__gov $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)\"; "
            "for z in /sys/class/thermal/thermal_zone*; do echo \"__temp $(cat $z/temp 2>/dev/null)\"; done; "
            "echo __battery; dumpsys battery 2>/dev/null; echo __cpuinfo; cat /proc/cpuinfo; "
            "echo __meminfo; grep MemTotal /proc/meminfo")
        rc, out, err = self.shell(script, timeout=60)
        if rc != 0 and "__prop" not in out:
            raise FcbenchError(f"adb device {self.name}: reading its info failed: {_first_error(err or out)}")
        info = _parse_info(out)
        info["serial"] = self.serial
        self._info = info
        return info

    def cleanup(self) -> None:
        """Remove the job and model links from the work dir; the blobs stay (a cache for the next run)."""
        wd = shlex.quote(self.workdir)
        try:
            self.shell(f"rm -rf {wd}/jobs {wd}/models", timeout=60)
        except FcbenchError:
            pass

    # --- native tools ------------------------------------------------------------------------------------------

    def affinity_mask(self) -> str | None:
        """The taskset mask the profile asks for: ``auto`` (the big cores), ``none``, or a hex mask."""
        if self.affinity == "none":
            return None
        if self.affinity == "auto":
            return big_cores_mask(self._info or self.info())
        return self.affinity

    def bench_native(self, artifact: str | Path, backend_plugin: str, variant: str, threads: int | None, warmup: int,
                     runs: int, min_seconds: float, affinity_mask: str | None, logs_dir: str | Path | None, *,
                     input_shape: list[int] | None = None, profile_ops: bool = False,
                     timeout: float | None = None) -> dict[str, Any]:
        """One bench cell with the runtime's native tool: push the artifact (once per content), run the tool
        (``taskset MASK`` first when a mask is given), parse its output. Returns the worker raw-result shape
        (``NativeRun.to_raw()``) plus ``device`` and ``logs`` (the raw output, kept in ``logs_dir``)."""
        tool, why = native.tool_for(backend_plugin, variant)
        if tool is None:
            return {"status": "failed", "reason": why, "tool": None}
        binary = self.tools.get(tool)
        if not binary:
            return {"status": "failed", "tool": tool, "reason": (
                f"{backend_plugin}:{variant} on {self.name} needs {tool}, and the device profile has no path for it: "
                f"add [tools] {tool} = \"/data/local/tmp/{tool}\" and push the binary there (adb push {tool} "
                f"/data/local/tmp/ && adb shell chmod +x /data/local/tmp/{tool})")}
        try:
            rc, _, err = self.shell(f"test -x {shlex.quote(binary)}", timeout=60)
            if rc != 0 and (lost := _lost(err)):
                return {"status": "failed", "tool": tool, "reason": f"adb device {self.name}: {lost}"}
            if rc != 0:
                return {"status": "failed", "tool": tool, "reason": (
                    f"{tool} not found on {self.name} at {binary} (the profile's [tools] {tool}); build or download "
                    f"it for {self._abi()} and push it: adb -s {self.serial or 'SERIAL'} push {tool} {binary} && "
                    f"adb -s {self.serial or 'SERIAL'} shell chmod +x {binary}")}
            art = Path(artifact)
            remote_model = f"models/{art.name}"
            self.push(str(art), remote_model)
            argv = native.command(tool, binary, f"{self.workdir}/{remote_model}", variant=variant, threads=threads,
                                  warmup=warmup, runs=runs, min_seconds=min_seconds, profile_ops=profile_ops,
                                  input_shape=input_shape)
            if affinity_mask:
                argv = ["taskset", affinity_mask, *argv]
            rc, out, err = self.exec(argv, timeout=timeout or self.timeout_s)
        except (FcbenchError, OSError) as exc:
            return {"status": "failed", "tool": tool, "reason": f"adb device {self.name}: {exc}"}
        text = out + (("\n" + err) if err.strip() else "")
        kept = _keep(logs_dir, f"{tool}-{backend_plugin}-{variant}", argv, text, rc)
        lost = _lost(err) if not _has_output(out) or rc != 0 else ""
        if lost:
            raw = {"status": "failed", "tool": tool, "reason": f"adb device {self.name}: {lost} (while {tool} ran)"}
        else:
            raw = native.parse(tool, text, rc).to_raw()
        raw["device"] = self.name
        raw["command"] = shlex.join(argv)
        if affinity_mask:
            raw["affinity"] = affinity_mask
        if kept:
            raw["logs"] = str(kept)
        return raw

    def _abi(self) -> str:
        return (self._info or {}).get("abi") or "the phone's ABI (adb shell getprop ro.product.cpu.abi)"


def _has_output(out: str) -> bool:
    return bool(out.strip())


def _lost(err: str) -> str:
    """adb's own line when the device went away (not found, offline, no devices), else ""."""
    for line in (err or "").splitlines():
        s = line.strip()
        if s.startswith(("error: device", "error: no devices", "error: closed", "adb: device")) or \
                "device offline" in s:
            return s
    return ""


def _keep(logs_dir: str | Path | None, stem: str, argv: list[str], text: str, rc: int) -> Path | None:
    if not logs_dir:
        return None
    folder = Path(logs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / f"{stem}.txt", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.txt", n + 1
    path.write_text(f"$ {shlex.join(argv)}\n{text}\n[exit {rc}]\n")
    return path


def _parse_info(out: str) -> dict[str, Any]:
    props: dict[str, str] = {}
    khz: dict[str, int] = {}
    temps: list[float] = []
    battery: dict[str, Any] = {}
    cpuinfo: list[str] = []
    section = ""
    gov = uname = ""
    mem_kb = None
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("__prop "):
            k, _, v = s[7:].partition("=")
            if v:
                props[k] = v
        elif s.startswith("__uname"):
            uname = s[7:].strip()
        elif s.startswith("__cpu "):
            parts = s.split()
            if len(parts) == 3 and parts[2].isdigit():
                khz[parts[1].removeprefix("cpu")] = int(parts[2])
            elif len(parts) >= 2:
                khz.setdefault(parts[1].removeprefix("cpu"), 0)
        elif s.startswith("__gov"):
            gov = s[5:].strip()
        elif s.startswith("__temp"):
            v = s[6:].strip()
            if v.lstrip("-").isdigit():
                t = int(v)
                temps.append(t / 1000.0 if abs(t) > 500 else float(t))  # millidegrees, or degrees on some zones
        elif s in ("__battery", "__cpuinfo", "__meminfo"):
            section = s
        elif section == "__battery" and ":" in s:
            k, _, v = s.partition(":")
            k, v = k.strip(), v.strip()
            if k == "level" and v.isdigit():
                battery["level"] = int(v)
            elif k == "temperature" and v.lstrip("-").isdigit():
                battery["temperature_c"] = int(v) / 10.0  # tenths of a degree
            elif k in ("AC powered", "USB powered") and v == "true":
                battery["charging"] = True
        elif section == "__cpuinfo":
            cpuinfo.append(s)
        elif section == "__meminfo" and s.startswith("MemTotal:"):
            mem_kb = int(s.split()[1])
    hardware = features = ""
    for s in cpuinfo:
        k, _, v = s.partition(":")
        k = k.strip().lower()
        if k == "hardware" and not hardware:
            hardware = v.strip()
        elif k == "features" and not features:
            features = v.strip()
    flags = set(features.split())
    abi = props.get("ro.product.cpu.abi", "")
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or hardware
    info: dict[str, Any] = {
        "driver": "adb",
        "model": props.get("ro.product.model"),
        "manufacturer": props.get("ro.product.manufacturer"),
        "hostname": props.get("ro.product.model"),
        "soc": props.get("ro.soc.model"),
        "board": props.get("ro.board.platform"),
        "abi": abi or None,
        "arch": uname or _ABI_ARCH.get(abi, abi) or None,
        "cpu": soc or "unknown SoC",
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": len(khz) or None,
        "cpu_max_khz": {k: v for k, v in sorted(khz.items(), key=lambda kv: int(kv[0])) if v} or None,
        "memory_gb": round(mem_kb / 2**20, 1) if mem_kb else None,
        "system": "Android",
        "os": f"Android {props['ro.build.version.release']}" if props.get("ro.build.version.release") else "Android",
    }
    if info["cpu_max_khz"]:
        top = max(info["cpu_max_khz"].values())
        info["big_cores"] = [int(c) for c, f in info["cpu_max_khz"].items() if f == top]
        info["little_cores"] = [int(c) for c, f in info["cpu_max_khz"].items() if f != top]
    if gov:
        info["governor"] = gov
    if temps:
        info["temperature_c"] = max(temps)
    if battery:
        info["battery"] = battery
    info["fingerprint"] = fingerprint(info)
    return {k: v for k, v in info.items() if v is not None}
