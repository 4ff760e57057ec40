"""The bench worker behind the Device protocol: job JSON, the worker on a real tiny ONNX through
LocalDevice, subprocess vs in-process cells, the ``run`` kind, crashes and garbage, the CLI flag."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import manifest_for

from fcbench.artifact import read_manifest
from fcbench.backends import expand, get_backend
from fcbench.benchmark.job import BenchJob
from fcbench.benchmark.run import BenchConfig, bench, prepared_input, run_cell
from fcbench.devices import runner
from fcbench.devices.fingerprint import fingerprint, machine_info
from fcbench.devices.local import LocalDevice
from fcbench.results.store import Store

FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def onnx(tmp_path_factory) -> Path:
    """A tiny r18 (trained one step), converted to ONNX by fcbench's own convert."""
    pytest.importorskip("onnxruntime")
    from fcbench.conversion import convert
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    root = tmp_path_factory.mktemp("worker")
    ckpt = train(TrainConfig(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1],
                                                         "input_size": [32, 32], "embedding_size": 16},
                             data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4},
                             epochs=1, max_steps=1, batch_size=8, lr=0.01, out=str(root / "r18")))
    (o,) = convert(ckpt, ["onnx"])
    assert o.status == "ok", o.reason
    return Path(o.file)


def _job(path: Path, **kw) -> BenchJob:
    return BenchJob(artifact=path.name, manifest=read_manifest(path).to_dict(), plugin="onnxruntime", variant="cpu",
                    threads=1, warmup=1, runs=3, min_seconds=0.0, label=f"{path.name} on onnxruntime:cpu", **kw)


def test_job_json_round_trip_and_bad_jobs():
    job = BenchJob(artifact="model.xml", manifest={"format": "openvino"}, plugin="openvino", variant="CPU",
                   companions=["model.bin"], options={"inference_precision": "f32", "nested": {"a": [1, 2]}},
                   threads=2, warmup=3, runs=7, min_seconds=0.5, max_seconds=2.0, batch=4, seed=9, label="x on y")
    again = BenchJob.from_json(job.to_json())
    assert again == job and again.files() == ["model.xml", "model.bin"]
    run = BenchJob(artifact="m.onnx", manifest={}, plugin="onnxruntime", variant="cpu", kind="run",
                   inputs="in.npy", outputs="out.npy")
    assert BenchJob.from_json(run.to_json()) == run and run.files() == ["m.onnx", "in.npy"]
    d = json.loads(job.to_json())
    for bad, needle in [({**d, "kind": "train"}, "kind"), ({**d, "artifact": "../etc/passwd"}, "inside the job"),
                        ({**d, "surprise": 1}, "unknown keys surprise"), ({**d, "version": 99}, "newer"),
                        ({k: v for k, v in d.items() if k != "plugin"}, "plugin"),
                        ({**d, "kind": "run"}, "inputs and outputs")]:
        with pytest.raises(ValueError, match=needle):
            BenchJob.from_json(json.dumps(bad))
    with pytest.raises(ValueError, match="not a JSON object"):
        BenchJob.from_json("[1, 2]")


def test_machine_fingerprint_names_the_hardware_not_the_software(tmp_path):
    info = machine_info()
    assert info["cpu"] and info["arch"] and info["cores"] >= 1 and info["python"].split()[1] in sys.version
    assert isinstance(info["isa"], list) and info["memory_gb"] > 0 and info["kernel"] and info["os"]
    fp = fingerprint(info)
    assert len(fp) == 12 and int(fp, 16) >= 0
    assert fingerprint({**info, "kernel": "9.9", "python": "CPython 3.99", "usable_cores": 1}) == fp
    assert fingerprint({**info, "isa": list(reversed(info["isa"]))}) == fp
    assert fingerprint({**info, "cpu": "another CPU"}) != fp
    assert fingerprint({**info, "isa": [*info["isa"], "amx_tile"]}) != fp or "amx_tile" in info["isa"]
    local = LocalDevice(workdir=str(tmp_path)).info()
    assert local["fingerprint"] == fp and local["cpu"] == info["cpu"] and local["driver"] == "local"


