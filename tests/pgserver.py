"""A real PostgreSQL server for tests: ``initdb`` in a temp dir, ``pg_ctl start`` on 127.0.0.1 and a free port
(its unix socket in the same dir), stopped at the end of the session. Skips (naming Debian's ``postgresql``
package) only when the server's binaries are absent.

The superuser ``fcbench`` has a password made for this session (TCP connections need it, scram-sha-256);
``PgServer.passfile`` is a ``PGPASSFILE`` holding it, in the temp dir, never in the repository.
``PgServer.database()`` makes a fresh database and returns its URL (with the password, unless asked not to).

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the ``postgres`` user
(which Debian's package makes), or ``nobody``, through ``runuser``, and the temp dir is theirs.

``pg_server`` is a session-scoped fixture (one server, however many modules import it).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USER = "fcbench"


def server_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb") and shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
                      if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    dir: Path
    port: int
    password: str
    bin: Path
    run_as: list[str]  # ['runuser', '-u', 'postgres', '--'] when the tests run as root
    options: str = ""  # the server's -o options (port, addresses, socket dir)
    host: str = "127.0.0.1"
    made: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def socket_dir(self) -> Path:
        return self.dir

    @property
    def passfile(self) -> Path:
        return self.dir / "pgpass"

    def url(self, database: str = USER, *, password: bool = True, scheme: str = "postgresql") -> str:
        auth = f"{USER}:{self.password}" if password else USER
        return f"{scheme}://{auth}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` through psql over the unix socket (trusted); its output, unaligned."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                            "-p", str(self.port), "-U", USER, "-d", database, "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if p.returncode:
            raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout

    def database(self, name: str | None = None, *, password: bool = True) -> str:
        """A new, empty database; its URL."""
        name = name or f"t_{secrets.token_hex(4)}"
        self.psql(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return self.url(name, password=password)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), *args],
                              capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        p = self.pg_ctl("-l", str(self.dir / "server.log"), "-o", self.options, "-w", "-t", "60", "start")
        if p.returncode:
            raise RuntimeError(f"pg_ctl start failed: {p.stderr.strip()} {self.log()[-2000:]}")

    def halt(self) -> None:
        """Stop the server, keeping its data (``start()`` brings it back): a restart or an outage."""
        self.pg_ctl("-m", "fast", "-w", "stop")

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_pg(*, fsync: bool = False) -> PgServer:
    """A new server (``fsync=off`` unless asked: the tests need no durability across a power cut)."""
    bin_dir = server_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL's server (initdb, pg_ctl) is not installed (apt-get install postgresql)")
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    folder = Path(tempfile.mkdtemp(prefix="fcbench-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses root: run it as an unprivileged user who owns the folder
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
        run_as = ["runuser", "-u", user, "--"]
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    password = secrets.token_urlsafe(18)
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o644 if run_as else 0o600)  # initdb (as the server's user) reads it once; removed below
    port = _free_port()
    init = subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", USER,
                           f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                           "--locale=C", "--no-sync"], capture_output=True, text=True, timeout=300)
    pwfile.unlink()
    if init.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()}")
    opts = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
            "-c max_connections=40 -c shared_buffers=16MB" + ("" if fsync else " -c fsync=off"))
    server = PgServer(dir=folder, port=port, password=password, bin=bin_dir, run_as=run_as, options=opts)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)  # also when the session ends without the fixture's teardown
    server.passfile.write_text(f"127.0.0.1:{port}:*:{USER}:{password}\n")
    os.chmod(server.passfile, 0o600)  # libpq ignores a pgpass file others can read
    server.psql(f'CREATE DATABASE "{USER}"')
    deadline = time.monotonic() + 10
    while True:  # TCP answers too (the tests connect there)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return server


_SERVER: list[PgServer] = []


@pytest.fixture(scope="session")
def pg_server():
    if not _SERVER:
        _SERVER.append(start_pg())
    yield _SERVER[0]
    _SERVER[0].stop()
