"""A real ARM host (tests/armhost.py: Debian arm64 under qemu-user, its own sshd, the genuine aarch64
wheels of ONNX Runtime and LiteRT) through the ssh driver: ``fcbench bench --device`` lands rows with
arch aarch64, ``run`` jobs give the host's outputs within 1e-4, ``info()`` says aarch64 and that it is
emulated. Times under emulation mean nothing; these tests prove the path, not speed."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import armhost
import numpy as np
import pytest

from fcbench.artifact import read_manifest
from fcbench.backends import get_backend
from fcbench.benchmark.job import BenchJob
from fcbench.benchmark.run import prepared_input
from fcbench.devices.runner import run_job
from fcbench.devices.ssh import SshDevice

arm_host = armhost.arm_host  # the session's ARM host (a fixture)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained r18 converted to ONNX and TFLite by fcbench's own convert."""
    pytest.importorskip("onnxruntime")
    from conftest import TINY_R18, converted_file, train_tiny

    import fcbench

    root = tmp_path_factory.mktemp("arm-models")
    ckpt = train_tiny(root, TINY_R18)
    outcomes = fcbench.convert(checkpoint=str(ckpt), to=["onnx", "tflite"], out=str(root / "conv"))
    outcomes = outcomes.outcomes
    return {"onnxruntime": converted_file(outcomes, "onnx"), "tflite": converted_file(outcomes, "tflite")}


VARIANT = {"onnxruntime": "cpu", "tflite": "xnnpack"}


def _toml(profile: dict) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in profile.items())


def test_probe_parsing_tells_qemu_user_from_the_cpuinfo_of_another_isa():
    """Under qemu-user the guest reads the host's /proc/cpuinfo: this machine's, read as an aarch64 guest's."""
    from fcbench.devices.ssh import parse_probe

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if platform.machine() != "x86_64" or "vendor_id" not in cpuinfo:
        pytest.skip("needs an x86_64 Linux host (/proc/cpuinfo with vendor_id)")
    probe = "@@uname\n{}\nLinux\n6.1\n@@cpuinfo\n" + cpuinfo + "@@end\n"
    assert parse_probe(probe.format("aarch64"))["emulated"] == "qemu-user"
    assert "emulated" not in parse_probe(probe.format("x86_64"))
    arm = "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n"
    assert "emulated" not in parse_probe(f"@@uname\naarch64\nLinux\n6.1\n@@cpuinfo\n{arm}@@end\n")


