"""The ssh device driver: a Linux board or server reached with the system OpenSSH client.

Why the ``ssh`` command and not a Python ssh library: no extra dependency, and the user's own
setup works as it does in a terminal (``~/.ssh/config`` aliases, the agent, ``ProxyJump``,
``known_hosts``). Every call is ``ssh -o BatchMode=yes`` (never a password prompt) with
``ConnectTimeout``, the profile's port, user, key (``-i``, ``IdentitiesOnly``) and ``ssh_options``;
one master connection (``ControlMaster``, private socket) carries all the calls of a session.

Files travel as the standard output or input of ``ssh`` (``cat``, ``tar`` on the device), so the
device needs a POSIX shell, ``cat`` and ``tar`` (busybox has them), python3 (>= 3.10), numpy and
the runtime: fcbench itself is pushed as a zip (content-hashed, kept in ``<workdir>/lib`` and
pushed again only when fcbench changed) whose ``__main__`` (:mod:`fcbench.devices.launcher`)
runs ``python ZIP -m fcbench.worker ...`` with fcbench imported from the zip.

The work dir is ``<workdir>/session-<id>`` (``workdir`` relative to the login's home, default
``fcbench-work``); ``cleanup()`` removes it. A problem reaching the device when the session starts
(refused, unreachable, key refused, host key mismatch, python missing, disk full) is one
:class:`SshError` line; after that, ``exec`` returns ssh's exit code (255: connection lost) with a
line saying so, so a server lost mid-job fails the cell instead of raising.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
import weakref
import zipfile
from pathlib import Path
from typing import Any

from fcbench.devices.fingerprint import fingerprint, parse_cpuinfo, parse_meminfo, parse_os_release
from fcbench.errors import FcbenchError

CONNECT_TIMEOUT = 10
MIN_PYTHON = (3, 10)
_ZIP: list[tuple[Path, str]] = []


class SshError(FcbenchError, OSError):
    """A problem reaching or using an ssh device: one line (what, where, how to fix). An ``OSError`` too,
    so a lost connection while pulling a result is a failed cell for ``run_job``."""


# --- the fcbench zip -------------------------------------------------------------------------

def package_zip() -> tuple[Path, str]:
    """(path, hash) of a zip of the installed fcbench package with its entry points (a ``dist-info``)
    and :mod:`fcbench.devices.launcher` as ``__main__.py``; built once per process. The hash (12 hex
    digits) is of the contents, so the same fcbench gives the same name."""
    if _ZIP:
        return _ZIP[0]
    from importlib import metadata

    import fcbench

    root = Path(fcbench.__file__).parent
    members: list[tuple[str, bytes]] = []
    for f in sorted(root.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo", ".so"):
            members.append((f"fcbench/{f.relative_to(root).as_posix()}", f.read_bytes()))
    version = fcbench.__version__
    try:
        entry_points = metadata.distribution("fcbench").read_text("entry_points.txt") or ""
    except metadata.PackageNotFoundError:
        entry_points = ""
    info = f"fcbench-{version}.dist-info"
    members += [(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: fcbench\nVersion: {version}\n".encode()),
                (f"{info}/entry_points.txt", entry_points.encode()),
                ("__main__.py", (root / "devices" / "launcher.py").read_bytes())]
    h = hashlib.sha256()
    for name, data in members:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    digest = h.hexdigest()[:12]
    folder = Path(tempfile.mkdtemp(prefix="fcbench-zip-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / f"fcbench-{digest}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    _ZIP.append((path, digest))
    return _ZIP[0]


# --- what ssh's messages mean -----------------------------------------------------------------

_LOST = ("Connection closed by", "Connection reset by", "kex_exchange_identification", "Broken pipe",
         "closed by remote host", "client_loop:", "not responding", "Connection timed out during banner")


def _ssh_problem(stderr: str, *, host: str, port: int | None, user: str | None, key: str | None,
                 timeout: int) -> str | None:
    """One line for an ssh-level failure in ``stderr`` (None when ssh itself reported none)."""
    text = stderr or ""
    spec = f"[{host}]:{port}" if port and port != 22 else host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "HOST IDENTIFICATION HAS CHANGED" in text:
        return (f"the host key of {spec} does not match the one in known_hosts (REMOTE HOST IDENTIFICATION HAS "
                f"CHANGED); if the device was reinstalled, remove the old key with: ssh-keygen -R '{spec}', then "
                "connect once by hand to accept the new one")
    if "Host key verification failed" in text or re.search(r"No \S+ host key is known", text):
        return (f"the host key of {spec} is not in known_hosts and strict checking is on; connect once by hand "
                f"(ssh {'-p ' + str(port) + ' ' if port else ''}{user + '@' if user else ''}{host}) to check and "
                "accept it, or add ssh_options = [\"StrictHostKeyChecking=accept-new\"] to the profile")
    m = re.search(r"Permission denied \(([^)]*)\)", text)
    if m:
        who = f"{user}@{host}" if user else host
        if key:
            return (f"{who} refused the key {key} (Permission denied ({m.group(1)})); add {key}.pub to "
                    f"~/.ssh/authorized_keys of {user or 'that user'} on the device (ssh-copy-id -i {key} "
                    f"{'-p ' + str(port) + ' ' if port else ''}{who}), or set key/user in the profile")
        return (f"{who} refused your ssh keys (Permission denied ({m.group(1)})); set key = \"~/.ssh/...\" in the "
                "profile, or copy your public key there with ssh-copy-id")
    m = re.search(r"Warning: Identity file (.+) not accessible: (.+)", text)
    if m:
        return f"the key {m.group(1).strip()} cannot be read ({m.group(2).strip()}); fix key in the profile"
    m = re.search(r"Could not resolve hostname (\S+?):? (.+)", text)
    if m:
        return f"cannot resolve the host name {m.group(1)} ({m.group(2).strip()}); check host in the profile"
    m = re.search(r"connect to host (\S+) port (\d+): (.+)", text)
    if m:
        return (f"cannot connect to {m.group(1)} port {m.group(2)}: {m.group(3).strip()} (ConnectTimeout "
                f"{timeout} s); check that the device is on and runs sshd, and host/port in the profile")
    for needle in _LOST:
        if needle in text:
            last = [ln.strip() for ln in text.splitlines() if needle in ln][0]
            return f"lost the connection to {spec} ({last[:120]})"
    return None


def _home_path(path: str) -> str:
    """A shell word for a path on the device: ``~/x`` becomes ``"$HOME"/x``, anything else is quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class SshDevice:
    """A device reached with ``ssh``. ``host`` may be an alias of ``~/.ssh/config``; ``port``, ``user``
    and ``key`` override it when given. Nothing connects until the first call."""

    def __init__(self, host: str, *, port: int | None = None, user: str | None = None, key: str | None = None,
                 ssh_options: list[str] | tuple[str, ...] = (), workdir: str | None = None,
                 python: str | None = None, name: str | None = None, connect_timeout: int = CONNECT_TIMEOUT,
                 multiplex: bool = True) -> None:
        if not host or host.startswith("-"):
            raise FcbenchError(f"ssh device: bad host {host!r}; give a host name, an address or an ssh config alias")
        self.host, self.port, self.user = host, port, user
        self.key = str(Path(key).expanduser()) if key else None
        self.key_text = key
        self.ssh_options = list(ssh_options)
        self.workdir = (workdir or "fcbench-work").removeprefix("~/")
        self.python_cmd = python or "python3"
        self.name = name or host
        self.connect_timeout = connect_timeout
        # the profile's own ControlMaster/ControlPath win (ssh takes an option's first value): no master of ours
        self.multiplex = multiplex and not any(o.lower().startswith(("controlmaster", "controlpath"))
                                               for o in self.ssh_options)
        self.location = ""  # the profile file, for messages
        self.session_dir = f"{self.workdir.rstrip('/')}/session-{uuid.uuid4().hex[:12]}"
        self._abs_session = ""
        self._python: list[str] | None = None
        self._made = False  # the session's work dir exists on the device
        self._control: Path | None = None
        self._master: subprocess.Popen | None = None

    @classmethod
    def from_profile(cls, profile: Any) -> SshDevice:
        """From an inventory profile (``driver = "ssh"``): host, port, user, key, ssh_options, workdir and
        python (default ``python3``). Connects nothing."""
        dev = cls(profile.host, port=profile.port, user=profile.user, key=profile.key,
                  ssh_options=profile.ssh_options, workdir=profile.workdir, python=profile.python, name=profile.name)
        dev.location = getattr(profile, "location", "") or ""
        return dev

    @staticmethod
    def available() -> tuple[bool, str]:
        if shutil.which("ssh") is None:
            return False, "the OpenSSH client (ssh) is not installed here; install it (apt install openssh-client)"
        return True, ""

    # --- ssh itself ---------------------------------------------------------------------------

    def where(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}" + (f":{self.port}" if self.port else "")

    def _error(self, what: str) -> SshError:
        return SshError(f"ssh device {self.name} ({self.where()}): {what}")

    def _args(self, *, master: bool = False) -> list[str]:
        args = ["ssh"]
        for opt in self.ssh_options:
            args += ["-o", opt]
        args += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.port:
            args += ["-p", str(self.port)]
        if self.user:
            args += ["-l", self.user]
        if self.key:
            args += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if self._control is not None:
            args += ["-o", f"ControlPath={self._control / 'c'}", "-o", f"ControlMaster={'yes' if master else 'no'}"]
        return [*args, self.host]

    def _problem(self, stderr: str) -> str | None:
        return _ssh_problem(stderr, host=self.host, port=self.port, user=self.user, key=self.key_text,
                            timeout=self.connect_timeout)

    def _run(self, script: str, *, stdin: Any = None, stdout: Any = subprocess.PIPE,
             timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*self._args(), script], stdin=stdin if stdin is not None else subprocess.DEVNULL,
                              stdout=stdout, stderr=subprocess.PIPE, timeout=timeout)

    def _start_master(self) -> None:
        """One connection for the whole session (the calls after it skip the handshake); its failure is
        the connection's problem, in one line."""
        self._control = Path(tempfile.mkdtemp(prefix="fcb-ssh-"))
        err = self._control / "master.err"
        with open(err, "wb") as errf:
            self._master = subprocess.Popen([*self._args(master=True)[:-1], "-N", self.host],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
        # a device dropped or left at exit without cleanup() must not leave its connection running
        weakref.finalize(self, _end_master, self._master, self._control)
        deadline = time.monotonic() + self.connect_timeout + 30  # the handshake after the TCP connect
        while not (self._control / "c").exists():
            if self._master.poll() is not None or time.monotonic() > deadline:
                self._stop_master()
                text = err.read_text(errors="replace")
                shutil.rmtree(self._control, ignore_errors=True)
                self._control = None
                raise self._error(self._problem(text) or f"ssh failed: {_last(text) or 'no connection'}")
            time.sleep(0.02)

    def _master_ended(self, wait: float = 2.0) -> bool:
        """Whether the session's master connection is gone (a command through it exited 255 without a word:
        the master may take a moment to notice the server is gone)."""
        assert self._master is not None
        try:
            self._master.wait(wait)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _stop_master(self) -> None:
        if self._master is not None:
            if self._master.poll() is None:
                self._master.terminate()
                try:
                    self._master.wait(5)
                except subprocess.TimeoutExpired:
                    self._master.kill()
                    self._master.wait()
            self._master = None

    # --- the session --------------------------------------------------------------------------

    def _ensure(self) -> None:
        """Connect, make the session's work dir, check python, push fcbench once: every problem is one line."""
        if self._python is not None:
            return
        if self.multiplex and self._control is None:
            self._start_master()
        path, _ = package_zip()
        lib = f"{self.workdir.rstrip('/')}/lib"
        zip_rel = f"{lib}/{path.name}"
        py = _home_path(self.python_cmd)
        script = (f"mkdir -p {shlex.quote(self.session_dir)} {shlex.quote(lib)} || exit 3\n"
                  f'echo "home=$HOME"\n'
                  f"if [ -f {shlex.quote(zip_rel)} ]; then echo zip=1; else echo zip=0; fi\n"
                  f"{py} -c 'import sys; print(\"py=%d.%d\" % sys.version_info[:2])'\n"
                  'echo "pyrc=$?"\n')
        p = self._run(script, timeout=self.connect_timeout + 60)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if p.returncode == 255 or (p.returncode != 0 and self._problem(err)):
            raise self._error(self._problem(err) or f"ssh failed: {_last(err)}")
        if p.returncode == 3:
            raise self._error(f"cannot make the work dir {_show(self.session_dir)} ({_last(err)}); set workdir in the "
                              "profile to a writable folder")
        self._made = True
        found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        home = found.get("home", "")
        fix = f"set python = \"/path/to/python3\" in {self.location or 'the profile'}"
        if found.get("pyrc") == "127" or "py" not in found:
            raise self._error(f"python '{self.python_cmd}' not found on the device (exit {found.get('pyrc', '?')}); "
                              f"install python3 there (>= {'.'.join(map(str, MIN_PYTHON))}) or {fix}")
        version = tuple(int(v) for v in found["py"].split("."))
        if version < MIN_PYTHON:
            raise self._error(f"python '{self.python_cmd}' on the device is {found['py']}; the bench worker needs "
                              f">= {'.'.join(map(str, MIN_PYTHON))}: install a newer one or {fix}")
        self._abs_session = f"{home}/{self.session_dir}" if not self.session_dir.startswith("/") else self.session_dir
        if found.get("zip") != "1":
            self._push(path, zip_rel)
        python = self.python_cmd
        if python.startswith("~/"):
            python = f"{home}/{python[2:]}"
        zip_abs = zip_rel if zip_rel.startswith("/") else f"{home}/{zip_rel}"
        self._python = [python, zip_abs]

    @property
    def python(self) -> list[str]:
        """The command that runs python on the device with fcbench importable (from the pushed zip)."""
        self._ensure()
        assert self._python is not None
        return list(self._python)

    def _remote(self, remote: str) -> str:
        """A path on the device, relative to the login's home (what ssh's commands start in)."""
        return remote if remote.startswith("/") else f"{self.session_dir}/{remote}"

    # --- the Device protocol ------------------------------------------------------------------

    def push(self, local: str, remote: str) -> None:
        self._ensure()
        self._push(Path(local), self._remote(remote))

    def _push(self, src: Path, dst: str) -> None:
        """``src`` (a file or a folder) to ``dst`` (relative to the login's home): through ssh's standard input."""
        parent = dst.rsplit("/", 1)[0] if "/" in dst else "."
        q, qp = shlex.quote(dst), shlex.quote(parent)
        if src.is_dir():
            script = f"mkdir -p {q} && tar -xf - -C {q}"
            with tempfile.TemporaryFile() as errf:
                proc = subprocess.Popen([*self._args(), script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=errf)
                assert proc.stdin is not None
                try:
                    with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                        tar.add(str(src), arcname=".")
                    proc.stdin.close()
                except BrokenPipeError:  # the device stopped reading: its stderr says why
                    pass
                rc = proc.wait()
                errf.seek(0)
                err_b = errf.read()
        else:
            tmp = shlex.quote(f"{dst}.part-{uuid.uuid4().hex[:6]}")
            script = f"mkdir -p {qp} && cat > {tmp} && mv -f {tmp} {q} || {{ rm -f {tmp}; exit 1; }}"
            with open(src, "rb") as f:
                p = self._run(script, stdin=f)
            rc, err_b = p.returncode, p.stderr
        if rc != 0:
            err = err_b.decode(errors="replace")
            if "No space left" in err or "Disk quota exceeded" in err:
                raise self._error(f"no space left on the device while copying {src.name} to {_show(dst)}; free space "
                                  "there or set workdir in the profile to a bigger disk")
            why = self._problem(err) or _last(err) or f"exit {rc}"
            raise self._error(f"cannot copy {src} to {_show(dst)}: {why}")

    def pull(self, remote: str, local: str) -> None:
        self._ensure()
        src = self._remote(remote)
        q = shlex.quote(src)
        script = (f"if [ -d {q} ]; then printf D; tar -C {q} -cf - .; elif [ -f {q} ]; then printf F; cat {q}; "
                  f"else echo 'no such file' >&2; exit 3; fi")
        dst = Path(local)
        dst.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([*self._args(), script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        kind = proc.stdout.read(1)
        if kind == b"F":
            part = dst.with_name(dst.name + ".part")
            with open(part, "wb") as f:
                shutil.copyfileobj(proc.stdout, f)
        elif kind == b"D":
            data = io.BytesIO(proc.stdout.read())
        _, err_b = proc.communicate()
        err = err_b.decode(errors="replace")
        if proc.returncode == 3:
            raise FileNotFoundError(f"ssh device {self.name}: no file {_show(src)} on the device")
        if proc.returncode != 0 or kind not in (b"F", b"D"):
            if kind == b"F":
                part.unlink(missing_ok=True)
            raise self._error(f"cannot copy {_show(src)} from the device: "
                              + (self._problem(err) or _last(err) or f"exit {proc.returncode}"))
        if kind == b"F":
            part.replace(dst)
        else:
            dst.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=data, mode="r:") as tar:
                tar.extractall(dst, filter="data")

    def exec(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        """``argv`` (quoted with ``shlex.join``) in the session's work dir. A timeout stops the command on
        the device too (``timeout`` there, when it has one): exit 124. A connection lost on the way:
        ssh's exit 255, with a last stderr line saying so."""
        self._ensure()
        cmd = shlex.join(argv)
        if timeout is not None:
            secs = max(1, int(timeout + 0.999))
            cmd = (f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {secs} {cmd}; "
                   f"else exec {cmd}; fi")
        script = f"cd {shlex.quote(self.session_dir)} && {cmd}"
        try:
            p = self._run(script, timeout=None if timeout is None else timeout + 15)
        except subprocess.TimeoutExpired as exc:
            return 124, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out after {timeout} s"
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if p.returncode == 255:
            problem = self._problem(err)
            if not problem and self._master is not None and self._master_ended():
                problem = f"lost the connection to {self.where()} (the session's ssh connection ended)"
            if problem:
                err += f"\nssh device {self.name}: {problem}"
        elif p.returncode == 124 and timeout is not None:
            err += f"\ntimed out after {timeout} s"
        return p.returncode, out, err

    def info(self) -> dict[str, Any]:
        """One ssh call reading the machine (uname, os-release, cpuinfo, cores, cpufreq, governor, thermal
        zones, hostname, memory), parsed here: the keys of ``machine_info()`` where readable, plus
        hostname, model, cpu_max_khz, governor, temperature_c and the fingerprint."""
        p = self._run(_PROBE, timeout=self.connect_timeout + 30)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if p.returncode == 255 or (p.returncode != 0 and self._problem(err)):
            raise self._error(self._problem(err) or f"ssh failed: {_last(err)}")
        return parse_probe(out, driver="ssh")

    def cleanup(self) -> None:
        """Remove this session's work dir on the device and close the connection (the fcbench zip stays in
        ``<workdir>/lib`` for the next session)."""
        if self._made:
            try:
                self._run(f"rm -rf {shlex.quote(self.session_dir)}", timeout=self.connect_timeout + 30)
            except subprocess.TimeoutExpired:
                pass
            self._made = False
        self._python = None
        self._stop_master()
        if self._control is not None:
            shutil.rmtree(self._control, ignore_errors=True)
            self._control = None



def _end_master(proc: subprocess.Popen, control: Path) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(control, ignore_errors=True)


def _show(path: str) -> str:
    """A path on the device as a user would type it (relative ones are in the login's home)."""
    return path if path.startswith("/") else f"~/{path}"


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def _last(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


# --- info: one probe, parsed here ---------------------------------------------------------------

_PROBE = r"""
echo '@@uname'; uname -m; uname -s; uname -r
echo '@@hostname'; hostname 2>/dev/null || cat /proc/sys/kernel/hostname
echo '@@model'; tr -d '\0' 2>/dev/null < /proc/device-tree/model; echo
echo '@@os'; cat /etc/os-release 2>/dev/null
echo '@@cpuinfo'; cat /proc/cpuinfo 2>/dev/null
echo '@@meminfo'; cat /proc/meminfo 2>/dev/null
echo '@@cores'; getconf _NPROCESSORS_ONLN 2>/dev/null; nproc 2>/dev/null
echo '@@maxfreq'
for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do [ -r "$f" ] && echo "$f $(cat "$f")"; done
echo '@@governor'; cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null
echo '@@thermal'; cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null
echo '@@end'
"""


def parse_probe(text: str, driver: str = "ssh") -> dict[str, Any]:
    """The probe's output as an info dict (``machine_info()``'s keys, so the fingerprint of the same
    machine read here or over ssh is the same)."""
    from fcbench.devices.fingerprint import ISA_FLAGS

    parts: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            parts[current] = []
        elif current:
            parts[current].append(line)

    def section(name: str) -> list[str]:
        return [ln for ln in parts.get(name, []) if ln.strip()]

    uname = section("uname") + ["", "", ""]
    model_cpu, flags = parse_cpuinfo("\n".join(parts.get("cpuinfo", [])))
    cores = [int(v) for v in section("cores") if v.strip().isdigit()]
    info: dict[str, Any] = {
        "driver": driver,
        "hostname": (section("hostname") or [""])[0].strip(),
        "cpu": model_cpu or uname[0] or "unknown CPU",
        "arch": uname[0],
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": cores[0] if cores else None,
        "usable_cores": cores[1] if len(cores) > 1 else (cores[0] if cores else None),
        "memory_gb": parse_meminfo("\n".join(parts.get("meminfo", []))),
        "system": uname[1],
        "os": parse_os_release("\n".join(parts.get("os", []))) or f"{uname[1]} {uname[2]}".strip(),
        "kernel": uname[2],
    }
    model = " ".join(section("model")).strip()
    if model:
        info["model"] = model
    emulated = _emulation(uname[0], "\n".join(parts.get("cpuinfo", [])))
    if emulated:
        info["emulated"] = emulated  # its times mean nothing
    khz: dict[int, int] = {}
    for line in section("maxfreq"):
        m = re.search(r"cpu(\d+)/cpufreq/cpuinfo_max_freq (\d+)", line)
        if m:
            khz[int(m.group(1))] = int(m.group(2))
    if khz:
        info["cpu_max_khz"] = [khz[c] for c in sorted(khz)]
    gov = section("governor")
    if gov:
        info["governor"] = gov[0].strip()
    temps = [int(t) / 1000.0 for t in section("thermal") if t.strip().lstrip("-").isdigit()]
    if temps:
        info["temperature_c"] = max(temps)
    info["fingerprint"] = fingerprint(info)
    return info


def _emulation(arch: str, cpuinfo: str) -> str | None:
    """``"qemu-user"`` when the kernel's /proc/cpuinfo describes another ISA than the one ``uname -m``
    runs (qemu-user passes the host's file through: an aarch64 guest on an x86 host reads x86 'vendor_id'
    and 'flags'; an x86 guest on an ARM host reads 'CPU implementer')."""
    keys = {line.partition(":")[0].strip().lower() for line in cpuinfo.splitlines() if ":" in line}
    x86_text = "vendor_id" in keys or "flags" in keys
    arm_text = "cpu implementer" in keys or "features" in keys
    x86_arch = arch in ("x86_64", "i386", "i486", "i586", "i686")
    arm_arch = arch.startswith(("aarch64", "arm"))
    if (arm_arch and x86_text and not arm_text) or (x86_arch and arm_text and not x86_text):
        return "qemu-user"
    return None
