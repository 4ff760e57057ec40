"""The ssh device driver against a real OpenSSH server (tests/sshd.py): push/exec/pull, a bench and a
``run`` job end to end with fcbench coming from the pushed zip, ``info()``, and bad input (refused
port, refused key, host key mismatch, python missing, numpy missing, a server killed mid-job)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sshd
from sshd import keygen, start_sshd

from fcbench.artifact import read_manifest
from fcbench.backends import get_backend
from fcbench.benchmark.job import BenchJob
from fcbench.benchmark.run import prepared_input
from fcbench.devices.fingerprint import fingerprint, machine_info
from fcbench.devices.inventory import open_device
from fcbench.devices.local import LocalDevice
from fcbench.devices.runner import run_job
from fcbench.devices.ssh import SshDevice, SshError
from fcbench.errors import FcbenchError
from fcbench.plugins import Device

sshd_server = sshd.sshd_server  # the session's server (a fixture)


@pytest.fixture(scope="module")
def onnx(tmp_path_factory) -> Path:
    """A tiny r18 (trained one step), converted to ONNX by fcbench's own convert."""
    pytest.importorskip("onnxruntime")
    from fcbench.conversion import convert
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    root = tmp_path_factory.mktemp("ssh-onnx")
    ckpt = train(TrainConfig(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1],
                                                         "input_size": [32, 32], "embedding_size": 16},
                             data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4},
                             epochs=1, max_steps=1, batch_size=8, lr=0.01, threads=1, out=str(root / "r18")))
    (o,) = convert(ckpt, ["onnx"])
    assert o.status == "ok", o.reason
    return Path(o.file)


def _job(path: Path, **kw) -> BenchJob:
    kw = {"threads": 1, "warmup": 1, "runs": 3, "min_seconds": 0.0, **kw}
    return BenchJob(artifact=path.name, manifest=read_manifest(path).to_dict(), plugin="onnxruntime", variant="cpu",
                    label=f"{path.name} on onnxruntime:cpu", **kw)


@pytest.fixture
def device(sshd_server):
    dev = SshDevice.from_profile(sshd_server.profile(python=sys.executable))
    yield dev
    dev.cleanup()


@pytest.mark.parametrize("multiplex", [True, False], ids=["master-connection", "a-connection-per-call"])
def test_push_exec_pull_and_cleanup_over_a_real_sshd(sshd_server, tmp_path, multiplex):
    device = SshDevice.from_profile(sshd_server.profile(python=sys.executable))
    device.multiplex = multiplex
    assert isinstance(device, Device) and device.name == "test-sshd"
    src = tmp_path / "in.txt"
    src.write_text("hello")
    device.push(str(src), "data/in.txt")
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b.txt").write_text("b")
    device.push(str(folder), "tree")
    script = "cat data/in.txt | tr a-z A-Z; echo; cat tree/sub/b.txt; echo; echo \"$0\""
    rc, out, err = device.exec(["sh", "-c", script, "a b'c"])
    assert (rc, out.split()) == (0, ["HELLO", "b", "a", "b'c"]), err  # quoted with shlex.join, run in the work dir
    rc, _, err = device.exec([sys.executable, "-c", "open('out.txt','w').write('x')"])
    assert rc == 0, err
    device.pull("out.txt", str(tmp_path / "back" / "out.txt"))
    assert (tmp_path / "back" / "out.txt").read_text() == "x"
    device.pull("tree", str(tmp_path / "back" / "tree"))
    assert (tmp_path / "back" / "tree" / "sub" / "b.txt").read_text() == "b"
    with pytest.raises(FileNotFoundError, match="no file"):
        device.pull("nothing-here.json", str(tmp_path / "x.json"))
    t = time.monotonic()
    rc, _, err = device.exec(["sleep", "30"], timeout=1)
    assert rc == 124 and "timed out" in err and time.monotonic() - t < 10
    assert device.exec(["definitely-not-a-command-xyz"])[0] == 127
    session = Path(device._abs_session)
    assert session.is_dir() and session.parent == sshd_server.dir / "work"
    assert (device._master is not None) == multiplex
    device.cleanup()
    assert not session.exists() and (sshd_server.dir / "work" / "lib").is_dir()  # the fcbench zip stays cached
    assert device._master is None and device._control is None


