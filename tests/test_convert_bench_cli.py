"""convert + bench through the CLI on tiny models: every format, every installed backend, for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import converted_file, manifest_for, save_small_keras

from fcbench.backends import get_backend
from fcbench.conversion import EXPORTERS, exporter_class
from fcbench.results.store import Store
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

TINY = {
    "r18": dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                            "embedding_size": 16},
                data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4}),
    "mobilenet_v2": dict(model="mobilenet_v2", model_options={"width": 0.25, "num_classes": 5, "input_size": [32, 32]},
                         head="softmax", data="synthetic:classes",
                         data_options={"num_classes": 5, "samples_per_class": 4}),
}
FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0", "--threads", "2"]


def _installed_formats() -> list[str]:
    return [f for f in EXPORTERS if exporter_class(f).available()[0]]


def _need_runtime(plugin: str) -> None:
    """Skip when the backend's runtime is not installed here (the reason names the package)."""
    ok, why = get_backend(plugin).available()
    if not ok:
        pytest.skip(why)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Train each tiny model for a few steps, then `fcbench convert --to all` through the CLI."""
    from click.testing import CliRunner

    from fcbench.cli import app

    root = tmp_path_factory.mktemp("cb")
    out = {}
    for name, spec in TINY.items():
        ckpt = train(TrainConfig(**spec, epochs=1, batch_size=8, lr=0.01, out=str(root / name)))
        r = CliRunner().invoke(app, ["convert", str(ckpt), "--to", "all", "--format", "json"])
        assert r.exit_code == 0, r.output
        out[name] = (Path(ckpt), json.loads(r.stdout))
    return root, out


@pytest.mark.parametrize("name", list(TINY))
def test_convert_all_formats_with_parity(converted, name):
    _, out = converted
    ckpt, outcomes = out[name]
    by_format = {o["format"]: o for o in outcomes}
    assert set(by_format) == set(EXPORTERS)
    for fmt in EXPORTERS:
        o = by_format[fmt]
        if fmt not in _installed_formats():
            assert o["status"] == "skipped" and "install" in o["reason"]
            continue
        assert o["status"] == "ok", o
        assert o["parity"]["ok"] is True and o["parity"]["cosine"] > 0.9999, o["parity"]
        manifest = json.loads(Path(o["file"] + ".manifest.json").read_text())
        assert manifest["format"] == fmt and manifest["lineage"][-1]["verb"] == "convert"
        assert manifest["extra"]["parity"]["max_abs_diff"] == o["parity"]["max_abs_diff"]
        assert manifest["preprocessing"]["size"] == [32, 32]


@pytest.mark.parametrize("name", list(TINY))
def test_bench_all_backends(converted, cli, name):
    """`--backend all` on every artifact: each installed backend runs what it loads; the rest say why."""
    root, out = converted
    ckpt, outcomes = out[name]
    files = [str(ckpt)] + [o["file"] for o in outcomes if o["status"] == "ok"]
    store = root / f"bench-{name}.sqlite"
    r = cli("bench", *files, "--backend", "all", *FAST, "--format", "json", "--store", store)
    cells = json.loads(r.out)
    assert r.code == 0, (r.err, [c for c in cells if c["status"] == "failed"])
    ran = {(c["format"], c["backend"].split(":")[0]) for c in cells if c["status"] == "ok"}
    for fmt, backend in [("fcbench-ckpt", "pytorch"), ("onnx", "onnxruntime"), ("onnx", "openvino"),
                         ("onnx", "opencv-dnn"), ("openvino", "openvino"), ("tflite", "tflite"),
                         ("ptl", "pytorch-mobile"), ("pte", "executorch")]:
        # a pair is left out only where its runtime or its converter is not installed here; a
        # conversion that failed leaves its format out of the cells, and that fails here too
        if get_backend(backend).available()[0] and (fmt == "fcbench-ckpt" or exporter_class(fmt).available()[0]):
            assert (fmt, backend) in ran, (fmt, backend, [c for c in cells if c["format"] == fmt])
    for backend, fmt in [("tflite:xnnpack", "tflite"), ("executorch:xnnpack", "pte")]:
        if get_backend(backend.split(":")[0]).available()[0] and exporter_class(fmt).available()[0]:
            assert any(c["backend"] == backend and c["status"] == "ok" for c in cells), (backend, cells)
    for c in cells:
        if c["status"] == "ok":
            assert 0 < c["p50_ms"] <= c["p90_ms"] and c["runs"] >= 3 and c["size_mb"] > 0
            assert c["placement"] and c["precision"]  # as the runtime reports it, or "not reported"
            if c["backend"] in ("tflite:xnnpack", "executorch:xnnpack"):
                assert "XNNPACK" in c["placement"], c
        else:
            assert c["reason"], c  # every cell that did not run says why
    with Store(store) as s:
        rows = s.query(kind="speed")
    assert len(rows) == sum(c["status"] != "skipped" for c in cells)
    assert all(r["threads"] == 2 and r["p50_ms"] > 0 for r in rows)
    # importing the runtime is recorded apart from loading the model (init_ms)
    ok_rows = [r for r in rows if r["extra"]["status"] == "ok"]
    assert ok_rows and all(isinstance(r["extra"]["import_ms"], float) and r["init_ms"] > 0 for r in ok_rows)
    # every timed run, in its own column (store schema 2), not in extra
    assert all(len(r["samples_ms"]) == r["runs"] and min(r["samples_ms"]) == pytest.approx(r["min_ms"], abs=1e-3)
               and "samples_ms" not in r["extra"] for r in ok_rows)


def test_runtime_import_time_is_recorded_apart_from_loading(converted, cli, tmp_path, monkeypatch):
    """A runtime that takes a second to import: import_ms carries that second, init_ms (the load) does not."""
    import sys

    _need_runtime("onnxruntime")
    _, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    (tmp_path / "fcbench_slow_import_probe.py").write_text("import time\ntime.sleep(1.0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = type(get_backend("onnxruntime"))
    monkeypatch.setattr(cls, "runtime_modules", (*cls.runtime_modules, "fcbench_slow_import_probe"))
    try:
        r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--in-process", "--format", "json",
                "--store", tmp_path / "s.sqlite")  # in-process: the patched runtime lives in this process
    finally:
        sys.modules.pop("fcbench_slow_import_probe", None)
    assert r.code == 0, r.err
    with Store(tmp_path / "s.sqlite") as s:
        (row,) = s.query(kind="speed")
    assert row["extra"]["import_ms"] >= 1000 and row["init_ms"] < 1000, (row["extra"]["import_ms"], row["init_ms"])


def test_a_glob_of_a_run_folder_benches_and_evaluates_the_artifacts_only(converted, cli, tmp_path):
    """`fcbench bench run/model.*` also matches the manifests and OpenVINO's .bin: they are left out, said once."""
    root, out = converted
    ckpt, outcomes = out["r18"]
    xml = str(converted_file(outcomes, "openvino"))  # its .bin is what the glob must leave out
    files = sorted(str(p) for p in ckpt.parent.glob("model.*"))
    assert any(f.endswith(".bin") for f in files) and any(f.endswith(".manifest.json") for f in files)
    r = cli("bench", *files, "--backend", "all", *FAST, "--format", "json", "--store", tmp_path / "b.sqlite")
    assert r.code == 0, r.err
    benched = {Path(c["artifact"]).name for c in json.loads(r.out)}
    assert benched == {Path(f).name for f in files if not f.endswith((".bin", ".manifest.json"))}, benched
    assert "left out" in r.err and "model.bin" in r.err
    r = cli("eval", xml, xml[:-4] + ".bin", xml + ".manifest.json", "--backend", "openvino-f32", *PAIRS,
            "--store", tmp_path / "e.sqlite")
    assert r.code == 0, r.err
    assert json.loads(r.out)["backend"].startswith("openvino") and "model.bin" in r.err