def test_worker_runs_a_bench_job_through_the_local_device(onnx, tmp_path):
    dev = LocalDevice(workdir=str(tmp_path / "device"))
    raw = runner.run_job(dev, _job(onnx), [onnx], logs=tmp_path / "logs")
    assert raw["status"] == "ok", raw.get("reason")
    assert len(raw["samples_ms"]) >= 3 and all(s > 0 for s in raw["samples_ms"])
    assert raw["first_run_ms"] > 0 and raw["init_ms"] > 0 and raw["import_ms"] >= 0 and raw["peak_mem_mb"] > 0
    assert raw["placement"] and {p["placement"] for p in raw["placement"]} == {"CPUExecutionProvider"}
    assert "onnxruntime" in raw["versions"]
    assert raw["machine"]["cpu"] == machine_info()["cpu"] and raw["kind"] == "bench"
    assert len(raw["output"]) == read_manifest(onnx).output_size == 16 and raw["output_shape"] == [1, 16]
    assert raw["worker"]["imported"] == []  # neither torch nor the CLI libraries: runtime, numpy, fcbench only
    assert not (tmp_path / "logs").exists()  # logs are kept for failed cells only
    assert list((tmp_path / "device" / "jobs").iterdir()) == []  # the job folder is removed on the device
    # the output is what an in-process session gives for the same prepared input
    manifest = read_manifest(onnx)
    session = get_backend("onnxruntime").load(onnx, manifest, "cpu", 1, {})
    want = np.asarray(session.run(prepared_input(manifest, 1))).ravel()
    np.testing.assert_allclose(raw["output"], want, rtol=0, atol=1e-6)


def test_subprocess_and_in_process_cells_fill_the_same_fields(onnx, tmp_path):
    manifest = read_manifest(onnx)
    (spec,) = expand(["onnxruntime:cpu"])
    cells = {}
    for isolation in ("subprocess", "inprocess"):
        cfg = BenchConfig(artifacts=[str(onnx)], backends=["onnxruntime:cpu"], threads=1, warmup=1, runs=5,
                          min_seconds=0, isolation=isolation).validate()
        cells[isolation] = run_cell(onnx, manifest, spec, cfg, 1)
    sub, here = cells["subprocess"], cells["inprocess"]
    for c in (sub, here):
        assert c.status == "ok", c.reason
        assert c.stats.runs >= 5 and 0 < c.stats.p50_ms <= c.stats.p90_ms
        assert c.extra["device_fingerprint"] == fingerprint(machine_info())
    assert (sub.extra["isolation"], here.extra["isolation"]) == ("subprocess", "inprocess")
    filled = {name: {k for k, v in vars(c).items() if v is not None} for name, c in cells.items()}
    assert filled["subprocess"] == filled["inprocess"]
    assert set(sub.extra) - {"worker_wall_ms"} == set(here.extra)
    assert sub.extra["placement"] == here.extra["placement"] and sub.extra["precision"] == here.extra["precision"]
    np.testing.assert_allclose(sub.output, here.output, rtol=0, atol=1e-6)  # same input, same model
    print(f"p50 subprocess {sub.stats.p50_ms:.4f} ms, in-process {here.stats.p50_ms:.4f} ms")


def test_run_kind_outputs_match_an_in_process_session(onnx, tmp_path):
    manifest = read_manifest(onnx)
    x = np.concatenate([prepared_input(manifest, 1, seed=s) for s in range(3)])
    np.save(tmp_path / "inputs.npy", x)
    job = _job(onnx, kind="run", inputs="inputs.npy", outputs="outputs.npy")
    raw = runner.run_job(LocalDevice(workdir=str(tmp_path / "device")), job, [onnx, tmp_path / "inputs.npy"])
    assert raw["status"] == "ok", raw.get("reason")
    session = get_backend("onnxruntime").load(onnx, manifest, "cpu", 1, {})
    want = np.concatenate([np.asarray(session.run(x[i:i + 1])) for i in range(len(x))])
    assert raw["outputs"].shape == want.shape == (3, 16) and raw["output_shape"] == [3, 16]
    np.testing.assert_allclose(raw["outputs"], want, rtol=0, atol=1e-5)
    assert raw["placement"] and "onnxruntime" in raw["versions"]


def test_run_batches_pads_the_last_slice_to_the_fixed_batch():
    from fcbench.worker import run_batches

    class FixedTwo:
        def run(self, x):
            assert len(x) == 2, "this artifact takes batches of exactly 2"
            return x.reshape(2, -1).sum(1, keepdims=True)

    x = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    out = run_batches(FixedTwo(), x, 2)
    np.testing.assert_array_equal(out, x.sum(1, keepdims=True))


def test_worker_called_wrongly_or_with_a_bad_job(tmp_path):
    dev = LocalDevice(workdir=str(tmp_path))
    rc, _, err = dev.exec([sys.executable, "-m", "fcbench.worker"])
    assert rc == 2 and "usage" in err
    (tmp_path / "job.json").write_text('{"artifact": "m.onnx"}')
    rc, _, err = dev.exec([sys.executable, "-m", "fcbench.worker", "job.json", "out.json"])
    assert rc == 0, err
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["status"] == "failed" and "cannot read job" in out["reason"] and out["machine"]["cpu"]


