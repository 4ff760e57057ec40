"""fcbench quantize --method openvino-ptq: NNCF post-training int8 of an OpenVINO IR, and NNCF's accuracy control.

Two tiny models are trained once (r18 and mbf, whose depthwise convs are GroupConvolutions in the IR);
every artifact is run by OpenVINO in the fidelity check, benched with ``fcbench bench`` and checked with
``fcbench eval --max-drop`` against the float parent found through its lineage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_MBF as MBF
from conftest import TINY_R18 as R18
from conftest import train_tiny

import fcbench
from fcbench.artifact import read_manifest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

CALIB = ["--calib-data", "synthetic:faces", "--calib-opt", "num_classes=8", "--calib-opt", "samples_per_class=4"]
FAST = ["--runs", "3", "--warmup", "1", "--min-seconds", "0", "--threads", "1"]
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=50", "--threads", "1"]



@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qov")
    return {"r18": train_tiny(root, R18), "mbf": train_tiny(root, MBF)}


def _ir(path: Path):
    import openvino as ov

    return ov.Core().read_model(str(path))


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_checkpoint_to_int8_ir_benched_and_evaluated(models, cli, tmp_path):
    out, store = tmp_path / "r18-int8.xml", tmp_path / "s.sqlite"
    r = cli("quantize", models["r18"], "--method", "openvino-ptq", *CALIB, "--out", out, "--store", store,
            "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["format"] == "openvino" and res["lineage"] == "train(arcface) > quantize(openvino-ptq)"
    assert res["fidelity"]["cosine_mean"] > 0.9 and res["fidelity"]["backend"] == "openvino:CPU"
    assert res["options"]["per_channel"] is True and res["options"]["subset_size"] == 32  # all calibration images
    assert res["size_after"] < 0.6 * res["size_before"]  # int8 weights against the f32 IR
    assert out.with_suffix(".bin").is_file()
    m = read_manifest(out)
    assert m.format == "openvino" and m.extra["companion_files"] == ["r18-int8.bin"]
    step = m.lineage[-1]
    assert (step.verb, step.technique) == ("quantize", "openvino-ptq")
    assert (out.parent / step.options["parent_file"]).resolve() == models["r18"].resolve()
    q = m.extra["quantization"]
    assert q["quantizable"] == 14 and q["quantized"] == 14 and q["float_layers"] == [] and q["fake_quantize"] > 14
    kinds = {op.get_type_name() for op in _ir(out).get_ordered_ops()}
    assert "FakeQuantize" in kinds

    r = cli("bench", out, "--backend", "openvino", *FAST, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    assert "int8" in r.out or "u8" in r.out  # OpenVINO reports integer kernels in the precision column

    r = cli("eval", out, "--max-drop", "50", *PAIRS, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert "accuracy" in report["delta"]  # against model.pt, the float parent found through the lineage


def test_float_ir_input_depthwise_and_keep_float(models, cli, tmp_path):
    r = cli("convert", models["mbf"], "--to", "openvino", "--out", tmp_path / "ir", "--format", "json")
    assert r.code == 0, r.err
    (xml,) = (tmp_path / "ir").glob("*.xml")
    ops = _ir(xml).get_ordered_ops()
    quantizable = ("Convolution", "GroupConvolution", "MatMul")
    layers = [op.get_friendly_name() for op in ops if op.get_type_name() in quantizable]
    kinds = {op.get_type_name() for op in ops}
    assert "GroupConvolution" in kinds and len(layers) > 10
    keep = layers[0]
    out = tmp_path / "mbf-int8.xml"
    r = cli("quantize", xml, "--method", "openvino-ptq", *CALIB, "--keep-float", keep, "--opt", "preset=mixed",
            "--opt", "subset_size=16", "--out", out, "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["fidelity"]["cosine_mean"] > 0.9
    assert res["lineage"] == "train(arcface) > convert(openvino) > quantize(openvino-ptq)"
    assert res["options"]["preset"] == "mixed" and res["options"]["subset_size"] == 16
    q = read_manifest(out).extra["quantization"]
    assert q["float_layers"] == [keep] and q["quantized"] == len(layers) - 1

    r = cli("bench", out, "--backend", "openvino-f32", *FAST, "--format", "json")
    assert r.code == 0, r.err
    r = cli("eval", out, "--max-drop", "50", *PAIRS, "--format", "json")
    assert r.code == 0, r.err  # the float parent: mbf/model.pt, through convert's lineage


def test_per_tensor_weights_through_the_api(models, tmp_path):
    import numpy as np

    out = tmp_path / "pt.xml"
    res = fcbench.quantize(input=str(models["r18"]), method="openvino-ptq", calib_data="synthetic:faces",
                           calib_options={"num_classes": 8, "samples_per_class": 1}, per_channel=False,
                           out=str(out), threads=1)
    assert res.options["per_channel"] is False and res.fidelity["cosine_mean"] > 0.8

    def scales(path: Path) -> list[int]:
        """Element counts of the weight scales of every convolution (per channel: one per output channel)."""
        sizes = []
        for op in _ir(path).get_ordered_ops():
            if op.get_type_name() == "Convolution":
                mul = op.input_value(1).get_node()
                while mul.get_type_name() != "Multiply":
                    mul = mul.input_value(0).get_node()
                consts = [mul.input_value(i).get_node() for i in range(2)]
                sizes.append(min(int(np.prod(c.get_output_shape(0))) for c in consts))
        return sizes

    assert set(scales(out)) == {1}
    per_channel = fcbench.quantize(input=str(models["r18"]), method="openvino-ptq", calib_data="synthetic:faces",
                                   calib_options={"num_classes": 8, "samples_per_class": 1},
                                   out=str(tmp_path / "pc.xml"), threads=1)
    assert max(scales(per_channel.output)) > 1


def test_accuracy_control_reverts_layers_and_meets_a_budget(models, cli, tmp_path):
    # 8 calibration images: a coarser int8 model, whose accuracy NNCF restores by reverting layers to float
    calib = ["--calib-data", "synthetic:faces", "--calib-opt", "num_classes=8", "--calib-opt", "samples_per_class=1"]
    control = ["--eval-data", "synthetic:pairs", "--eval-opt", "num_pairs=100", "--threads", "1"]
    strict = tmp_path / "strict.xml"
    r = cli("quantize", models["r18"], "--method", "openvino-ptq", *calib, *control, "--max-drop", "0",
            "--out", strict, "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["options"]["max_drop"] == 0 and res["options"]["eval_data"] == "synthetic:pairs"
    q = read_manifest(strict).extra["quantization"]
    ac = q["accuracy_control"]
    assert res["quantization"] == q  # --format json shows what the manifest records
    assert (ac["metric"], ac["protocol"], ac["images"]) == ("accuracy", "verification", 200)
    assert 0 <= ac["float"] <= 1 and 0 <= ac["quantized_before"] <= 1 and 0 <= ac["final"] <= 1
    assert ac["drop"] == pytest.approx(100 * (ac["float"] - ac["final"]))
    assert ac["reverted"] == len(ac["reverted_layers"])
    assert set(ac["reverted_layers"]) <= set(q["float_layers"])  # what NNCF reverted is float in the written IR
    before = 100 * (ac["float"] - ac["quantized_before"])
    if before > 0:  # the int8 model lost accuracy: layers were reverted to float and the budget checked again
        assert ac["reverted"] >= 1 and q["quantized"] == q["quantizable"] - ac["reverted"]
    assert ac["met"] == (ac["drop"] <= 0)

    # a budget the int8 model meets (in points: NNCF gets it as an absolute drop of a 0..1 metric)
    loose = tmp_path / "loose.xml"
    r = cli("quantize", models["r18"], "--method", "openvino-ptq", *calib, *control,
            "--max-drop", str(max(before, 0) + 0.5), "--out", loose)
    assert r.code == 0, r.err
    assert "accuracy control (accuracy, 200 images)" in r.out and "met)" in r.out and "0 of 14 layers" in r.out
    ac2 = read_manifest(loose).extra["quantization"]["accuracy_control"]
    assert ac2["met"] and ac2["reverted"] == 0 and ac2["quantized_before"] == pytest.approx(ac["quantized_before"])

    r = cli("eval", loose, "--max-drop", "50", *PAIRS)
    assert r.code == 0, r.err


@pytest.mark.parametrize("case", ["onnx-input", "few-images", "unknown-layer", "not-pairs", "bad-option"])
def test_bad_input_one_line_nothing_written(models, cli, tmp_path, case):
    base = models["r18"]
    src = base
    args = [*CALIB]
    if case == "onnx-input":
        pytest.importorskip("onnxruntime")
        r = cli("convert", base, "--to", "onnx", "--out", tmp_path / "onnx")
        assert r.code == 0, r.err
        (src,) = (tmp_path / "onnx").glob("*.onnx")
    elif case == "few-images":
        args = ["--calib-data", "synthetic:faces", "--calib-opt", "num_classes=2", "--calib-opt", "samples_per_class=2"]
    elif case == "unknown-layer":
        args += ["--keep-float", "Multiply_nope"]
    elif case == "not-pairs":
        args += ["--max-drop", "1", "--eval-data", "synthetic:faces", "--eval-opt", "num_classes=2"]
    else:
        args += ["--opt", "subset_size=-1"]
    folder = tmp_path / "q"
    folder.mkdir()
    r = cli("quantize", src, "--method", "openvino-ptq", *args, "--out", folder / "q.xml", "--threads", "1")
    assert r.code == 2, (r.code, r.err)
    lines = [ln for ln in r.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    expect = {"onnx-input": "quantizes openvino models", "few-images": "gives 4 images",
              "unknown-layer": "is not a quantizable operation", "not-pairs": "no pair set",
              "bad-option": "subset_size"}[case]
    assert expect in r.err, r.err
    assert _listing(folder) == set()  # no IR, no manifest, no staging folder


def test_accuracy_control_of_a_classifier_uses_top1(cli, tmp_path):
    opts = ["-o", "width=0.25", "-o", "num_classes=10", "-o", "cifar_stem=true", "-o", "layers=[1,1,1,1]"]
    r = cli("train", "--model", "resnet18", *opts, "--data", "synthetic:classes", "--data-opt", "samples_per_class=8",
            "--epochs", "1", "--batch-size", "16", "--threads", "1", "--out", tmp_path / "c")
    assert r.code == 0, r.err
    out = tmp_path / "c-int8.xml"
    r = cli("quantize", tmp_path / "c" / "model.pt", "--method", "openvino-ptq", "--calib-data", "synthetic:classes",
            "--calib-opt", "samples_per_class=1", "--max-drop", "100", "--eval-data", "synthetic:classes",
            "--eval-opt", "split=test", "--eval-opt", "samples_per_class=4", "--out", out, "--threads", "1",
            "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    ac = res["quantization"]["accuracy_control"]
    assert (ac["metric"], ac["protocol"], ac["images"]) == ("top1", "classification", 40)
    assert ac["met"] and ac["reverted"] == 0 and 0 <= ac["final"] <= 1
    assert "top1_agreement" in res["fidelity"]
    # a pair set cannot measure a classifier's top-1
    r = cli("quantize", tmp_path / "c" / "model.pt", "--method", "openvino-ptq", "--calib-data", "synthetic:classes",
            "--calib-opt", "samples_per_class=1", "--max-drop", "1", "--eval-data", "synthetic:pairs",
            "--out", tmp_path / "no.xml")
    assert r.code == 2 and "is a pair set" in r.err and not (tmp_path / "no.xml").exists(), r.err


@pytest.mark.slow  # one NNCF quantization and one OpenVINO run per layer (14)
def test_keep_sensitive_with_accuracy_control(models, cli, tmp_path):
    out = tmp_path / "ks.xml"
    r = cli("quantize", models["r18"], "--method", "openvino-ptq", *CALIB, "--keep-sensitive", "1", "--max-drop", "100",
            "--eval-data", "synthetic:pairs", "--eval-opt", "num_pairs=50", "--out", out, "--threads", "1",
            "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert len(res["sensitivity"]) == 14 and res["kept_float"] == [res["sensitivity"][0]["layer"]]
    q = res["quantization"]
    assert q["float_layers"] == res["kept_float"] and q["accuracy_control"]["reverted"] == 0
    assert not list(tmp_path.glob(".*"))  # the probes' staging is gone
