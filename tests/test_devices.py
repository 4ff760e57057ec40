from __future__ import annotations

import sys

from fcbench.plugins import Device, load


def test_local_device_push_exec_pull_info(tmp_path):
    cls = load("device", "local")
    dev = cls(workdir=str(tmp_path / "remote"))
    assert isinstance(dev, Device)
    src = tmp_path / "in.txt"
    src.write_text("hello")
    dev.push(str(src), "data/in.txt")
    rc, out, err = dev.exec([sys.executable, "-c", "print(open('data/in.txt').read().upper())"])
    assert (rc, out.strip()) == (0, "HELLO")
    rc, _, err = dev.exec([sys.executable, "-c", "open('out.txt','w').write('x')"])
    assert rc == 0, err
    dev.pull("out.txt", str(tmp_path / "back" / "out.txt"))
    assert (tmp_path / "back" / "out.txt").read_text() == "x"
    rc, _, err = dev.exec([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    assert rc == 124 and "timed out" in err
    rc, _, _ = dev.exec(["definitely-not-a-command-xyz"])
    assert rc == 127
    info = dev.info()
    assert info["driver"] == "local" and info["cores"] >= 1 and info["cpu"]
    dev.cleanup()
    assert not (tmp_path / "remote").exists()


# --- the inventory, `fcbench devices`, and `bench --device` on local devices --------------------------------

import json  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A tiny trained r18 converted to ONNX (with its manifest)."""
    pytest.importorskip("onnxruntime")
    from conftest import TINY_R18, train_tiny

    import fcbench

    root = tmp_path_factory.mktemp("devices")
    ckpt = train_tiny(root, TINY_R18)
    fcbench.convert(checkpoint=str(ckpt), to=["onnx"], out=str(root / "onnx"))
    (onnx,) = (root / "onnx").glob("*.onnx")
    return onnx


def test_devices_list_and_check_this_machine(cli, in_tmp):
    r = cli("devices", "list", "--format", "json")
    assert r.code == 0, r.err
    shipped = {d["name"]: d for d in json.loads(r.out)}
    assert {"localhost", "poco-x3", "galaxy-s8", "rpi4", "rpi5", "jetson-orin-nano"} <= set(shipped)
    assert shipped["poco-x3"]["driver"] == "adb" and shipped["rpi4"]["driver"] == "ssh"
    assert all(d["origin"] == "builtin" for d in shipped.values())
    # a user's profile of the same name wins
    (in_tmp / "devices").mkdir()
    (in_tmp / "devices" / "rpi4.toml").write_text('driver = "ssh"\nhost = "10.0.0.7"\nuser = "me"\n')
    r = cli("devices", "list", "--format", "json")
    mine = {d["name"]: d for d in json.loads(r.out)}["rpi4"]
    assert mine["origin"] == "cwd" and mine["where"] == "me@10.0.0.7"

    r = cli("devices", "check", "localhost", "--format", "json")
    assert r.code == 0, r.err
    (check,) = json.loads(r.out)
    assert check["reachable"] and check["info"]["arch"] and check["info"]["fingerprint"]
    runs = {b["backend"]: b for b in check["backends"]}
    assert runs["ort-cpu"]["runs"] and runs["ort-cpu"]["versions"]["onnxruntime"]
    r = cli("devices", "check", "localhost")
    assert "backends on localhost" in r.out and "reachable" in r.out


@pytest.mark.parametrize("text, expect", [
    ('driver = "local"\npassword = "hunter2"\n', "never reads a password"),
    ('driver = "local"\nhots = "x"\n', "unknown key 'hots' (did you mean 'host'?)"),
    ('driver = "ssh"\n', "an ssh device needs 'host'"),
    ('driver = "ssh"\nhost = "h"\nport = 70000\n', "'port' must be a port number"),
    ('driver = "local"\n[measure]\naffinity = "big"\n', "'measure.affinity' must be auto, none or a hex"),
    ('driver = "local"\n[measure]\ncooldown_s = -1\n', "'measure.cooldown_s' must be a non-negative"),
    ('driver = "tcp"\n', "unknown device driver 'tcp'"),
    ('driver = "local"\nbackends = "ort-cpu"\n', "'backends' must be a list of strings"),
    ("driver = \n", "not valid TOML"),
])
def test_a_bad_device_profile_is_one_line(cli, in_tmp, tiny_onnx, text, expect):
    (in_tmp / "devices").mkdir()
    (in_tmp / "devices" / "mine.toml").write_text(text)
    r = cli("bench", tiny_onnx, "--backend", "ort-cpu", "--device", "mine", "--runs", "2", "--store", "s.sqlite")
    assert r.code == 2, (r.code, r.err)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in r.err and "mine.toml" in r.err or "tcp" in expect, r.err
    assert not (in_tmp / "s.sqlite").exists()


def test_bench_on_an_unknown_device_lists_the_known(cli, in_tmp, tiny_onnx):
    r = cli("bench", tiny_onnx, "--backend", "ort-cpu", "--device", "poco-x4", "--store", "s.sqlite")
    assert r.code == 2
    assert "unknown device 'poco-x4' (did you mean 'poco-x3'?)" in r.err and "localhost" in r.err
    r = cli("devices", "check", "poco-x4")
    assert r.code == 2 and "known devices" in r.err
    r = cli("bench", tiny_onnx, "--backend", "ort-cpu", "--affinity", "3", "--store", "s.sqlite")
    assert r.code == 2 and "--affinity is for --device" in r.err


def test_bench_on_two_local_devices_lands_rows_per_device(cli, in_tmp, tiny_onnx):
    """Two devices of the inventory at once (both this machine, through the worker): one row per device and
    backend, named after the device, with the affinity pinned and what the device lacks skipped with its reason;
    a device whose python is missing fails its cells and the others keep theirs."""
    import shutil

    if not shutil.which("taskset"):
        pytest.skip("taskset (util-linux) is not installed")
    d = in_tmp / "devices"
    d.mkdir()
    (d / "left.toml").write_text('driver = "local"\nbackends = ["ort-cpu"]\n[measure]\naffinity = "1"\n'
                                 'max_temp_c = 1000\n')
    (d / "right.toml").write_text('driver = "local"\n')
    (d / "broken.toml").write_text('driver = "local"\npython = "/nonexistent/bin/python3"\n[measure]\nretries = 0\n')
    r = cli("bench", tiny_onnx, "--backend", "ort-cpu,openvino-f32", "--device", "left,right,broken", "--runs", "3",
            "--warmup", "1", "--min-seconds", "0", "--store", "s.sqlite", "--format", "json")
    assert r.code == 1, r.err  # broken's cells failed
    from fcbench.results.store import Store

    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(kind="speed")
    from types import SimpleNamespace

    rows = [SimpleNamespace(**r) for r in rows]
    got = {(row.device, row.backend): row for row in rows}
    assert ("left", "onnxruntime") in got and ("right", "onnxruntime") in got
    left = got[("left", "onnxruntime")]
    assert left.extra["status"] == "ok" and left.extra["affinity"] == "1" and left.extra["attempts"] == 1
    assert left.p50_ms > 0 and len(left.samples_ms) >= 3 and left.device_fingerprint
    assert ("left", "openvino") not in got  # not offered by left's profile: skipped, not stored
    assert "device left does not offer openvino-f32" in r.err + r.out
    broken = [row for row in rows if row.device == "broken"]
    assert broken and all(row.extra["status"] == "failed" for row in broken)
    assert "exit 127" in broken[0].extra["reason"] or "python not found" in broken[0].extra["reason"]


def test_eval_on_a_device_scores_the_devices_outputs(cli, in_tmp, tiny_onnx):
    """eval --device: the inputs go to the device in one job, the outputs come back and are scored here; the
    rows name the device. On this machine the scores equal the in-process eval's."""
    data = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=30", "--nfolds", "2"]
    r = cli("eval", tiny_onnx, "--backend", "ort-cpu", "--device", "localhost", *data, "--store", "s.sqlite",
            "--format", "json")
    assert r.code == 0, r.err
    assert "ran on device localhost" in r.err
    r2 = cli("eval", tiny_onnx, "--backend", "ort-cpu", *data, "--store", "s.sqlite", "--format", "json")
    assert r2.code == 0, r2.err
    from fcbench.results.store import Store

    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(kind="quality")
    on_dev = {r["metric"]: r for r in rows if r["device"] == "localhost"}
    here = {r["metric"]: r for r in rows if r["device"] != "localhost"}
    assert {"accuracy", "auc", "cosine_to_parent_mean"} <= set(on_dev)
    for metric in ("accuracy", "auc", "eer"):
        assert on_dev[metric]["value"] == pytest.approx(here[metric]["value"], abs=1e-6)
    assert on_dev["accuracy"]["device_fingerprint"]
    r = cli("eval", tiny_onnx.parent.parent / "r18" / "model.pt", "--device", "localhost", *data)
    assert r.code == 2 and "convert it first" in r.err
