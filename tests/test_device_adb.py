"""The Android path: native tools' parsers (against fixtures written in each tool's format) and the adb
driver end to end through a stand-in ``adb`` (tests/standin_adb.py: no phone exists here)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from fcbench.devices import native
from fcbench.devices.adb import AdbDevice, big_cores_mask
from fcbench.devices.inventory import open_device, parse_profile
from fcbench.errors import FcbenchError

FIXTURES = Path(__file__).parent / "fixtures" / "native"
SERIAL = "emu-5554"


def fixture(name: str) -> str:
    """A fixture's text without its header comment (the lines starting with '#' before the output)."""
    lines = (FIXTURES / f"{name}.txt").read_text().splitlines(True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def parsed(name: str, rc: int = 0) -> native.NativeRun:
    return native.parse(name.split("-")[0], fixture(name), rc)


# --- parsers --------------------------------------------------------------------------------------------------

def test_every_fixture_names_its_source():
    for f in FIXTURES.glob("*.txt"):
        head = f.read_text().splitlines()[0]
        assert head.startswith("# Written for fcbench in the format of") and "/" in head, f.name


def test_tflite_cpu_run_with_op_profile():
    r = parsed("benchmark_model-cpu")
    assert r.status == "ok" and r.tool == "benchmark_model"
    assert (r.init_ms, r.first_run_ms, r.warmup_avg_ms) == pytest.approx((18.734, 16.322, 12.2054))
    assert r.runs == 83
    assert (r.mean_ms, r.std_ms, r.min_ms, r.max_ms) == pytest.approx((12.0362, 0.341, 11.65, 13.544))
    assert r.peak_mem_mb == pytest.approx(24.5781)
    assert r.stats()["mem_overall_mb"] == pytest.approx(13.6836)
    assert [o["op_type"] for o in r.ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert r.ops[2]["avg_ms"] == pytest.approx(4.802) and r.ops[2]["name"] == "model/block1/pw/Relu"
    assert r.p50_ms is None and "p50_ms" in r.absent and "samples_ms" in r.absent
    assert r.delegate_nodes == {} and r.to_raw()["placement"] == []


def test_tflite_xnnpack_delegate_counts_and_percentiles():
    r = parsed("benchmark_model-xnnpack")
    assert r.delegate_nodes == {"TfLiteXNNPackDelegate": {"nodes": 62, "of": 64, "partitions": 2}}
    assert (r.p50_ms, r.p95_ms) == pytest.approx((5.627, 5.861))
    assert r.p90_ms is None and r.p99_ms is None and {"p90_ms", "p99_ms"} <= set(r.absent)
    raw = r.to_raw()
    where = [p["placement"] for p in raw["placement"]]
    assert (where.count("XNNPACK"), where.count("CPU"), len(where)) == (62, 2, 64)
    assert raw["status"] == "ok" and raw["tool"] == "benchmark_model" and raw["samples_ms"] == []
    assert raw["first_run_ms"] == pytest.approx(9.871) and raw["init_ms"] == pytest.approx(41.052)
    assert raw["stats"]["mean_ms"] == pytest.approx(5.65248) and raw["stats"]["runs"] == 176


def test_tflite_failed_delegate_is_failed_with_the_tools_line():
    r = parsed("benchmark_model-gpu-failed", rc=1)
    assert r.status == "failed"
    assert r.reason == "benchmark_model: Failed to apply GPU delegate."
    assert r.mean_ms is None and r.to_raw() == {"status": "failed", "reason": r.reason, "tool": "benchmark_model",
                                                 "stats": {}, "absent": r.absent}
    # the same text with exit 0 still fails: the tool said so
    assert parsed("benchmark_model-gpu-failed", rc=0).status == "failed"


def test_tflite_old_output_reports_missing_fields_absent_not_zero():
    r = parsed("benchmark_model-old")
    assert r.status == "ok" and r.runs == 50 and r.mean_ms == pytest.approx(79.7609)
    assert r.peak_mem_mb is None and "peak_mem_mb" in r.absent
    assert "mem_overall_mb" not in r.stats() and r.to_raw()["mem_delta_mb"] is None


def test_ort_cpu_percentiles_and_memory():
    r = parsed("onnxruntime_perf_test-cpu")
    assert r.status == "ok" and r.runs == 100
    assert (r.init_ms, r.first_run_ms, r.mean_ms) == pytest.approx((41.2213, 19.0, 12.0544))
    assert (r.min_ms, r.max_ms, r.p50_ms, r.p90_ms, r.p95_ms, r.p99_ms) == pytest.approx(
        (11.6103, 13.9822, 11.9871, 12.4308, 12.6617, 13.9021))
    assert r.stats()["p999_ms"] == pytest.approx(13.9822)
    assert r.peak_mem_mb == pytest.approx(40173568 / 2**20)
    assert r.std_ms is None and r.warmup_avg_ms is None and {"std_ms", "warmup_avg_ms"} <= set(r.absent)


def test_ort_xnnpack_node_placement_from_the_verbose_log():
    r = parsed("onnxruntime_perf_test-xnnpack")
    assert r.delegate_nodes["XnnpackExecutionProvider"] == {"nodes": 4, "of": 5, "partitions": None}
    rows = r.to_raw()["placement"]
    assert [(p["op_type"], p["placement"]) for p in rows][-1] == ("GlobalAveragePool", "CPUExecutionProvider")
    assert rows[0] == {"node": "/conv1/Conv", "op_type": "Conv", "placement": "XnnpackExecutionProvider",
                       "precision": ""}


def test_ort_failed_run_keeps_the_tools_line_and_nnapi_counts():
    r = parsed("onnxruntime_perf_test-nnapi-failed", rc=255)
    assert r.status == "failed" and r.reason.startswith("onnxruntime_perf_test: Run failed:Non-zero status code")
    assert "ANEURALNETWORKS_OP_FAILED" in r.reason
    assert r.delegate_nodes == {"NnapiExecutionProvider": {"nodes": 4, "of": 5, "partitions": 2}}


def test_ort_old_output_only_mean_and_count():
    r = parsed("onnxruntime_perf_test-old")
    assert r.status == "ok" and r.runs == 100 and r.mean_ms == pytest.approx(11.8803)
    for f in ("init_ms", "first_run_ms", "p50_ms", "p99_ms", "peak_mem_mb", "min_ms"):
        assert getattr(r, f) is None and f in r.absent


def test_executorch_per_iteration_samples_and_load_time():
    r = parsed("executor_runner-portable")
    assert r.status == "ok" and r.runs == 5 and r.samples_ms == pytest.approx([49.0512, 44.8463, 44.3918,
                                                                                44.5801, 44.7706])
    assert r.mean_ms == pytest.approx(227.64 / 5) and r.init_ms == pytest.approx(18.6124)
    assert r.to_raw()["samples_ms"] == r.samples_ms and r.first_run_ms == pytest.approx(49.0512)


def test_executorch_older_runner_and_xnnpack_without_counts():
    r = parsed("executor_runner-xnnpack")
    assert r.status == "ok" and r.runs == 20 and r.mean_ms == pytest.approx(127.401 / 20)
    assert r.init_ms is None and r.samples_ms == [] and {"init_ms", "samples_ms", "delegate_nodes"} <= set(r.absent)


def test_executorch_missing_backend_fails_with_its_line():
    r = parsed("executor_runner-failed", rc=134)
    assert r.status == "failed" and r.reason == "executor_runner: Backend XnnpackBackend is not registered."


def test_speed_benchmark_torch_summary_and_pep_lines():
    r = parsed("speed_benchmark_torch-cpu")
    assert r.status == "ok" and r.mean_ms == pytest.approx(31.8746) and r.runs is None and "runs" in r.absent
    assert r.stats()["iters_per_s"] == pytest.approx(31.3729)
    p = parsed("speed_benchmark_torch-pep")
    assert p.samples_ms == pytest.approx([32.012, 31.55, 31.877, 31.702, 32.231]) and p.runs == 5


def test_speed_benchmark_torch_exception_is_failed():
    r = parsed("speed_benchmark_torch-failed", rc=134)
    assert r.status == "failed" and "PytorchStreamReader failed locating file constants.pkl" in r.reason


def test_nonzero_exit_without_an_error_line_fails_naming_the_last_line():
    r = native.parse("speed_benchmark_torch", "Starting benchmark.\nMain runs.\n", 139)
    assert r.status == "failed" and "Main runs." in r.reason


def test_tool_for_each_backend():
    assert native.tool_for("tflite", "gpu") == ("benchmark_model", "")
    assert native.tool_for("onnxruntime", "nnapi") == ("onnxruntime_perf_test", "")
    assert native.tool_for("executorch", "xnnpack") == ("executor_runner", "")
    assert native.tool_for("pytorch-mobile", "cpu") == ("speed_benchmark_torch", "")
    tool, why = native.tool_for("opencv-dnn", "cpu")
    assert tool is None and "OpenCV DNN has no native benchmark tool" in why
    tool, why = native.tool_for("onnxruntime", "openvino")
    assert tool is None and "cpu, xnnpack, nnapi" in why


def test_commands_carry_threads_variant_runs_and_profiling():
    argv = native.command("benchmark_model", "/t/bm", "/m.tflite", variant="gpu", threads=4, warmup=3, runs=20,
                          min_seconds=1.5, profile_ops=True)
    assert argv[:3] == ["/t/bm", "--graph=/m.tflite", "--use_gpu=true"]
    assert {"--num_threads=4", "--warmup_runs=3", "--num_runs=20", "--min_secs=1.5",
            "--enable_op_profiling=true", "--report_peak_memory_footprint=true"} <= set(argv)
    argv = native.command("onnxruntime_perf_test", "/t/p", "/m.onnx", variant="xnnpack", threads=2, runs=30)
    assert argv[:3] == ["/t/p", "-e", "xnnpack"] and argv[-1] == "/m.onnx"
    assert "-x 2 -m times -r 30 -I -s" in " ".join(argv)
    assert native.command("executor_runner", "/t/e", "/m.pte", variant="xnnpack", runs=7, threads=4) == [
        "/t/e", "--model_path=/m.pte", "--num_executions=7", "--cpu_threads=4"]
    argv = native.command("speed_benchmark_torch", "/t/s", "/m.ptl", variant="cpu", warmup=2, runs=9,
                          input_shape=[1, 3, 112, 112])
    assert "--input_dims=1,3,112,112" in argv and "--iter=9" in argv and "--report_pep=true" in argv


# --- the driver through the stand-in adb -------------------------------------------------------------------------

def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A stand-in phone: adb on PATH, a sandbox with props, battery, cpus (4 little + 4 big), thermal zones and
    the tools ``benchmark_model`` (printing the xnnpack fixture) and ``benchmark_model_gpu`` (the failed one)."""
    root = tmp_path / "phone"
    bindir = tmp_path / "bin"
    _script(bindir / "adb", f"#!{sys.executable}\n" + (Path(__file__).parent / "standin_adb.py").read_text())
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_ADB_ROOT", str(root))
    monkeypatch.setenv("STANDIN_ADB_DEVICES", f"{SERIAL}=device")
    monkeypatch.delenv("STANDIN_ADB_VANISH_ON", raising=False)
    sysbin = root / "system" / "bin"
    (root / "props.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "props.txt").write_text("ro.product.model=Pixel 4a\nro.product.manufacturer=Google\n"
                                    "ro.soc.model=SM7150\nro.board.platform=sm6150\nro.product.cpu.abi=arm64-v8a\n"
                                    "ro.build.version.release=13\nro.build.version.sdk=33\n")
    (root / "battery.txt").write_text("Current Battery Service state:\n  AC powered: false\n  USB powered: true\n"
                                      "  level: 87\n  temperature: 312\n")
    _script(sysbin / "getprop", f'#!/bin/sh\ngrep "^$1=" "{root}/props.txt" | cut -d= -f2-\n')
    _script(sysbin / "dumpsys", f'#!/bin/sh\n[ "$1" = battery ] && cat "{root}/battery.txt"\n')
    _script(sysbin / "uname", "#!/bin/sh\necho aarch64\n")
    _script(sysbin / "taskset", f'#!/bin/sh\necho "$1" >> "{root}/taskset.log"\nshift\nexec "$@"\n')
    for cpu in range(8):
        freq = root / "sys" / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "cpuinfo_max_freq").write_text("1804800\n" if cpu < 4 else "2208000\n")
        (freq / "scaling_governor").write_text("schedutil\n")
    for i, t in enumerate(("41200", "38000")):
        (root / "sys" / "class" / "thermal" / f"thermal_zone{i}").mkdir(parents=True)
        (root / "sys" / "class" / "thermal" / f"thermal_zone{i}" / "temp").write_text(t + "\n")
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd aes pmull sha1 sha2 crc32 atomics "
                                           "fphp asimdhp asimddp\nHardware\t: Qualcomm Technologies, Inc SM7150\n")
    (root / "proc" / "meminfo").write_text("MemTotal:        5843212 kB\n")
    tools = root / "data" / "local" / "tmp"
    for name, fix, rc in (("benchmark_model", "benchmark_model-xnnpack", 0),
                          ("benchmark_model_gpu", "benchmark_model-gpu-failed", 1)):
        (tools / f"{name}.out").parent.mkdir(parents=True, exist_ok=True)
        (tools / f"{name}.out").write_text(fixture(fix))
        _script(tools / name, f'#!/bin/sh\necho "$@" > "{tools}/{name}.args"\ncat "{tools}/{name}.out"\nexit {rc}\n')
    return root


def calls(root: Path) -> list[list[str]]:
    path = root / "calls.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def device(**kw) -> AdbDevice:
    doc = {"driver": "adb", "serial": SERIAL, "workdir": "/data/local/tmp/fcbench",
           "tools": {"benchmark_model": "/data/local/tmp/benchmark_model"}}
    doc.update(kw)
    return open_device(parse_profile("pixel", doc))


def test_open_device_makes_an_adb_driver_from_a_profile(phone):
    from fcbench.plugins import Device

    dev = device()
    assert isinstance(dev, AdbDevice) and isinstance(dev, Device) and dev.name == "pixel" and dev.serial == SERIAL
    assert dev.workdir == "/data/local/tmp/fcbench" and dev.tools["benchmark_model"].endswith("benchmark_model")
    with pytest.raises(FcbenchError, match="must be absolute"):
        device(workdir="fcbench-work")


def test_exec_reads_the_status_from_its_marker_though_adb_says_0(phone, tmp_path):
    dev = device()
    rc, out, _ = dev.exec(["sh", "-c", "echo hello; exit 3"])
    assert (rc, out.strip()) == (3, "hello")
    rc, out, _ = dev.exec(["pwd"])
    assert rc == 0 and out.strip() == f"{phone}/data/local/tmp/fcbench"  # cd WORKDIR (mapped into the sandbox)
    src = tmp_path / "a.txt"
    src.write_text("x1")
    dev.push(str(src), "in/a.txt")
    dev.exec(["sh", "-c", "cat in/a.txt > out.txt"])
    dev.pull("out.txt", str(tmp_path / "back" / "out.txt"))
    assert (tmp_path / "back" / "out.txt").read_text() == "x1"
    with pytest.raises(FileNotFoundError, match="failed to stat remote object"):
        dev.pull("nope.txt", str(tmp_path / "nope.txt"))


def test_push_is_content_addressed_and_skips_a_blob_already_there(phone, tmp_path):
    dev = device()
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1cTFL3" + bytes(range(200)))
    dev.push(str(model), "models/model.tflite")
    first = calls(phone)
    assert sum(c[2] == "push" for c in first) == 1
    blob = [c for c in first if c[2] == "push"][0][4]
    assert "/data/local/tmp/fcbench/blobs/" in blob and blob.split("/")[-2] != "blobs"
    before = len(calls(phone))
    dev.push(str(model), "models/again.tflite")  # same content: no transfer, one shell call
    second = calls(phone)[before:]
    assert [c[2] for c in second] == ["shell"]
    linked = phone / "data" / "local" / "tmp" / "fcbench" / "models" / "again.tflite"
    assert linked.read_bytes() == model.read_bytes()
    model.write_bytes(b"\x1cTFL3 changed")  # new content: sent again
    before = len(calls(phone))
    dev.push(str(model), "models/model.tflite")
    assert sum(c[2] == "push" for c in calls(phone)[before:]) == 1


def test_info_reads_the_phone(phone):
    info = device().info()
    assert info["driver"] == "adb" and info["model"] == "Pixel 4a" and info["soc"] == "SM7150"
    assert info["abi"] == "arm64-v8a" and info["arch"] == "aarch64" and info["os"] == "Android 13"
    assert info["cores"] == 8 and info["big_cores"] == [4, 5, 6, 7] and info["little_cores"] == [0, 1, 2, 3]
    assert info["cpu_max_khz"]["4"] == 2208000 and info["governor"] == "schedutil"
    assert info["temperature_c"] == pytest.approx(41.2)
    assert info["battery"] == {"level": 87, "temperature_c": 31.2, "charging": True}
    assert "asimddp" in info["isa"] and info["memory_gb"] == pytest.approx(5.6)
    assert len(info["fingerprint"]) == 12
    assert big_cores_mask(info) == "f0"
    assert big_cores_mask({"cpu_max_khz": {"0": 1, "1": 1}}) is None


def test_bench_native_returns_parsed_stats_and_keeps_the_raw_output(phone, tmp_path):
    dev = device()
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1cTFL3 model")
    mask = dev.affinity_mask()  # measure.affinity = auto: the big cores
    raw = dev.bench_native(model, "tflite", "xnnpack", 4, 5, 50, 1.0, mask, tmp_path / "logs")
    assert raw["status"] == "ok" and raw["tool"] == "benchmark_model" and raw["device"] == "pixel"
    assert raw["stats"]["mean_ms"] == pytest.approx(5.65248) and raw["stats"]["p50_ms"] == pytest.approx(5.627)
    assert raw["peak_mem_mb"] == pytest.approx(31.0117) and len(raw["placement"]) == 64
    kept = Path(raw["logs"]).read_text()
    assert "Replacing 62 out of 64 node(s)" in kept and "[exit 0]" in kept
    assert (phone / "taskset.log").read_text().split() == ["f0"] and raw["affinity"] == "f0"
    args = (phone / "data" / "local" / "tmp" / "benchmark_model.args").read_text()
    assert "--use_xnnpack=true" in args and "--num_threads=4" in args and "--num_runs=50" in args
    assert "/data/local/tmp/fcbench/models/model.tflite" in args  # the model pushed into the work dir


def test_bench_native_failed_delegate_gives_the_tools_line(phone, tmp_path):
    dev = device(tools={"benchmark_model": "/data/local/tmp/benchmark_model_gpu"})
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1cTFL3 model")
    raw = dev.bench_native(model, "tflite", "gpu", 4, 1, 10, 0.0, None, tmp_path / "logs")
    assert raw["status"] == "failed" and raw["reason"] == "benchmark_model: Failed to apply GPU delegate."
    assert "[exit 1]" in Path(raw["logs"]).read_text()
    assert not (phone / "taskset.log").exists()  # no mask, no taskset


def test_bench_native_missing_tool_names_the_path_and_how_to_provide_it(phone, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    dev = device(tools={"onnxruntime_perf_test": "/data/local/tmp/onnxruntime_perf_test"})
    raw = dev.bench_native(model, "onnxruntime", "cpu", 2, 1, 10, 0.0, None, None)
    assert raw["status"] == "failed"
    assert "onnxruntime_perf_test not found on pixel at /data/local/tmp/onnxruntime_perf_test" in raw["reason"]
    assert f"adb -s {SERIAL} push onnxruntime_perf_test /data/local/tmp/onnxruntime_perf_test" in raw["reason"]
    raw = device(tools={}).bench_native(model, "onnxruntime", "cpu", 2, 1, 10, 0.0, None, None)
    assert raw["status"] == "failed" and "[tools] onnxruntime_perf_test" in raw["reason"]
    raw = device().bench_native(model, "opencv-dnn", "cpu", 2, 1, 10, 0.0, None, None)
    assert raw["status"] == "failed" and "OpenCV DNN has no native benchmark tool" in raw["reason"]


def test_a_device_that_vanishes_mid_run_is_a_failed_cell_with_adbs_line(phone, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_ADB_VANISH_ON", "--graph=")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1cTFL3 model")
    raw = device().bench_native(model, "tflite", "xnnpack", 4, 1, 10, 0.0, None, tmp_path / "logs")
    assert raw["status"] == "failed"
    assert raw["reason"] == f"adb device pixel: error: device '{SERIAL}' not found (while benchmark_model ran)"
    assert "error: device" in Path(raw["logs"]).read_text()


@pytest.mark.parametrize("devices, serial, message", [
    (f"{SERIAL}=unauthorized", SERIAL, "error: device unauthorized. (unlock the phone and accept"),
    (f"{SERIAL}=offline", SERIAL, "error: device offline (replug the cable"),
    ("other-1=device,other-2=offline", SERIAL, f"error: device '{SERIAL}' not found; attached: other-1 (device), "
                                               "other-2 (offline)"),
    ("", None, "error: no devices/emulators found (plug the phone in"),
    ("a=device,b=device", None,
     "error: more than one device/emulator; set serial in the device profile to one of: a, b"),
])
def test_bad_device_states_are_one_line_with_adbs_words(phone, monkeypatch, devices, serial, message):
    monkeypatch.setenv("STANDIN_ADB_DEVICES", devices)
    doc = {"driver": "adb", "workdir": "/data/local/tmp/fcbench"}
    if serial:
        doc["serial"] = serial
    dev = open_device(parse_profile("pixel", doc))
    with pytest.raises(FcbenchError) as exc:
        dev.exec(["true"])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_adb_over_tcp_connects_first(phone, monkeypatch):
    monkeypatch.setenv("STANDIN_ADB_DEVICES", "192.168.1.20:5555=device")
    dev = open_device(parse_profile("tcp", {"driver": "adb", "host": "192.168.1.20", "port": 5555}))
    assert dev.exec(["true"])[0] == 0
    assert ["connect", "192.168.1.20:5555"] in calls(phone)
    monkeypatch.setenv("STANDIN_ADB_DEVICES", "")
    dev = open_device(parse_profile("tcp", {"driver": "adb", "serial": "10.0.0.9:5555"}))
    with pytest.raises(FcbenchError, match="adb connect 10.0.0.9:5555 failed: failed to connect"):
        dev.exec(["true"])


def test_the_real_adb_client_names_a_serial_that_is_not_attached(tmp_path, monkeypatch):
    """The real adb client (its own server on a private port, stopped afterwards): no phone is attached here,
    so the driver must report adb's own line."""
    import shutil
    import subprocess

    real = shutil.which("adb")
    if real is None:
        pytest.skip("the adb client (Android platform-tools) is not installed")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "5149")
    monkeypatch.setenv("ADB_MDNS", "0")
    try:
        dev = AdbDevice(serial="fcbench-no-such-phone", adb=real)
        with pytest.raises(FcbenchError) as exc:
            dev.exec(["true"])
        assert "error: device 'fcbench-no-such-phone' not found" in str(exc.value)
    finally:
        subprocess.run([real, "kill-server"], capture_output=True, timeout=30)


# --- through the CLI: devices check and bench --device on the stand-in phone ------------------------------------

@pytest.fixture(scope="module")
def tiny_onnx_model(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from conftest import TINY_R18, train_tiny

    import fcbench

    root = tmp_path_factory.mktemp("adb-model")
    fcbench.convert(checkpoint=str(train_tiny(root, TINY_R18)), to=["onnx"], out=str(root / "onnx"))
    (onnx,) = (root / "onnx").glob("*.onnx")
    return onnx


def test_devices_check_and_bench_device_on_the_standin_phone(phone, cli, in_tmp, tiny_onnx_model):
    """`devices check` says which backends the phone's tools run; `bench --device` runs the native tool there
    and stores a row from the tool's own statistics (no samples), with the phone's fingerprint; a backend with
    no tool (OpenCV DNN) is a failed cell saying so."""
    tools = phone / "data" / "local" / "tmp"
    (tools / "onnxruntime_perf_test.out").write_text(fixture("onnxruntime_perf_test-cpu"))
    _script(tools / "onnxruntime_perf_test", f'#!/bin/sh\ncat "{tools}/onnxruntime_perf_test.out"\n')
    (in_tmp / "devices").mkdir()
    (in_tmp / "devices" / "pixel.toml").write_text(
        f'driver = "adb"\nserial = "{SERIAL}"\nbackends = ["ort-cpu", "tflite-gpu", "opencv-cpu"]\n'
        '[tools]\nonnxruntime_perf_test = "/data/local/tmp/onnxruntime_perf_test"\n'
        'benchmark_model = "/data/local/tmp/nothing_here"\n[measure]\nretries = 0\n')
    r = cli("devices", "check", "pixel", "--format", "json")
    assert r.code == 0, r.err
    (check,) = json.loads(r.out)
    assert check["info"]["model"] == "Pixel 4a" and check["info"]["battery"]["level"] == 87
    runs = {b["backend"]: b for b in check["backends"]}
    assert runs["ort-cpu"]["runs"] and runs["ort-cpu"]["tool"] == "onnxruntime_perf_test"
    assert not runs["tflite-gpu"]["runs"] and "nothing_here" in runs["tflite-gpu"]["reason"]
    assert not runs["opencv-cpu"]["runs"] and "OpenCV" in runs["opencv-cpu"]["reason"]
    r = cli("bench", tiny_onnx_model, "--backend", "ort-cpu,opencv-cpu", "--device", "pixel", "--store", "s.sqlite")
    assert r.code == 1, r.err  # opencv-cpu has no tool on Android: a failed cell
    from fcbench.results.store import Store

    with Store(in_tmp / "s.sqlite") as s:
        rows = {row["backend"]: row for row in s.query(kind="speed")}
    ort = rows["onnxruntime"]
    assert ort["device"] == "pixel" and ort["extra"]["status"] == "ok" and ort["samples_ms"] == []
    assert ort["extra"]["stats_from"] == "onnxruntime_perf_test" and ort["p50_ms"] > 0 and ort["runs"] > 0
    assert ort["device_fingerprint"] and ort["device_info"].get("model") == "Pixel 4a"
    assert rows["opencv-dnn"]["extra"]["status"] == "failed" and "OpenCV" in rows["opencv-dnn"]["extra"]["reason"]