@pytest.mark.slow
def test_info_reports_aarch64_and_emulation(arm_host):
    dev = SshDevice.from_profile(arm_host.profile())
    try:
        info = dev.info()
    finally:
        dev.cleanup()
    assert info["arch"] == "aarch64" and info["driver"] == "ssh" and info["fingerprint"]
    assert info["os"].startswith("Debian GNU/Linux 12")
    if platform.machine() in ("x86_64", "AMD64"):  # the guest's /proc/cpuinfo is this x86 host's
        assert info["emulated"] == "qemu-user", info


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["onnxruntime", "tflite"])
def test_run_job_outputs_match_the_hosts_runtime(arm_host, models, plugin, tmp_path):
    """The aarch64 build of the runtime, on the ARM host, gives this machine's outputs within 1e-4."""
    pytest.importorskip("onnxruntime" if plugin == "onnxruntime" else "ai_edge_litert")
    path = models[plugin]
    manifest = read_manifest(path)
    x = np.concatenate([prepared_input(manifest, 1, seed=s) for s in range(3)])
    np.save(tmp_path / "inputs.npy", x)
    dev = SshDevice.from_profile(arm_host.profile())
    try:
        raw = run_job(dev, BenchJob(artifact=path.name, manifest=manifest.to_dict(), plugin=plugin,
                                    variant=VARIANT[plugin], label=f"{path.name} on {plugin}", threads=1,
                                    kind="run", inputs="inputs.npy", outputs="outputs.npy"),
                      [path, tmp_path / "inputs.npy"], timeout=600)
    finally:
        dev.cleanup()
    assert raw["status"] == "ok", raw.get("reason")
    assert raw["machine"]["arch"] == "aarch64"
    session = get_backend(plugin).load(path, manifest, VARIANT[plugin], 1, {})
    want = np.concatenate([np.asarray(session.run(x[i:i + 1])) for i in range(len(x))])
    assert raw["outputs"].shape == want.shape and len(want) == 3
    assert np.abs(raw["outputs"]).max() > 1e-3  # not all zeros
    np.testing.assert_allclose(raw["outputs"], want, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_bench_device_lands_aarch64_rows(cli, in_tmp, arm_host, models):
    """``fcbench bench --device arm`` with ./devices/arm.toml: one ok row per backend, measured on aarch64."""
    (in_tmp / "devices").mkdir()
    prof = arm_host.profile()
    (in_tmp / "devices" / "arm.toml").write_text(_toml({
        "driver": "ssh", "host": prof.host, "port": prof.port, "user": prof.user, "key": prof.key,
        "ssh_options": list(prof.ssh_options), "arch": "aarch64", "workdir": prof.workdir, "python": prof.python,
        "backends": ["ort-cpu", "tflite-xnnpack"]}) + "[measure]\naffinity = \"none\"\ncooldown_s = 0\n"
        "timeout_s = 600\nretries = 0\n")
    t = time.monotonic()
    r = cli("bench", models["onnxruntime"], models["tflite"], "--backend", "ort-cpu,tflite-xnnpack", "--device",
            "arm", "--runs", "3", "--warmup", "1", "--min-seconds", "0", "--store", "s.sqlite", "--format", "json")
    took = time.monotonic() - t
    assert r.code == 0, r.err + r.out
    from fcbench.results.store import Store

    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(kind="speed")
    got = {row["backend"]: row for row in rows if row["device"] == "arm"}
    assert set(got) == {"onnxruntime", "tflite"}, rows
    for row in got.values():
        assert row["extra"]["status"] == "ok", row["extra"]
        assert row["device_info"]["arch"] == "aarch64" and row["device_fingerprint"]
        assert row["p50_ms"] > 0 and len(row["samples_ms"]) >= 3
        if platform.machine() in ("x86_64", "AMD64"):
            assert row["extra"]["emulated"] == "qemu-user"  # its times are labelled as meaningless
    print(f"bench --device arm, 2 cells under qemu-user: {took:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize(("plugin", "backend"), [("onnxruntime", "ort-cpu"), ("tflite", "tflite-xnnpack")])
def test_eval_device_scores_equal_the_hosts(cli, in_tmp, arm_host, models, plugin, backend):
    """``fcbench eval --device arm``: the inputs run on the aarch64 runtime, are scored here, and give this
    machine's scores."""
    (in_tmp / "devices").mkdir()
    prof = arm_host.profile()
    (in_tmp / "devices" / "arm.toml").write_text(_toml({
        "driver": "ssh", "host": prof.host, "port": prof.port, "user": prof.user, "key": prof.key,
        "ssh_options": list(prof.ssh_options), "arch": "aarch64", "workdir": prof.workdir, "python": prof.python}))
    data = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=30", "--nfolds", "2"]
    r = cli("eval", models[plugin], "--backend", backend, "--device", "arm", *data, "--store", "s.sqlite",
            "--format", "json")
    assert r.code == 0, r.err
    assert "ran on device arm" in r.err
    r2 = cli("eval", models[plugin], "--backend", backend, *data, "--store", "s.sqlite", "--format", "json")
    assert r2.code == 0, r2.err
    from fcbench.results.store import Store

    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(kind="quality")
    on_arm = {r["metric"]: r for r in rows if r["device"] == "arm"}
    here = {r["metric"]: r for r in rows if r["device"] != "arm"}
    for metric in ("accuracy", "auc", "eer"):
        assert on_arm[metric]["value"] == pytest.approx(here[metric]["value"], abs=1e-4), metric
    assert on_arm["accuracy"]["device_info"]["arch"] == "aarch64"
    if platform.machine() in ("x86_64", "AMD64"):
        assert on_arm["accuracy"]["device_info"]["emulated"] == "qemu-user"