def test_bench_and_run_jobs_end_to_end_with_fcbench_from_the_pushed_zip(device, sshd_server, onnx, tmp_path):
    t = time.perf_counter()
    raw = run_job(device, _job(onnx), [onnx], logs=tmp_path / "logs")
    ssh_s = time.perf_counter() - t
    assert raw["status"] == "ok", raw.get("reason")
    assert len(raw["samples_ms"]) >= 3 and all(s > 0 for s in raw["samples_ms"]) and raw["init_ms"] > 0
    assert raw["placement"] and "onnxruntime" in raw["versions"] and raw["output_shape"] == [1, 16]
    here = machine_info()
    assert raw["machine"]["cpu"] == here["cpu"] and fingerprint(raw["machine"]) == fingerprint(here)
    work = str(sshd_server.dir / "work")
    # fcbench came from the zip pushed into the remote work dir, not from this venv's editable install
    assert raw["worker"]["fcbench_path"].startswith(f"{work}/lib/fcbench-") and ".zip" in raw["worker"]["fcbench_path"]
    assert raw["job_dir"].startswith(f"{device._abs_session}/jobs/")
    assert raw["worker"]["imported"] == []  # neither torch nor the CLI libraries came with the worker
    assert not (tmp_path / "logs").exists()
    # a run job: the outputs equal onnxruntime's here, in this process
    manifest = read_manifest(onnx)
    x = np.concatenate([prepared_input(manifest, 1, seed=s) for s in range(3)])
    np.save(tmp_path / "inputs.npy", x)
    raw = run_job(device, _job(onnx, kind="run", inputs="inputs.npy", outputs="outputs.npy"),
                  [onnx, tmp_path / "inputs.npy"])
    assert raw["status"] == "ok", raw.get("reason")
    session = get_backend("onnxruntime").load(onnx, manifest, "cpu", 1, {})
    want = np.concatenate([np.asarray(session.run(x[i:i + 1])) for i in range(len(x))])
    assert raw["outputs"].shape == want.shape == (3, 16)
    np.testing.assert_allclose(raw["outputs"], want, rtol=0, atol=1e-5)
    assert list(Path(device._abs_session, "jobs").iterdir()) == []  # run_job removed its job folders
    t = time.perf_counter()
    again = run_job(device, _job(onnx), [onnx])
    again_s = time.perf_counter() - t
    t = time.perf_counter()
    local = run_job(LocalDevice(workdir=str(tmp_path / "local")), _job(onnx), [onnx])
    local_s = time.perf_counter() - t
    assert again["status"] == local["status"] == "ok"
    print(f"one bench cell: ssh {ssh_s:.2f} s (the session's first: connect, push fcbench), then {again_s:.2f} s; "
          f"local {local_s:.2f} s")


def test_open_device_and_info_read_the_same_machine(sshd_server):
    dev = open_device(sshd_server.profile())
    assert isinstance(dev, SshDevice) and dev.python_cmd == "python3" and dev.port == sshd_server.port
    info = dev.info()
    here = machine_info()
    assert info["driver"] == "ssh" and info["hostname"]
    assert (info["arch"], info["cpu"], info["cores"], info["isa"]) == (here["arch"], here["cpu"], here["cores"],
                                                                      here["isa"])
    assert info["fingerprint"] == fingerprint(here)  # same machine, read over ssh or here
    dev.cleanup()


def _one_line_within(seconds: float, fn, match: str) -> str:
    t = time.monotonic()
    with pytest.raises(SshError) as exc:
        fn()
    assert time.monotonic() - t < seconds, f"took {time.monotonic() - t:.1f} s"
    msg = str(exc.value)
    assert "\n" not in msg and exc.value.exit_code == 2 and isinstance(exc.value, FcbenchError), msg
    assert match in msg, msg
    return msg


def test_bad_input_is_one_line_each_within_seconds(sshd_server, tmp_path):
    from sshd import _free_port

    port = _free_port()  # nothing listens there
    msg = _one_line_within(5, lambda: SshDevice.from_profile(sshd_server.profile(port=port)).python,
                           f"cannot connect to 127.0.0.1 port {port}: Connection refused")
    assert "test-sshd" in msg and "sshd" in msg
    other = keygen(tmp_path / "other_key")
    msg = _one_line_within(5, lambda: SshDevice.from_profile(sshd_server.profile(key=str(other))).info(),
                           "refused the key")
    assert str(other) in msg and f"{sshd_server.user}@127.0.0.1" in msg and "ssh-copy-id" in msg
    wrong = tmp_path / "known_hosts"
    other_host = Path(f"{keygen(tmp_path / 'h')}.pub").read_text()
    wrong.write_text(f"[127.0.0.1]:{sshd_server.port} {other_host}")
    prof = sshd_server.profile(ssh_options=sshd_server.options(known_hosts=wrong))
    msg = _one_line_within(5, lambda: SshDevice.from_profile(prof).python, "does not match")
    assert "ssh-keygen -R" in msg
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    prof = sshd_server.profile(ssh_options=sshd_server.options(known_hosts=empty))
    msg = _one_line_within(5, lambda: SshDevice.from_profile(prof).info(), "is not in known_hosts")
    assert "StrictHostKeyChecking=accept-new" in msg
    prof = sshd_server.profile(python="/opt/no-such-python/bin/python3")
    msg = _one_line_within(5, lambda: SshDevice.from_profile(prof).python, "not found on the device (exit 127)")
    assert "/opt/no-such-python/bin/python3" in msg and "test-sshd.toml" in msg


