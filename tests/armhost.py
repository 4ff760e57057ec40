"""A real aarch64 host for tests: a Debian bookworm arm64 root (mmdebstrap) run under qemu-user
(binfmt_misc), with the genuine aarch64 wheels of ONNX Runtime and LiteRT in a venv and its own sshd on
a free loopback port. Times under emulation mean nothing; what it proves is the path (push, arch
detection, ARM builds, parity).

The root is built once and cached in ``~/.cache/fcbench-tests/armhost-<hash of the recipe>`` (built in a
temp dir, a marker written last, then renamed, so a killed build is never reused). ``arm_host`` is a
session fixture giving a ``tests/sshd.py`` ``SshServer`` whose ``profile()`` runs the chroot's venv
python with ``arch = "aarch64"``. It skips only when a genuine part is absent, naming it: not root, no
qemu-user-static / mmdebstrap, binfmt_misc not mountable, no network to the Debian mirror or to PyPI.
A failed build or a failed start fails.

``python tests/armhost.py`` builds (or finds) the cached root and prints its path and the time taken; it needs
no pytest, so ``.ci/run`` starts it in the background while pip installs. Builds take a lock file beside the
root: a second caller waits for the first and uses its root.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

try:  # importable without pytest: .ci/run starts the build in the background while pip installs
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

sys.path.insert(0, str(Path(__file__).parent))
from sshd import SshServer, _descendants, _free_port, keygen  # noqa: E402

MIRROR = "http://deb.debian.org/debian"
RECIPE = {
    "suite": "bookworm", "arch": "arm64", "variant": "apt", "mirror": MIRROR,
    "include": ["python3", "python3-venv", "python3-pip", "openssh-server"],
    # the host's versions, so outputs can be compared with the host's runtimes
    "pip": ["onnxruntime==1.32.0", "ai-edge-litert==2.3.0", "numpy==2.4.6"],
    "venv": "/opt/fcbench-venv",
}
VENV_PYTHON = f"{RECIPE['venv']}/bin/python"
MARKER = ".fcbench-armhost-built"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fcbench-tests"


class Absent(Exception):
    """A genuine part of the ARM host is missing (the fixture skips naming it)."""


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def root_path() -> Path:
    return CACHE / f"armhost-{recipe_hash()}"


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-3000:]}")
    return proc


def check_parts(*, build: bool) -> None:
    """Raise Absent naming the first missing part (root, qemu-user-static, mmdebstrap, binfmt_misc, network)."""
    if os.geteuid() != 0:
        raise Absent("the ARM host needs root (chroot, mounts, binfmt_misc)")
    if not QEMU_CONF.exists() or not shutil.which("qemu-aarch64-static"):
        raise Absent("qemu-user-static is not installed (apt-get install qemu-user-static)")
    if build and not shutil.which("mmdebstrap"):
        raise Absent("mmdebstrap is not installed (apt-get install mmdebstrap)")
    if build and not shutil.which("arch-test"):  # mmdebstrap recommends it and refuses a foreign arch without it
        raise Absent("arch-test is not installed (apt-get install arch-test; mmdebstrap needs it for arm64)")
    if not (BINFMT / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not (BINFMT / "register").exists():
            raise Absent(f"binfmt_misc cannot be mounted on {BINFMT}: {proc.stderr.strip()}")
    if not (BINFMT / "qemu-aarch64").exists():
        line = "".join(x for x in QEMU_CONF.read_text().splitlines(keepends=True) if not x.startswith("#"))
        try:
            (BINFMT / "register").write_text(line.strip() + "\n")
        except OSError as e:
            raise Absent(f"cannot register qemu-aarch64 with binfmt_misc: {e}") from None
    if build:
        for what, url in [("the Debian mirror", f"{MIRROR}/dists/{RECIPE['suite']}/Release"),
                          ("PyPI", os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
                           + "/onnxruntime/")]:
            try:
                urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15).close()
            except OSError as e:
                raise Absent(f"no network to {what} ({url}: {e})") from None


def _mounted(path: Path) -> bool:
    real = os.path.realpath(path)
    for line in Path("/proc/mounts").read_text().splitlines():
        if line.split()[1] == real:
            return True
    return False


def mount_guest(root: Path) -> list[Path]:
    """/proc and /dev into the root (not /sys: with it, ORT's cpuinfo crashes under qemu-user)."""
    done = []
    try:
        (root / "proc").mkdir(exist_ok=True)
        _run(["mount", "-t", "proc", "proc", str(root / "proc")], "mounting /proc in the ARM root")
        done.append(root / "proc")
        (root / "dev").mkdir(exist_ok=True)
        _run(["mount", "--rbind", "/dev", str(root / "dev")], "binding /dev into the ARM root")
        _run(["mount", "--make-rslave", str(root / "dev")], "making the ARM root's /dev a slave")
        done.append(root / "dev")
    except BaseException:
        unmount_guest(done)
        raise
    return done


def unmount_guest(points: list[Path]) -> None:
    for p in reversed(points):
        if _mounted(p):
            proc = subprocess.run(["umount", "-R", str(p)], capture_output=True, text=True)
            if proc.returncode != 0:
                subprocess.run(["umount", "-R", "-l", str(p)], capture_output=True, text=True)


def _safe_rmtree(root: Path) -> None:
    """Remove a (failed) root, never while anything is mounted under it (a bound /dev would go with it)."""
    real = os.path.realpath(root)
    busy = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1] == real or line.split()[1].startswith(real + "/")]
    if busy:
        raise RuntimeError(f"not removing {root}: still mounted there: {busy}")
    shutil.rmtree(root, ignore_errors=True)