def test_bench_profiles_and_table(converted, cli):
    root, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    r = cli("bench", onnx, "--backend", "ort-cpu,openvino-f32,onnxruntime:cpu", *FAST, "--store", root / "p.sqlite")
    assert r.code == 0, r.err
    assert "onnxruntime:cpu" in r.out and "p50" in r.out


def test_bench_bad_artifact_fails_its_cell_and_the_matrix_goes_on(converted, cli, tmp_path):
    root, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf" * 20)
    manifest_for(bad, onnx)
    r = cli("bench", bad, onnx, "--backend", "onnxruntime:cpu", *FAST, "--format", "json",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 1
    cells = {Path(c["artifact"]).name: c for c in json.loads(r.out)}
    assert cells["broken.onnx"]["status"] == "failed" and "broken.onnx" in cells["broken.onnx"]["reason"]
    assert cells[onnx.name]["status"] == "ok"
    with Store(tmp_path / "s.sqlite") as s:
        statuses = sorted(r["extra"]["status"] for r in s.query(kind="speed"))
    assert statuses == ["failed", "ok"]


def test_bench_without_manifest_offers_inference(converted, cli, tmp_path):
    root, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx, bare)
    r = cli("bench", bare, "--backend", "onnxruntime:cpu", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "--infer-manifest" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("bench", bare, "--backend", "onnxruntime:cpu", *FAST, "--infer-manifest", "--format", "json",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    assert "assumed" in r.err and "preprocessing 'cifar'" in r.err  # 32x32 input: says what it picked
    assert json.loads(r.out)[0]["status"] == "ok"
    with Store(tmp_path / "s.sqlite") as s:
        row = s.query(kind="speed")[-1]
    assert row["extra"]["manifest_inferred"]
    # a file that is not the format its suffix claims
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00" * 64)
    r = cli("bench", fake, "--backend", "tflite:cpu", "--infer-manifest", "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "is not tflite" in r.err


def test_bench_input_shape_mismatch_is_one_line_per_cell(converted, cli, tmp_path):
    root, out = converted
    ptl = converted_file(out["r18"][1], "ptl")
    bare = tmp_path / "bare.ptl"
    shutil.copy(ptl, bare)
    r = cli("bench", bare, "--backend", "pytorch-mobile:cpu", *FAST, "--infer-manifest", "--input-shape",
            "1x3x40x40", "--format", "json", "--store", tmp_path / "s.sqlite")
    assert r.code == 1
    cell = json.loads(r.out)[0]
    assert cell["status"] == "failed" and "\n" not in cell["reason"]


@pytest.mark.parametrize("args, needle", [
    (["--backend", "onnxrt:cpu"], "did you mean"),
    (["--runs", "0"], "--runs"),
    (["--infer-manifest", "--input-shape", "3x112"], "--input-shape"),
])
def test_bench_usage_errors(converted, cli, tmp_path, args, needle):
    _, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    r = cli("bench", onnx, *args, "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and needle in r.err, r.err


def test_convert_usage_errors(converted, cli):
    _, out = converted
    ckpt = out["r18"][0]
    r = cli("convert", ckpt, "--to", "onnx,tflit")
    assert r.code == 2 and "did you mean 'tflite'" in r.err
    r = cli("convert", ckpt, "--to", "onnx", "--opt", "tflite.nhwc=true")
    assert r.code == 2 and "FORMAT.KEY=VALUE" in r.err
    r = cli("convert", ckpt, "--to", "onnx", "--opt", "onnx.opsett=17")
    assert r.code == 2 and "opsett" in r.err


def test_convert_keras_model_through_the_cli(cli, tmp_path):
    pytest.importorskip("keras")
    save_small_keras(tmp_path / "net.keras")
    r = cli("convert", tmp_path / "net.keras", "--to", "tflite",  # faithful by default: tflite.optimize=none
            "--preprocessing", "cifar", "--format", "json")
    assert r.code == 0, r.err
    (o,) = json.loads(r.out)
    assert o["status"] == "ok" and o["parity"]["ok"] is True and o["parity"]["max_abs_diff"] < 1e-5
    manifest = json.loads(Path(o["file"] + ".manifest.json").read_text())
    assert manifest["lineage"][0]["options"]["optimize"] == "none"
    assert manifest["inputs"][0]["layout"] == "NHWC" and manifest["inputs"][0]["shape"] == [1, 32, 32, 3]
    assert manifest["preprocessing"]["mean"][0] == pytest.approx(0.4914)
    r = cli("convert", tmp_path / "net.keras", "--to", "tflite", "--opt", "tflite.optimize=latency",
            "--out", tmp_path / "q", "--format", "json")
    assert r.code == 0, r.err
    (q,) = json.loads(r.out)
    assert q["status"] == "ok" and "not enforced" in q["reason"] and "assumed" in r.err
    assert Path(q["file"]).stat().st_size < Path(o["file"]).stat().st_size  # int8 weights
    r = cli("bench", q["file"], "--backend", "tflite:xnnpack", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    r = cli("convert", tmp_path / "net.keras", "--to", "onnx")
    assert r.code == 2 and "tflite only" in r.err


def test_require_placement_fails_a_partly_delegated_tflite_model(cli, tmp_path):
    """XNNPACK has no CUMSUM: the delegate takes the convolutions, CUMSUM stays on the CPU kernels."""
    import torch

    from fcbench.conversion.tflite import TfliteExporter

    ok, reason = TfliteExporter.available()
    if not ok:
        pytest.skip(reason)

    class WithCumsum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1)).mean((2, 3))

    file = TfliteExporter().export(WithCumsum().eval(), torch.randn(1, 3, 16, 16), tmp_path / "cumsum.tflite",
                                   {"nhwc": True}).file
    common = [file, "--backend", "tflite:xnnpack", "--infer-manifest", *FAST, "--format", "json",
              "--store", tmp_path / "s.sqlite"]
    r = cli("bench", *common, "--require-placement", "1.0")
    assert r.code == 1
    (cell,) = json.loads(r.out)
    assert cell["status"] == "failed" and "CUMSUM" in cell["reason"] and "on CPU" in cell["reason"]
    assert "XNNPACK" in cell["placement"] and "CPU" in cell["placement"]
    r = cli("bench", *common, "--require-placement", "0.5")
    assert r.code == 0, r.err
    r = cli("bench", *common, "--require-placement", "1.5")
    assert r.code == 2 and "[0, 1]" in r.err


def test_inspect_lists_every_node(converted, cli):
    _, out = converted
    xml = converted_file(out["r18"][1], "openvino")
    r = cli("inspect", xml, "--backend", "openvino-f32", "--format", "json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["nodes"] == len(info["per_node"]) > 5 and info["precision"] == "f32"
    assert "Convolution" in {n["op_type"] for n in info["per_node"]} and info["placement"] == "100 % CPU"
    r = cli("inspect", xml, "--backend", "tflite:xnnpack")
    assert r.code == 2 and "does not load openvino" in r.err


def test_precision_is_what_the_runtime_ran(converted, cli, tmp_path):
    """OpenVINO with no hint on a bf16-capable CPU runs bf16: the cell says so; --precision f32 asks for f32."""
    ov = pytest.importorskip("openvino")
    _, out = converted
    xml = converted_file(out["r18"][1], "openvino")
    store = ["--store", tmp_path / "s.sqlite", "--format", "json", *FAST]
    r = cli("bench", xml, "--backend", "openvino:CPU", *store)
    assert r.code == 0, r.err
    (cell,) = json.loads(r.out)
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 (OpenVINO's CPU lists no BF16 capability): no bf16 default to check")
    assert "bf16" in cell["precision"], cell  # e.g. "f32 64 % / bf16 36 %" of the nodes
    r = cli("bench", xml, "--backend", "openvino:CPU", "--precision", "fp32", *store)
    (cell,) = json.loads(r.out)
    assert r.code == 0 and cell["precision"] == "f32", cell
    onnx = converted_file(out["r18"][1], "onnx")
    r = cli("bench", onnx, "--backend", "openvino:CPU,onnxruntime:cpu", "--precision", "bf16", *store)
    cells = {c["backend"]: c for c in json.loads(r.out)}
    assert "bf16" in cells["openvino:CPU"]["precision"]
    assert cells["onnxruntime:cpu"]["status"] == "skipped" and "it can: f32" in cells["onnxruntime:cpu"]["reason"]
    # timed in turn (compare A B, prune --bench): the same refusal, for both files
    from fcbench.backends import resolve
    from fcbench.benchmark.run import load_artifact, run_interleaved
    from fcbench.options import BenchConfig

    bcfg = BenchConfig(artifacts=[onnx, onnx], backends=["onnxruntime:cpu"], precision="bf16")
    both = run_interleaved([load_artifact(onnx, bcfg)] * 2, resolve("onnxruntime:cpu"), bcfg, 1)
    assert [c.status for c in both] == ["skipped"] * 2 and all("it can: f32" in c.reason for c in both), both
    r = cli("bench", xml, "--backend", "openvino:CPU", "--precision", "fp64", *store)
    assert r.code == 2 and "--precision" in r.err


def test_onnxruntime_precision_tells_quantized_from_float_kernels(converted, cli, tmp_path):
    """ORT reports no precision itself; the cell reads it from the nodes ORT says it assigned."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    quantized = tmp_path / "q.onnx"
    quantize_dynamic(onnx, quantized, weight_type=QuantType.QInt8)  # Conv -> ConvInteger (u8 x i8)
    manifest_for(quantized, onnx)
    r = cli("bench", onnx, quantized, "--backend", "onnxruntime:cpu", *FAST, "--format", "json",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    cells = {Path(c["artifact"]).name: c for c in json.loads(r.out)}
    assert cells[onnx.name]["precision"] == "f32"
    assert cells["q.onnx"]["precision"] == "u8", cells["q.onnx"]  # every conv/matmul runs 8-bit
    assert cells[onnx.name]["peak_share"] > 0 and cells["q.onnx"]["peak_share"] is None  # no integer peak
    r = cli("inspect", quantized, "--backend", "onnxruntime:cpu", "--format", "json")
    assert r.code == 0, r.err
    ops = {(n["op_type"], n["precision"]) for n in json.loads(r.out)["per_node"]}
    assert ("ConvInteger", "u8") in ops and ("Conv", "f32") not in ops


def test_pipeline_times_each_stage_for_a_folder_of_jpegs(converted, cli, tmp_path):
    import numpy as np
    from PIL import Image

    _, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    images = tmp_path / "faces"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # camera-sized JPEGs: decode and resize are part of what the app pays
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(images / f"{i}.jpg", quality=90)
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--pipeline", "--images", images,
            "--format", "json", "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    assert "broken.jpg" in r.err and "1 unreadable" in r.err
    (cell,) = json.loads(r.out)
    stages = [cell[f"app_{s}_ms"] for s in ("read", "decode", "preprocess", "infer", "postprocess")]
    assert all(v > 0 for v in stages)
    assert cell["app_total_ms"] >= cell["app_infer_ms"] and cell["app_decode_ms"] > cell["app_read_ms"]
    with Store(tmp_path / "s.sqlite") as s:
        pipe = s.query(kind="speed")[-1]["extra"]["pipeline"]
    assert pipe["images"] == 5 and len(pipe["unreadable"]) == 1 and pipe["queries"] >= 4
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", "--pipeline", "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "--images" in r.err
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", "--pipeline", "--images", tmp_path / "none",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "not a folder" in r.err


PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=40", "--nfolds", "2", "--format", "json"]


@pytest.mark.parametrize("fmt, backend", [("onnx", None), ("tflite", "tflite:xnnpack"),
                                          ("openvino", "openvino-f32"), ("pte", None), ("ptl", None)])
def test_eval_through_a_runtime_matches_pytorch(converted, cli, tmp_path, fmt, backend):
    _, out = converted
    plugin = {"onnx": "onnxruntime", "tflite": "tflite", "openvino": "openvino", "pte": "executorch",
              "ptl": "pytorch-mobile"}[fmt]
    _need_runtime(plugin)
    file = converted_file(out["r18"][1], fmt)
    r = cli("eval", file, *(["--backend", backend] if backend else []), *PAIRS, "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["backend"].startswith(plugin)
    assert abs(rep["metrics"]["accuracy"] - rep["pytorch"]["accuracy"]) <= 0.02
    assert abs(rep["delta"]["accuracy"]) <= 0.02
    assert rep["placement"] and rep["precision"]  # where the eval ran, as for a bench cell
    with Store(tmp_path / "s.sqlite") as s:
        rows = s.query(kind="quality", metric="accuracy")
    assert {r["format"] for r in rows} == {fmt, "fcbench-ckpt"}  # the artifact's row and its float parent's
    assert next(r for r in rows if r["format"] == fmt)["extra"]["delta"] == rep["delta"]["accuracy"]


def test_eval_classification_and_nhwc_through_runtimes(converted, cli, tmp_path):
    _, out = converted
    ckpt = out["mobilenet_v2"][0]
    r = cli("convert", ckpt, "--to", "onnx,tflite", "--opt", "tflite.nhwc=true", "--out", tmp_path, "--format", "json")
    assert r.code == 0, r.err
    outcomes = json.loads(r.out)
    for file in [converted_file(outcomes, "onnx"), converted_file(outcomes, "tflite")]:
        r = cli("eval", file, "--data", "synthetic:classes", "--data-opt", "num_classes=5",
                "--data-opt", "samples_per_class=4", "--format", "json", "--store", tmp_path / "s.sqlite")
        assert r.code == 0, r.err
        rep = json.loads(r.out)
        assert rep["protocol"] == "classification" and abs(rep["delta"]["top1"]) <= 0.02, rep
    manifest = json.loads(Path(str(tmp_path / "model.tflite") + ".manifest.json").read_text())
    assert manifest["inputs"][0]["layout"] == "NHWC"


def test_eval_through_a_runtime_bad_input(converted, cli, tmp_path):
    _, out = converted
    onnx = converted_file(out["r18"][1], "onnx")
    store = ["--store", tmp_path / "s.sqlite"]
    r = cli("eval", onnx, "--backend", "onnxrt:cpu", *PAIRS, *store)
    assert r.code == 2 and "did you mean" in r.err
    r = cli("eval", onnx, "--backend", "tflite:xnnpack", *PAIRS, *store)
    assert r.code == 2 and "does not load onnx" in r.err
    moved = tmp_path / "moved.onnx"  # without its manifest, and away from its float parent
    shutil.copy(onnx, moved)
    r = cli("eval", moved, *PAIRS, *store)
    assert r.code == 2 and "--infer-manifest" in r.err
    shutil.copy(str(onnx) + ".manifest.json", str(moved) + ".manifest.json")
    r = cli("eval", moved, *PAIRS, *store)
    assert r.code == 0 and "no PyTorch reference" in r.err and json.loads(r.out)["delta"] == {}


def test_max_drop_fails_a_damaged_artifact_and_passes_a_faithful_one(cli, tmp_path):
    """A classifier that fits its data; the faithful ONNX passes a 1-point budget, the same ONNX
    with the classifier's sign flipped (argmax becomes argmin) fails it."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    data = ["--data", "synthetic:classes", "--data-opt", "num_classes=4", "--data-opt", "samples_per_class=6"]
    ckpt = train(TrainConfig(model="resnet18", model_options={"width": 0.25, "layers": [1, 1, 1, 1], "num_classes": 4,
                                                              "input_size": [32, 32], "cifar_stem": True},
                             head="softmax", data="synthetic:classes",
                             data_options={"num_classes": 4, "samples_per_class": 6}, epochs=30, batch_size=8,
                             lr=0.05, schedule="cosine", out=str(tmp_path / "m")))
    r = cli("convert", ckpt, "--to", "onnx", "--format", "json")
    assert r.code == 0, r.err
    good = Path(json.loads(r.out)[0]["file"])
    store = ["--store", tmp_path / "s.sqlite", "--format", "json"]
    r = cli("eval", good, *data, "--max-drop", "1", *store)
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["pytorch"]["top1"] >= 0.5, rep  # the model learned something to lose
    model = onnx.load(str(good))
    last = [i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 2][-1]  # classifier weight
    last.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(last), last.name))
    bad = good.with_name("damaged.onnx")
    onnx.save(model, str(bad))
    manifest_for(bad, good)
    r = cli("eval", bad, *data, "--max-drop", "1", *store)
    assert r.code == 1 and "FAIL" in r.err and "top1" in r.err
    assert json.loads(r.out)["delta"]["top1"] < -0.3
    r = cli("eval", ckpt, *data, "--max-drop", "1", *store)
    assert r.code == 2 and "float parent" in r.err
    lonely = tmp_path / "lonely.onnx"  # manifest kept, float parent gone
    lonely.write_bytes(good.read_bytes())
    manifest = json.loads(Path(str(good) + ".manifest.json").read_text())
    manifest["lineage"][-1]["options"]["parent_file"] = "nowhere.pt"
    Path(str(lonely) + ".manifest.json").write_text(json.dumps(manifest))
    with Store(tmp_path / "s.sqlite") as s:
        before = len(s.query())
    r = cli("eval", lonely, *data, "--max-drop", "1", *store)
    assert r.code == 2 and "nowhere.pt" in r.err and "evaluated" not in r.err
    with Store(tmp_path / "s.sqlite") as s:
        assert len(s.query()) == before  # refused before evaluating: no row
    r = cli("eval", good, *data, "--max-drop", "-1", *store)
    assert r.code == 2 and "--max-drop" in r.err
    assert np.isfinite(rep["metrics"]["top1"])


EXOTIC = '''
import torch
from fcbench.models import register_model


class Exotic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        h = self.stem(x)
        return self.head((torch.logcumsumexp(h, dim=2) + torch.special.erfcx(h) + torch.special.i0(h)).mean((2, 3)))


@register_model(task="classification", input_size=(16, 16))
def exotic(num_classes: int = 4, input_size=(16, 16)):
    return Exotic()
'''


@pytest.fixture
def exotic_checkpoint(tmp_path, monkeypatch):
    """A model plugin made visible through an entry point (a dist-info folder on sys.path), saved as a checkpoint."""
    import importlib
    import sys

    from fcbench.models import create
    from fcbench.training.checkpoint import save_checkpoint

    site = tmp_path / "site"
    (site / "exotic_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "exotic_plugin.py").write_text(EXOTIC)
    (site / "exotic_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: exotic-plugin\n"
                                                                  "Version: 0.1\n")
    (site / "exotic_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[fcbench.models]\nexotic = exotic_plugin:exotic\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    model = create("exotic")
    path = tmp_path / "exotic" / "model.pt"
    path.parent.mkdir()
    save_checkpoint(path, model)
    yield path
    sys.modules.pop("exotic_plugin", None)


def test_convert_check_lists_every_op_a_format_will_not_take(cli, exotic_checkpoint):
    r = cli("convert", exotic_checkpoint, "--to", "onnx,tflite,openvino,pte,ptl", "--check", "--format", "json")
    assert r.code == 1, r.err
    checks = {c["format"]: c for c in json.loads(r.out)}
    for fmt in ("tflite", "pte"):  # every unsupported op at once, not only the first
        ops = {b["op"] for b in checks[fmt]["blockers"]}
        assert {"aten::logcumsumexp", "aten::special_erfcx", "aten::special_i0"} <= ops, checks[fmt]
        assert all(b["module"] for b in checks[fmt]["blockers"])
    cumsum = next(b for b in checks["tflite"]["blockers"] if b["op"] == "aten::logcumsumexp")
    assert "onnx" in cumsum["taken_by"] and "tflite" not in cumsum["taken_by"]
    i0 = next(b for b in checks["onnx"]["blockers"] if b["op"] == "aten::special_i0")
    assert i0["lowered"] == "prims::bessel_i0" and i0["taken_by"] == []  # no checked format takes it
    assert checks["ptl"]["status"] == "unchecked" and checks["ptl"]["note"]
    assert not list(exotic_checkpoint.parent.glob("*.onnx")), "--check writes nothing"
    r = cli("convert", exotic_checkpoint, "--to", "tflite", "--format", "json")
    assert r.code == 1
    (o,) = json.loads(r.out)
    assert o["status"] == "failed" and "aten::special_erfcx" in o["reason"] and "aten::special_i0" in o["reason"]


def test_convert_check_passes_a_plain_model(converted, cli):
    _, out = converted
    r = cli("convert", out["r18"][0], "--to", "onnx,tflite,openvino,pte", "--check")
    assert r.code == 0, r.err
    assert "nothing written" in r.out


def test_eval_matrix_shows_the_delta_beside_each_cell(converted, cli, tmp_path):
    _, out = converted
    files = {fmt: converted_file(out["r18"][1], fmt) for fmt in ("onnx", "openvino")}
    r = cli("eval", files["onnx"], files["openvino"], "--backend", "onnxruntime:cpu,openvino-f32", *PAIRS,
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    cells = {(c["artifact"], c["backend"]): c for c in json.loads(r.out)}
    assert cells["model.onnx", "onnxruntime:cpu"]["status"] == "ok"
    assert cells["model.xml", "openvino-f32"]["status"] == "ok"
    assert cells["model.xml", "onnxruntime:cpu"]["status"] == "skipped"  # ORT does not load IR; says so
    for c in cells.values():
        if c["status"] == "ok":
            assert c["metric"] == "accuracy" and abs(c["delta"]) <= 0.02 and c["pytorch"] is not None
            assert c["precision"] and c["placement"]
    with Store(tmp_path / "s.sqlite") as s:
        parent_rows = [r for r in s.query(kind="quality", metric="accuracy") if r["format"] == "fcbench-ckpt"]
    assert len(parent_rows) == 1  # the float parent was evaluated once for all cells
