"""A fleet of two real ssh hosts (two OpenSSH servers on loopback, started by the tests): both bench at once
into one store, and one killed mid-run keeps the rows it measured while the other finishes."""

from __future__ import annotations

import shutil
import sys
import time

import pytest
from sshd import start_sshd


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Three copies of one tiny ONNX model (three cells per device)."""
    pytest.importorskip("onnxruntime")
    from conftest import TINY_R18, train_tiny

    import fcbench

    root = tmp_path_factory.mktemp("fleet")
    ckpt = train_tiny(root, TINY_R18)
    fcbench.convert(checkpoint=str(ckpt), to=["onnx"], out=str(root / "a0"))
    (onnx,) = (root / "a0").glob("*.onnx")
    out = [onnx]
    for i in (1, 2):
        d = root / f"a{i}"
        d.mkdir()
        for f in (root / "a0").iterdir():
            shutil.copy2(f, d / f.name)
        out.append(d / onnx.name)
    return out


def _profile(server, folder) -> str:
    opts = ", ".join(f'"{o}"' for o in server.options())
    return (f'driver = "ssh"\nhost = "{server.host}"\nport = {server.port}\nuser = "{server.user}"\n'
            f'key = "{server.key}"\nssh_options = [{opts}]\nworkdir = "{folder}"\npython = "{sys.executable}"\n'
            '[measure]\nretries = 0\ntimeout_s = 120\n')


def test_two_ssh_hosts_at_once_and_one_killed_mid_run(tmp_path, monkeypatch, artifacts):
    import fcbench
    from fcbench.hooks import Hooks

    a, b = start_sshd(tmp_path / "a"), start_sshd(tmp_path / "b")
    try:
        devices = tmp_path / "devices"
        devices.mkdir()
        (devices / "host-a.toml").write_text(_profile(a, tmp_path / "work-a"))
        (devices / "host-b.toml").write_text(_profile(b, tmp_path / "work-b"))
        monkeypatch.chdir(tmp_path)
        killed: list[float] = []

        def on_event(kind, cell):
            if kind == "cell" and not killed and cell.extra.get("device") == "host-b" and cell.status == "ok":
                b.kill()  # the board loses power after its first cell
                killed.append(time.monotonic())

        progress: dict[str, list[tuple[int, int, str]]] = {}
        t0 = time.monotonic()
        res = fcbench.bench(artifacts=[str(p) for p in artifacts], backends=["ort-cpu"], device=["host-a", "host-b"],
                            runs=5, warmup=1, min_seconds=0.5, threads=1,
                            hooks=Hooks(on_event=on_event,
                                        on_progress=lambda task, done, total, info:
                                        progress.setdefault(task, []).append((done, total, info))))
        wall = time.monotonic() - t0
        assert killed, "host-b never finished a cell"
        by_dev: dict[str, list] = {}
        for c in res.cells:
            by_dev.setdefault(c.extra.get("device") or ("host-b" if "host-b" in c.reason else "host-a"), []).append(c)
        assert [c.status for c in by_dev["host-a"]] == ["ok", "ok", "ok"]
        b_status = [c.status for c in by_dev["host-b"]]
        assert b_status[0] == "ok" and "failed" in b_status[1:] and len(b_status) == 3
        lost = [c for c in by_dev["host-b"] if c.status == "failed"]
        assert all("host-b" in c.reason for c in lost)
        rows = res.rows
        assert {r.device for r in rows} == {"host-a", "host-b"}
        ok_rows = [r for r in rows if r.extra["status"] == "ok"]
        assert len(ok_rows) == 4 and all(r.device_fingerprint and r.device_info.get("arch") for r in ok_rows)
        assert wall < 300
        # live progress, one task per device: each cell as it starts, then how the device ended
        a_progress = progress["device host-a"]
        assert [d for d, _, _ in a_progress] == [0, 1, 2, 3] and a_progress[-1][2] == "done"
        assert progress["device host-b"][-1][:2] == (3, 3) and progress["device host-b"][-1][2].startswith("lost: ")
    finally:
        a.kill()
        if b.proc.poll() is None:
            b.kill()


def test_devices_check_and_bench_over_ssh_through_the_cli(cli, in_tmp, artifacts, tmp_path_factory):
    """`fcbench devices check` and `bench --device` against a real sshd: the device's own answer for each
    backend, rows named after the device with its fingerprint; an unreachable one is one line, exit 1."""
    import json

    server = start_sshd(tmp_path_factory.mktemp("sshd-cli"))
    try:
        (in_tmp / "devices").mkdir()
        profile = _profile(server, in_tmp / "work")
        (in_tmp / "devices" / "box.toml").write_text(
            profile.replace("[measure]", 'backends = ["ort-cpu", "openvino-f32"]\n[measure]'))
        r = cli("devices", "check", "box", "--format", "json")
        assert r.code == 0, r.err
        (check,) = json.loads(r.out)
        assert check["reachable"] and check["info"]["arch"] == "x86_64" and check["driver"] == "ssh"
        runs = {b["backend"]: b for b in check["backends"]}
        assert runs["ort-cpu"]["runs"] and runs["ort-cpu"]["versions"].get("onnxruntime")
        r = cli("bench", artifacts[0], "--backend", "ort-cpu", "--device", "box", "--runs", "3", "--warmup", "1",
                "--min-seconds", "0", "--threads", "1", "--store", "s.sqlite")
        assert r.code == 0, r.err
        from fcbench.results.store import Store

        with Store(in_tmp / "s.sqlite") as s:
            (row,) = s.query(kind="speed")
        assert row["device"] == "box" and row["device_fingerprint"] and len(row["samples_ms"]) >= 3
    finally:
        server.kill()
    r = cli("devices", "check", "box")
    assert r.code == 1 and "Connection refused" in r.err and f"port {server.port}" in r.err
