"""fcbench quantize with ai-edge-quantizer: tflite-dynamic, tflite-int8 and tflite-fp16, through the CLI.

Two tiny models are trained once (r18 and mbf, whose depthwise convolutions are the int8 case that
collapses first); r18 is converted to a float .tflite once. Each method's artifact runs in the LiteRT
interpreter (the fidelity check), is benched on the tflite backend and evaluated with --max-drop
against the float parent found through the lineage; bad input is one line, exit 2, nothing written.
A Keras model converts faithfully by default and quantizes by name afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_MBF as MBF
from conftest import TINY_R18 as R18
from conftest import converted_file, save_small_keras, train_tiny

from fcbench.artifact import STAGE_PREFIX, read_manifest
from fcbench.conversion.tflite import tflite_op_counts

pytest.importorskip("ai_edge_quantizer")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("litert_torch")

CALIB = ["--calib-data", "synthetic:faces", "--calib-opt", "num_classes=8", "--calib-opt", "samples_per_class=2"]
FAST = ["--runs", "3", "--warmup", "1", "--min-seconds", "0", "--threads", "1"]
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=50", "--threads", "1"]



@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from fcbench.conversion import convert

    root = tmp_path_factory.mktemp("qtfl")
    out = {"r18": train_tiny(root, R18), "mbf": train_tiny(root, MBF)}
    (outcome,) = convert(out["r18"], ["tflite"])
    assert outcome.status == "ok", outcome.reason
    out["r18.tflite"] = Path(outcome.file)
    return out


def _quantize(cli, *args) -> dict:
    r = cli("quantize", *map(str, args), "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def _bench_and_eval(cli, file: Path, store: Path) -> dict:
    r = cli("bench", file, "--backend", "tflite", *FAST, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    (cell,) = json.loads(r.out)
    assert cell["status"] == "ok" and cell["p50_ms"] > 0 and cell["backend"] == "tflite:xnnpack"
    r = cli("eval", file, *PAIRS, "--max-drop", "50", "--store", store)
    assert r.code == 0, r.err
    assert "below the float parent" in r.err
    return cell


def _last_step(file: Path):
    manifest = read_manifest(file)
    assert manifest.format == "tflite"
    return manifest, manifest.lineage[-1]


def test_dynamic_from_the_checkpoint_on_a_depthwise_model(models, cli, tmp_path):
    out = tmp_path / "mbf-dyn.tflite"
    res = _quantize(cli, models["mbf"], "--method", "tflite-dynamic", "--out", out, "--store", tmp_path / "s.sqlite")
    assert res["output"] == str(out) and res["backend"] == "tflite"
    assert res["fidelity"]["cosine_mean"] > 0.98 and res["fidelity"]["backend"] == "tflite:xnnpack"
    assert res["size_after"] < 0.5 * res["size_before"]  # int8 weights, from the float .tflite converted first
    manifest, step = _last_step(out)
    assert (step.verb, step.technique) == ("quantize", "tflite-dynamic")
    assert step.options["per_channel"] is True
    assert (out.parent / step.options["parent_file"]).resolve() == models["mbf"].resolve()
    assert manifest.lineage_summary().endswith("quantize(tflite-dynamic)")
    assert manifest.inputs[0].dtype == "float32" and manifest.inputs[0].layout == "NCHW"
    cell = _bench_and_eval(cli, out, tmp_path / "s.sqlite")
    assert "i8" in cell["precision"]  # f32 activations with int8 weights


def test_int8_full_integer_with_float_io_from_the_float_tflite(models, cli, tmp_path):
    src = models["r18.tflite"]
    out = tmp_path / "r18-int8.tflite"
    res = _quantize(cli, src, "--method", "tflite-int8", *CALIB, "--out", out, "--store", tmp_path / "s.sqlite")
    assert res["fidelity"]["cosine_mean"] > 0.9 and res["calibration"]["images"] == 16
    assert res["size_after"] < 0.4 * res["size_before"]
    manifest, step = _last_step(out)
    assert step.technique == "tflite-int8" and (out.parent / step.options["parent_file"]).resolve() == src.resolve()
    assert step.options["io"] == "float32" and step.options["calibration"]["images"] == 16
    assert manifest.lineage_summary().endswith("convert(tflite) > quantize(tflite-int8)")
    ops = tflite_op_counts(out)
    assert ops.get("QUANTIZE") == 1 and ops.get("DEQUANTIZE") == 1  # float in, float out, int8 inside
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(out))
    assert interp.get_input_details()[0]["dtype"].__name__ == "float32"
    assert any(d["dtype"].__name__ == "int8" for d in interp.get_tensor_details())
    _bench_and_eval(cli, out, tmp_path / "s.sqlite")


def test_int8_io_is_recorded_and_fed_by_the_tflite_backend(models, cli, tmp_path):
    """--opt io=int8: the model takes and gives int8 tensors; the manifest records their scale and zero point
    and the tflite backend quantizes the prepared float image (and dequantizes the output) with them."""
    out = tmp_path / "r18-io8.tflite"
    res = _quantize(cli, models["r18.tflite"], "--method", "tflite-int8", *CALIB, "--opt", "io=int8", "--out", out)
    assert res["fidelity"]["cosine_mean"] > 0.9 and res["options"]["io"] == "int8"
    manifest = read_manifest(out)
    io = manifest.extra["quantization"]["io"]
    assert io["input"]["dtype"] == "int8" and io["input"]["scale"] > 0 and io["output"]["dtype"] == "int8"
    assert manifest.inputs[0].dtype == "float32"  # what fcbench feeds: the backend quantizes it
    assert "QUANTIZE" not in tflite_op_counts(out)
    _bench_and_eval(cli, out, tmp_path / "s.sqlite")


def test_int8_on_a_depthwise_model_and_int16_activations(models, cli, tmp_path):
    res8 = _quantize(cli, models["mbf"], "--method", "tflite-int8", *CALIB, "--out", tmp_path / "a8.tflite")
    res16 = _quantize(cli, models["mbf"], "--method", "tflite-int8", *CALIB, "--opt", "activations=int16",
                      "--out", tmp_path / "a16.tflite")
    assert res8["fidelity"]["cosine_mean"] > 0.9
    assert res16["options"]["activations"] == "int16"
    assert res16["fidelity"]["cosine_mean"] >= res8["fidelity"]["cosine_mean"] - 1e-3  # 16-bit ranges lose less


def test_fp16_halves_the_weights_and_keeps_the_outputs(models, cli, tmp_path):
    out = tmp_path / "r18-fp16.tflite"
    res = _quantize(cli, models["r18.tflite"], "--method", "tflite-fp16", "--out", out)
    assert res["fidelity"]["cosine_mean"] > 0.9999
    assert 0.45 < res["size_ratio"] < 0.6
    assert "DEQUANTIZE" in tflite_op_counts(out)  # float16 constants, dequantized when prepared
    _, step = _last_step(out)
    assert step.options["weights"] == "float16"
    _bench_and_eval(cli, out, tmp_path / "s.sqlite")


def test_keep_float_leaves_the_named_layers_float(models, cli, tmp_path):
    src = models["r18.tflite"]
    plain = tflite_op_counts(Path(_quantize(cli, src, "--method", "tflite-int8", *CALIB,
                                            "--out", tmp_path / "plain.tflite")["output"]))
    res = _quantize(cli, src, "--method", "tflite-int8", *CALIB, "--keep-float", "conv1,layer1.0.conv2",
                    "--out", tmp_path / "kept.tflite")
    assert res["kept_float"] == ["conv1", "layer1.0.conv2"]
    kept = tflite_op_counts(tmp_path / "kept.tflite")
    assert kept["DEQUANTIZE"] > plain["DEQUANTIZE"] and kept["QUANTIZE"] > plain["QUANTIZE"]
    r = cli("quantize", src, "--method", "tflite-int8", *CALIB, "--keep-float", "layer1.0.conv3",
            "--out", tmp_path / "bad.tflite")
    assert r.code == 2 and "layer1.0.conv3 is not a quantizable layer" in r.err and "did you mean" in r.err
    assert not (tmp_path / "bad.tflite").exists() and not list(tmp_path.glob(STAGE_PREFIX + "*"))


def _nothing_written(folder: Path, before: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == before


def test_bad_input_is_one_line_and_writes_nothing(models, cli, tmp_path):
    src = models["r18.tflite"]
    folder = src.parent
    before = {p.name for p in folder.iterdir()}
    r = cli("quantize", src, "--method", "tflite-int8")  # calibrates: needs images
    assert r.code == 2 and "--calib-data" in r.err and "at least 8" in r.err
    r = cli("quantize", src, "--method", "tflite-int8", "--calib-data", "synthetic:faces",
            "--calib-opt", "num_classes=2", "--calib-opt", "samples_per_class=2")
    assert r.code == 2 and "gives 4 images" in r.err and "needs at least 8" in r.err
    r = cli("quantize", src, "--method", "tflite-fp16", "--per-channel")
    assert r.code == 2 and "no per-channel choice" in r.err
    _nothing_written(folder, before)
    # an ONNX artifact is not what these methods read
    from fcbench.conversion import convert

    onnx_file = converted_file(convert(models["mbf"], ["onnx"], out_dir=tmp_path / "onnx"), "onnx")
    r = cli("quantize", onnx_file, "--method", "tflite-dynamic")
    assert r.code == 2 and "quantizes tflite models" in r.err and len(r.err.strip().splitlines()) == 1
    # an already quantized .tflite
    q = _quantize(cli, src, "--method", "tflite-fp16", "--out", tmp_path / "q.tflite")
    before = {p.name for p in tmp_path.iterdir()}
    r = cli("quantize", q["output"], "--method", "tflite-dynamic")
    assert r.code == 2 and "already quantized" in r.err
    _nothing_written(tmp_path, before)


def test_keras_converts_faithfully_and_quantizes_by_name(cli, tmp_path):
    pytest.importorskip("keras")
    save_small_keras(tmp_path / "net.keras")
    r = cli("convert", tmp_path / "net.keras", "--to", "tflite", "--preprocessing", "cifar", "--format", "json")
    assert r.code == 0, r.err
    (o,) = json.loads(r.out)
    assert o["status"] == "ok" and o["parity"]["ok"] is True and o["parity"]["max_abs_diff"] < 1e-5  # float32
    float_file = Path(o["file"])
    assert read_manifest(float_file).lineage[0].options["optimize"] == "none"
    assert "DEQUANTIZE" not in tflite_op_counts(float_file)
    res = _quantize(cli, float_file, "--method", "tflite-dynamic", "--out", tmp_path / "net-dyn.tflite")
    assert res["fidelity"]["cosine_mean"] > 0.99 and res["size_ratio"] < 0.6
    assert any("against the float input net.tflite" in n for n in res["notes"])
    manifest, step = _last_step(tmp_path / "net-dyn.tflite")
    assert manifest.inputs[0].layout == "NHWC"
    assert manifest.lineage_summary() == "convert(tflite) > quantize(tflite-dynamic)"
    res = _quantize(cli, float_file, "--method", "tflite-int8", "--calib-data", "synthetic:classes",
                    "--calib-opt", "num_classes=2", "--calib-opt", "samples_per_class=8",
                    "--out", tmp_path / "net-int8.tflite")
    assert res["fidelity"]["cosine_mean"] > 0.9
    r = cli("bench", tmp_path / "net-int8.tflite", "--backend", "tflite", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    # the old lossy conversion stays for explicit use, and is not a float parent
    r = cli("convert", tmp_path / "net.keras", "--to", "tflite", "--opt", "tflite.optimize=default",
            "--out", tmp_path / "lossy", "--format", "json")
    assert r.code == 0, r.err
    (lossy,) = json.loads(r.out)
    assert "not enforced" in lossy["reason"] and "--method tflite-dynamic" in lossy["reason"]
    r = cli("quantize", lossy["file"], "--method", "tflite-dynamic")
    assert r.code == 2 and "already quantized" in r.err