def build_root() -> tuple[Path, float]:
    """The cached root, built when absent. Returns (path, seconds spent building; 0 when cached)."""
    root = root_path()
    if (root / MARKER).exists():
        return root, 0.0
    check_parts(build=True)
    t0 = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: a second caller waits, then finds the root
        if (root / MARKER).exists():
            return root, time.monotonic() - t0
        _build(root)
    return root, time.monotonic() - t0


def _build(root: Path) -> None:
    for stale in CACHE.glob("armhost-*.building-*"):  # a killed build's leftovers (a day old: not running)
        if time.time() - stale.stat().st_mtime > 86400:
            unmount_guest([stale / "proc", stale / "dev"])
            _safe_rmtree(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f"{root.name}.building-", dir=CACHE))
    points: list[Path] = []
    try:
        _run(["mmdebstrap", f"--arch={RECIPE['arch']}", f"--variant={RECIPE['variant']}",
              f"--include={','.join(RECIPE['include'])}", RECIPE["suite"], str(tmp), RECIPE["mirror"]],
             "mmdebstrap of the arm64 root", timeout=1800)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", tmp / "etc/ssl/certs/ca-certificates.crt")
        # pip inside reaches the index the host's pip uses (PyPI unless PIP_INDEX_URL says otherwise)
        conf = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt", "default-timeout = 180",
                "disable-pip-version-check = true"]
        for var, key in [("PIP_INDEX_URL", "index-url"), ("PIP_EXTRA_INDEX_URL", "extra-index-url")]:
            if os.environ.get(var, "").startswith(("http://", "https://")):
                conf.append(f"{key} = {os.environ[var]}")
        (tmp / "etc/pip.conf").write_text("\n".join(conf) + "\n")
        points = mount_guest(tmp)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8"}
        _run(["chroot", str(tmp), "/usr/bin/python3", "-m", "venv", RECIPE["venv"]], "making the venv in the ARM root",
             env=env, timeout=600)
        _run(["chroot", str(tmp), VENV_PYTHON, "-m", "pip", "install", "-q", "--only-binary=:all:", *RECIPE["pip"]],
             "pip install of the aarch64 wheels in the ARM root", env=env, timeout=1800)
        unmount_guest(points)
        points = []
        (tmp / MARKER).write_text(json.dumps(RECIPE) + "\n")
        try:
            tmp.rename(root)
        except OSError:  # another session finished first: use its root
            if not (root / MARKER).exists():
                raise
            _safe_rmtree(tmp)
    except BaseException:
        unmount_guest(points)
        _safe_rmtree(tmp)
        raise


class ArmHost(SshServer):
    """An sshd inside the arm64 root; ``profile()`` runs the root's venv python, arch aarch64."""

    root: Path
    points: list[Path]

    def profile(self, **over):
        return super().profile(**{"python": VENV_PYTHON, "arch": "aarch64", "workdir": f"/tmp/{self.dir.name}/work",
                                  **over})

    def chroot(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(self.root), *argv], capture_output=True, text=True, timeout=timeout)

    def kill(self) -> None:
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)
        unmount_guest(self.points)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_arm_host(root: Path) -> ArmHost:
    """sshd inside ``root`` (chroot) on 127.0.0.1 and a free port, with a host key and a user key made for
    this session in ``root/tmp/fcbench-sshd-<port>`` (the work dir goes there too)."""
    check_parts(build=False)
    port = _free_port()
    folder = root / "tmp" / f"fcbench-sshd-{port}"
    folder.mkdir(parents=True)
    inside = f"/tmp/{folder.name}"
    host_key, user_key = keygen(folder / "host_ed25519"), keygen(folder / "user_ed25519")
    (folder / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    (root / "run/sshd").mkdir(parents=True, exist_ok=True)
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {inside}/host_ed25519", f"PidFile {inside}/sshd.pid",
        f"AuthorizedKeysFile {inside}/authorized_keys", "StrictModes no", "UsePAM no",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "LogLevel VERBOSE", "MaxStartups 50", "MaxSessions 50", ""]))
    pub = Path(f"{host_key}.pub").read_text().split(" ")
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    points = mount_guest(root)
    log = open(folder / "sshd.log", "wb")
    try:
        proc = subprocess.Popen(["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-f", f"{inside}/sshd_config"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    except BaseException:
        unmount_guest(points)
        raise
    finally:
        log.close()
    host = ArmHost(dir=folder, port=port, user="root", key=user_key, known_hosts=known, proc=proc)
    host.root, host.points = root, points
    deadline = time.monotonic() + 60  # sshd starts slowly under emulation
    while True:
        if proc.poll() is not None:
            unmount_guest(points)
            raise RuntimeError(f"sshd in the ARM root exited {proc.returncode}: {(folder / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                host.kill()
                raise RuntimeError(f"sshd in the ARM root did not listen on {port}: "
                                   f"{(folder / 'sshd.log').read_text()}") from None
            time.sleep(0.1)
    return host


def _arm_host():
    try:
        check_parts(build=not (root_path() / MARKER).exists())
    except Absent as e:
        pytest.skip(str(e))
    root, _ = build_root()
    host = start_arm_host(root)
    yield host
    host.kill()


arm_host = pytest.fixture(scope="session")(_arm_host) if pytest else None


if __name__ == "__main__":
    try:
        path, took = build_root()
    except Absent as e:
        sys.exit(f"skipped: {e}")
    print(f"{path} ({f'built in {took:.0f} s' if took else 'cached'})")