# a worker command that crashes, prints garbage or writes garbage, for the cell named crash.onnx only;
# every other cell goes to the real worker, so the matrix can be seen going on
_WRAP = ("import json, os, runpy, sys\n"
         "job = json.load(open(sys.argv[1]))\n"
         "if job['artifact'] == 'crash.onnx':\n"
         "    {action}\n"
         "runpy.run_module('fcbench.worker', run_name='__main__')\n")
ACTIONS = {
    "exit 3": ("print('about to fail', file=sys.stderr); sys.exit(3)", "exited 3 (about to fail)"),
    "killed": ("os.kill(os.getpid(), 9)", "killed by signal 9 (SIGKILL)"),
    "prints not json": ("print('not json'); sys.exit(0)", "left no out.json (not json)"),
    "writes not json": ("open(sys.argv[2], 'w').write('not json'); sys.exit(0)", "wrote an out.json that is not JSON"),
    "hangs": ("import time; time.sleep(300)", "timed out"),  # past --worker-timeout
}


@pytest.mark.parametrize("case", list(ACTIONS))
def test_a_crashing_or_garbage_worker_fails_its_cell_and_the_matrix_goes_on(onnx, cli, tmp_path, monkeypatch, case):
    action, needle = ACTIONS[case]
    crash = tmp_path / "crash.onnx"
    shutil.copy(onnx, crash)
    shutil.copy(str(onnx) + ".manifest.json", str(crash) + ".manifest.json")
    code = _WRAP.format(action=action)
    monkeypatch.setattr(runner, "worker_command",
                        lambda device, job, out: [*runner.device_python(device), "-c", code, job, out])
    timeout = "12" if case == "hangs" else "30"  # the hang costs the whole timeout
    r = cli("bench", crash, onnx, "--backend", "onnxruntime:cpu", *FAST, "--worker-timeout", timeout, "--format",
            "json", "--store", tmp_path / "s.sqlite")
    assert r.code == 1
    cells = {Path(c["artifact"]).name: c for c in json.loads(r.out)}
    bad = cells["crash.onnx"]
    assert bad["status"] == "failed" and "\n" not in bad["reason"], bad
    assert "crash.onnx on onnxruntime:cpu" in bad["reason"] and needle in bad["reason"], bad["reason"]
    logs = Path(bad["reason"].split("kept in ")[1])
    assert logs.is_dir() and logs.parent.parent == tmp_path / "worker-logs"  # beside the store, per run and cell
    assert (logs / "job.json").exists() and (logs / "stdout.txt").exists() and (logs / "stderr.txt").exists()
    assert json.loads((logs / "job.json").read_text())["artifact"] == "crash.onnx"
    if case == "exit 3":
        assert "about to fail" in (logs / "stderr.txt").read_text()
    if case == "prints not json":
        assert (logs / "stdout.txt").read_text().strip() == "not json"
    if case == "writes not json":
        assert (logs / "out.json").read_text() == "not json"
    assert cells[onnx.name]["status"] == "ok"  # the matrix went on
    with Store(tmp_path / "s.sqlite") as s:
        rows = {Path(r["artifact"]).name: r for r in s.query(kind="speed")}
    assert rows["crash.onnx"]["extra"]["status"] == "failed"
    assert rows["crash.onnx"]["extra"]["worker_logs"] == str(logs)


def test_a_runtime_error_in_the_worker_names_the_local_file(onnx, tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf" * 10)
    manifest_for(bad, onnx)
    (cell,) = bench(BenchConfig(artifacts=[str(bad)], backends=["onnxruntime:cpu"], threads=1, warmup=1, runs=3,
                                min_seconds=0, worker_logs=str(tmp_path / "logs")))
    assert cell.status == "failed" and str(bad) in cell.reason and "jobs/" not in cell.reason, cell.reason
    assert (Path(cell.extra["worker_logs"]) / "out.json").exists()


def test_cli_in_process_flag(onnx, cli, tmp_path):
    store = tmp_path / "s.sqlite"
    for flag in (["--in-process"], []):
        r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, *flag, "--format", "json", "--store", store)
        assert r.code == 0, r.err
        assert json.loads(r.out)[0]["status"] == "ok"
    with Store(store) as s:
        rows = s.query(kind="speed")
    assert [r["extra"]["isolation"] for r in rows] == ["inprocess", "subprocess"]
    for row in rows:
        assert row["device_fingerprint"] == fingerprint(row["device_info"]) and row["device"] == "local"
        assert row["device_info"]["cpu"] and row["p50_ms"] > 0 and row["extra"]["import_ms"] >= 0