def test_open_device_by_name_from_the_inventory_names_a_refused_port(sshd_server, in_tmp):
    """A device of ./devices opened by name, its port closed: one line naming the device and the address."""
    from sshd import _free_port

    port = _free_port()
    (in_tmp / "devices").mkdir()
    (in_tmp / "devices" / "gone.toml").write_text(f'driver = "ssh"\nhost = "127.0.0.1"\nport = {port}\n'
                                                  f'key = "{sshd_server.key}"\n')
    msg = _one_line_within(5, lambda: open_device("gone").python, "cannot connect")
    assert msg.startswith(f"ssh device gone (127.0.0.1:{port}): cannot connect to 127.0.0.1 port {port}")


def test_a_device_python_without_numpy_fails_the_cell_naming_the_install_command(sshd_server, onnx):
    bare = "/usr/bin/python3"
    probe = subprocess.run([bare, "-c", "import numpy"], capture_output=True) if Path(bare).exists() else None
    if probe is None or probe.returncode == 0:
        pytest.skip(f"needs a python without numpy at {bare} (the system python3 of Debian, apt python3)")
    dev = SshDevice.from_profile(sshd_server.profile(python=bare))
    try:
        raw = run_job(dev, _job(onnx), [onnx])
    finally:
        dev.cleanup()
    assert raw["status"] == "failed"
    assert raw["reason"] == (f"python package 'numpy' is not installed for {bare} on this device; install it there "
                             f"with: {bare} -m pip install numpy")


def test_a_server_killed_mid_job_fails_the_cell_with_a_reason(onnx, tmp_path):
    server = start_sshd(tmp_path / "sshd")
    dev = SshDevice.from_profile(server.profile(python=sys.executable))
    try:
        dev.python  # noqa: B018  (connect, push fcbench)

        def kill_when_the_worker_runs() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                out = subprocess.run(["pgrep", "-f", f"{server.dir}/work/lib/fcbench-.*fcbench.worker"],
                                     capture_output=True, text=True)
                if out.stdout.strip():
                    time.sleep(0.5)
                    server.kill()
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_the_worker_runs)
        killer.start()
        t = time.monotonic()
        raw = run_job(dev, _job(onnx, min_seconds=60.0, runs=100000), [onnx], logs=tmp_path / "logs")
        killer.join()
        assert time.monotonic() - t < 40
        assert raw["status"] == "failed" and "exited 255" in raw["reason"], raw
        assert "lost the connection" in raw["reason"] or "Connection" in raw["reason"], raw["reason"]
        assert Path(raw["logs"], "stderr.txt").is_file()
        print(raw["reason"])
    finally:
        dev.cleanup()  # the server is gone: cleanup gives up quietly
        if server.proc.poll() is None:
            server.kill()


def test_a_device_python_without_the_runtime_fails_the_cell_naming_the_install_command(sshd_server, onnx):
    """A python with numpy but no onnxruntime (the interpreter this venv was made from, when it is one)."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    probe = subprocess.run([str(base), "-c", "import numpy, importlib.util as u; "
                            "raise SystemExit(u.find_spec('onnxruntime') is not None)"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"needs a python with numpy and without onnxruntime at {base} (this venv's base interpreter)")
    dev = SshDevice.from_profile(sshd_server.profile(python=str(base)))
    try:
        raw = run_job(dev, _job(onnx), [onnx])
    finally:
        dev.cleanup()
    assert raw["status"] == "failed"
    assert raw["reason"] == (f"python package 'onnxruntime' is not installed for {base} on this device; install it "
                             f"there with: {base} -m pip install onnxruntime")


def test_a_full_disk_on_the_device_is_one_line(sshd_server, tmp_path):
    """The work dir on a 64 KiB tmpfs: pushing fcbench (a few hundred KiB) runs out of space."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        prof = sshd_server.profile(python=sys.executable, workdir=str(small / "work"))
        dev = SshDevice.from_profile(prof)
        msg = _one_line_within(10, lambda: dev.python, "no space left on the device")
        assert "fcbench-" in msg and "workdir" in msg
        assert [p.name for p in (small / "work" / "lib").iterdir()] == []  # no half-written zip left behind
        dev.cleanup()
        assert list((small / "work").iterdir()) == [small / "work" / "lib"]  # the session's folder is gone
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
