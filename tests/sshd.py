"""A real OpenSSH server for tests: ``sshd -D -e -f CFG`` on a free loopback port, its own host key,
a user key in its own ``authorized_keys`` and a ``known_hosts`` with the host key, all in a temp dir,
so nothing touches ~/.ssh. Skips (naming openssh-server) only when ``/usr/sbin/sshd`` is absent.

``sshd_server`` is a session-scoped fixture; ``start_sshd(folder)`` starts another (a test that
kills its server uses its own). ``SshServer.profile(**over)`` is an inventory profile for it.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

try:  # importable without pytest: .ci/run builds the ARM root (tests/armhost.py) in the background
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    dir: Path
    port: int
    user: str
    key: Path  # the user's private key (its .pub is in authorized_keys)
    known_hosts: Path
    proc: subprocess.Popen
    host: str = "127.0.0.1"

    def options(self, known_hosts: Path | None = None) -> list[str]:
        return [f"UserKnownHostsFile={known_hosts or self.known_hosts}", "GlobalKnownHostsFile=/dev/null",
                "StrictHostKeyChecking=yes"]

    def profile(self, **over):
        from fcbench.devices.inventory import parse_profile

        doc = {"driver": "ssh", "host": self.host, "port": self.port, "user": self.user, "key": str(self.key),
               "ssh_options": self.options(), "workdir": str(self.dir / "work")}
        doc.update(over)
        return parse_profile("test-sshd", {k: v for k, v in doc.items() if v is not None},
                             location=str(self.dir / "test-sshd.toml"))

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")

    def kill(self) -> None:
        """The server and every process under it (the connections' sshd and what they run), at once."""
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fcbench-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def start_sshd(folder: Path) -> SshServer:
    if not Path(SSHD).exists():
        pytest.skip(f"{SSHD} is not installed (apt install openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    host_key, user_key = keygen(folder / "host_ed25519"), keygen(folder / "user_ed25519")
    (folder / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation dir (Debian makes it at boot)
    port = _free_port()
    user = getpass.getuser()
    cfg = folder / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "StrictModes no", "UsePAM no",
        "PermitRootLogin prohibit-password" if user == "root" else "PermitRootLogin no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "LogLevel VERBOSE", "MaxStartups 50", "MaxSessions 50", ""]))
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text().split(' ')[0]} "
                     f"{Path(f'{host_key}.pub').read_text().split(' ')[1]}\n")
    log = open(folder / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {(folder / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sshd did not listen on {port}: {(folder / 'sshd.log').read_text()}") from None
            time.sleep(0.02)
    return SshServer(dir=folder, port=port, user=user, key=user_key, known_hosts=known, proc=proc)


def _sshd_server(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.kill()


sshd_server = pytest.fixture(scope="session")(_sshd_server) if pytest else None
