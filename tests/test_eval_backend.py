"""`fcbench eval ARTIFACT --backend X`: accuracy measured through the runtime, beside its float parent's.

One tiny r18 is trained and converted once (onnx, tflite, tflite NHWC, openvino); a tiny
mobilenet_v2 classifier goes through ONNX. Every case runs the real runtimes on synthetic data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import converted_file

from fcbench.artifact import sha256_file
from fcbench.backends import get_backend
from fcbench.conversion import convert
from fcbench.evaluation import EvalConfig, evaluate
from fcbench.results.store import Store
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

R18 = dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                       "embedding_size": 16},
           data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4})
MBV2 = dict(model="mobilenet_v2", model_options={"width": 0.25, "num_classes": 5, "input_size": [32, 32]},
            head="softmax", data="synthetic:classes", data_options={"num_classes": 5, "samples_per_class": 4})
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=40", "--nfolds", "2", "--threads", "2"]
CLASSES = ["--data", "synthetic:classes", "--data-opt", "num_classes=5", "--data-opt", "samples_per_class=4",
           "--threads", "2"]


def _need(plugin: str) -> None:
    ok, why = get_backend(plugin).available()
    if not ok:
        pytest.skip(f"runtime for backend '{plugin}' is not importable here: {why}")


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """A tiny r18 checkpoint (1 epoch) converted to onnx, tflite, openvino, and tflite NHWC in nhwc/."""
    root = tmp_path_factory.mktemp("evb")
    ckpt = Path(train(TrainConfig(**R18, epochs=1, batch_size=8, lr=0.01, out=str(root / "r18"))))
    outcomes = convert(ckpt, ["onnx", "tflite", "openvino"], root / "r18")
    nhwc = convert(ckpt, ["tflite"], root / "nhwc", options={"tflite": {"nhwc": True}})
    return ckpt, outcomes, nhwc


@pytest.fixture(scope="module")
def mbv2(tmp_path_factory):
    root = tmp_path_factory.mktemp("evb-mbv2")
    ckpt = Path(train(TrainConfig(**MBV2, epochs=1, batch_size=8, lr=0.01, out=str(root / "m"))))
    return ckpt, convert(ckpt, ["onnx"], root / "m")


@pytest.mark.parametrize("fmt, backend, plugin, variant", [
    ("onnx", "onnxruntime:cpu", "onnxruntime", "cpu"),
    ("tflite", "tflite:xnnpack", "tflite", "xnnpack"),
    ("openvino", "openvino-f32", "openvino", "CPU"),
])
def test_eval_through_backend_matches_pytorch(r18, cli, tmp_path, fmt, backend, plugin, variant):
    _need(plugin)
    ckpt, outcomes, _ = r18
    art = converted_file(outcomes, fmt)
    store = tmp_path / "s.sqlite"
    r = cli("eval", art, "--backend", backend, *PAIRS, "--format", "json", "--store", store)
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["backend"] == backend and rep["protocol"] == "verification"
    assert abs(rep["metrics"]["accuracy"] - rep["pytorch"]["accuracy"]) <= 0.02, rep
    assert rep["delta"]["accuracy"] == pytest.approx(rep["metrics"]["accuracy"] - rep["pytorch"]["accuracy"])
    cosine = {"cosine_to_parent_mean", "cosine_to_parent_p1"}  # the embedding against the float parent's
    assert set(rep["delta"]) == set(rep["metrics"]) - cosine  # every other metric has its PyTorch value
    assert rep["metrics"]["cosine_to_parent_p1"] > 0.999  # a faithful conversion: the same embeddings
    with Store(store) as s:
        rows = s.query(kind="quality")
    mine = [x for x in rows if x["format"] == fmt]
    parent = [x for x in rows if x["format"] == "fcbench-ckpt"]
    assert len(mine) == len(rep["metrics"]) and len(parent) == len(rep["metrics"]) - len(cosine)
    row = next(x for x in mine if x["metric"] == "accuracy")
    assert (row["backend"], row["variant"], row["threads"], row["batch"]) == (plugin, variant, 2, 1)
    assert row["artifact"] == str(art) and row["artifact_sha256"] == sha256_file(art)
    assert row["extra"]["pytorch_value"] == rep["pytorch"]["accuracy"]
    assert row["extra"]["delta"] == pytest.approx(rep["delta"]["accuracy"])
    assert row["extra"]["placement"]  # where it ran, as the runtime reports it
    if plugin == "openvino":  # asked for f32, and the compiled model says so
        assert row["extra"]["inference_precision"] == "f32"
    assert next(x for x in parent if x["metric"] == "accuracy")["artifact_sha256"] == sha256_file(ckpt)


def test_default_backend_table_and_library(r18, cli, tmp_path):
    """No --backend: the format's own runtime; a profile name through the library; the table shows both."""
    _need("onnxruntime")
    _, outcomes, _ = r18
    onnx = converted_file(outcomes, "onnx")
    r = cli("eval", onnx, *PAIRS, "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    assert "backend=onnxruntime:cpu" in r.out.replace("\n", "")
    for column in ("pytorch", "delta", "accuracy"):
        assert column in r.out
    rep = evaluate(EvalConfig(checkpoint=str(onnx), backend="ort-cpu", data="synthetic:pairs",
                              data_options={"num_pairs": 40}, nfolds=2, threads=2))
    assert rep.backend == "ort-cpu" and rep.reference and not rep.notes
    values = dict(rep.metrics)
    assert abs(values["accuracy"] - rep.reference["accuracy"]) <= 0.02
    assert "CPUExecutionProvider" in rep.trust["placement"]


def test_checkpoint_backends(r18, cli, tmp_path):
    """A .pt stays on eager PyTorch (also with --backend pytorch); pytorch-mobile is not PyTorch eager."""
    ckpt, _, _ = r18
    store = ["--store", tmp_path / "s.sqlite", "--format", "json"]
    r = cli("eval", ckpt, *PAIRS, *store)
    assert r.code == 0, r.err
    default = json.loads(r.out)
    assert default["backend"] == "pytorch:eager" and default["metrics"]
    r = cli("eval", ckpt, "--backend", "pytorch", *PAIRS, *store)
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["backend"] == "pytorch:eager" and rep["metrics"] == default["metrics"] and rep["delta"] == {}
    r = cli("eval", ckpt, "--backend", "pytorch-mobile:cpu", *PAIRS, *store)
    assert r.code == 2 and "does not load fcbench-ckpt" in r.err


def test_classification_through_onnx(mbv2, cli, tmp_path):
    _need("onnxruntime")
    _, outcomes = mbv2
    r = cli("eval", converted_file(outcomes, "onnx"), "--backend", "onnxruntime:cpu", *CLASSES, "--format", "json",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["protocol"] == "classification" and rep["model"] == "mobilenet_v2"
    assert abs(rep["metrics"]["top1"] - rep["pytorch"]["top1"]) <= 0.02, rep
    assert "top1" in rep["delta"]


def test_nhwc_tflite(r18, cli, tmp_path):
    _need("tflite")
    _, _, nhwc = r18
    art = converted_file(nhwc, "tflite")
    manifest = json.loads(Path(str(art) + ".manifest.json").read_text())
    assert manifest["inputs"][0]["layout"] == "NHWC" and manifest["inputs"][0]["shape"] == [1, 32, 32, 3]
    r = cli("eval", art, "--backend", "tflite:xnnpack", *PAIRS, "--format", "json", "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert abs(rep["delta"]["accuracy"]) <= 0.02, rep


def _one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("fcbench: error: "), err
    return lines[0]


def test_bad_input(r18, cli, tmp_path):
    _need("onnxruntime")
    _, outcomes, _ = r18
    onnx = converted_file(outcomes, "onnx")
    store = ["--store", tmp_path / "s.sqlite"]
    r = cli("eval", onnx, "--backend", "onnxruntme:cpu", *PAIRS, *store)
    assert r.code == 2 and "did you mean 'onnxruntime" in _one_error_line(r.err)
    r = cli("eval", onnx, "--backend", "tflite-xnnpack", *PAIRS, *store)
    assert r.code == 2 and "does not load onnx (it loads tflite)" in _one_error_line(r.err)
    r = cli("eval", tmp_path / "missing.onnx", *PAIRS, *store)
    assert r.code == 2 and "does not exist" in _one_error_line(r.err)
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx, bare)
    r = cli("eval", bare, *PAIRS, *store)
    assert r.code == 2 and "no manifest" in _one_error_line(r.err)
    # data of another size than the artifact takes (here the manifest's preprocessing says 40x40)
    manifest = json.loads(Path(str(onnx) + ".manifest.json").read_text())
    manifest["preprocessing"]["size"] = [40, 40]
    Path(str(bare) + ".manifest.json").write_text(json.dumps(manifest))
    r = cli("eval", bare, *PAIRS, *store)
    assert r.code == 2 and "3x40x40" in _one_error_line(r.err) and "takes 3x32x32" in r.err
    with Store(tmp_path / "s.sqlite") as s:
        assert s.query(kind="quality") == []  # nothing ran, nothing stored


def test_runtime_failing_mid_run_exits_1_with_its_message(r18, cli, tmp_path, monkeypatch):
    _need("onnxruntime")
    _, outcomes, _ = r18
    cls = type(get_backend("onnxruntime"))
    load, seen = cls.load, []

    def failing_load(self, *args, **kwargs):
        session = load(self, *args, **kwargs)
        run = session.run

        def run_then_fail(x):
            seen.append(x.shape)
            if len(seen) > 3:
                raise RuntimeError("kernel exploded on the fourth image\nsecond line of the trace")
            return run(x)

        session.run = run_then_fail
        return session

    monkeypatch.setattr(cls, "load", failing_load)
    r = cli("eval", converted_file(outcomes, "onnx"), *PAIRS, "--store", tmp_path / "s.sqlite")
    assert r.code == 1
    line = _one_error_line(r.err)
    assert "onnxruntime:cpu" in line and "kernel exploded on the fourth image" in line
    assert seen[0] == (1, 3, 32, 32)  # the artifact's fixed batch of 1: image by image


def test_float_parent_missing_or_changed(r18, cli, tmp_path):
    """Deltas need the very checkpoint convert saw: gone or changed is one line on stderr, no deltas."""
    _need("onnxruntime")
    ckpt, outcomes, _ = r18
    onnx = converted_file(outcomes, "onnx")
    manifest = json.loads(Path(str(onnx) + ".manifest.json").read_text())
    assert manifest["lineage"][-1]["options"]["parent_file"] == ckpt.name  # relative to the artifact's folder
    alone = tmp_path / "alone"  # the artifact moved away from its float parent
    alone.mkdir()
    shutil.copy(onnx, alone / onnx.name)
    shutil.copy(str(onnx) + ".manifest.json", alone / (onnx.name + ".manifest.json"))
    store = ["--store", tmp_path / "s.sqlite", "--format", "json"]
    r = cli("eval", alone / onnx.name, *PAIRS, *store)
    assert r.code == 0, r.err
    assert json.loads(r.out)["delta"] == {} and len(r.err.strip().splitlines()) == 1
    assert "no PyTorch reference" in r.err and "not there" in r.err
    shutil.copy(ckpt.with_name("init.pt"), alone / ckpt.name)  # another checkpoint under the same name
    r = cli("eval", alone / onnx.name, *PAIRS, *store)
    assert r.code == 0, r.err
    assert json.loads(r.out)["delta"] == {} and "sha256 differs" in r.err


def test_dynamic_batch_artifact_gets_whole_batches(r18, cli, tmp_path, monkeypatch):
    _need("onnxruntime")
    ckpt, _, _ = r18
    outcomes = convert(ckpt, ["onnx"], tmp_path / "dyn", options={"onnx": {"dynamic_batch": True}})
    dyn = converted_file(outcomes, "onnx")
    cls = type(get_backend("onnxruntime"))
    load, seen = cls.load, []

    def recording_load(self, *args, **kwargs):
        session = load(self, *args, **kwargs)
        run = session.run
        session.run = lambda x: (seen.append(x.shape[0]), run(x))[1]
        return session

    monkeypatch.setattr(cls, "load", recording_load)
    r = cli("eval", dyn, *PAIRS, "--batch-size", "32", "--format", "json", "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    assert seen == [32, 32, 16, 64]  # 80 images in the DataLoader's batches, not one by one; then the first 64
    # once more for the embedding cosine to the float parent
    assert abs(json.loads(r.out)["delta"]["accuracy"]) <= 0.02
