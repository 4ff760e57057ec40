"""fcbench quantize: the verb's contract (inputs, calibration, lineage, fidelity, atomic output) through
ONNX Runtime's methods, with the CLI and the Python API.

One tiny r18 (32x32) is trained once; every quantized artifact is run by ONNX Runtime in the fidelity
check, benched by ``fcbench bench`` and evaluated against its float parent by ``eval --max-drop``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_R18 as R18
from conftest import train_tiny

import fcbench
from fcbench.artifact import read_manifest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'fcbench[onnx]')")

CALIB = ["--calib-data", "synthetic:faces", "--calib-opt", "num_classes=8", "--calib-opt", "samples_per_class=4"]
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=50", "--threads", "1"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("quant")
    return train_tiny(root, R18)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_ort_static_artifact_runs_benches_and_evaluates_against_its_float_parent(ckpt, tmp_path, cli):
    out = tmp_path / "q.onnx"
    store = tmp_path / "s.sqlite"
    r = cli("quantize", ckpt, "--method", "ort-static", *CALIB, "--out", out, "--threads", "1", "--store", store,
            "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["output"] == str(out) and out.is_file()
    m = read_manifest(out)
    assert m.format == "onnx"
    step = m.lineage[-1]
    assert (step.verb, step.technique) == ("quantize", "ort-static")
    assert step.options["calibration"]["images"] == 32 and step.options["format"] == "qdq"
    assert Path(step.options["parent_file"]).name == "model.pt"
    nodes = m.extra["quantization"]["nodes"]
    assert nodes.get("QuantizeLinear", 0) > 0 and nodes.get("DequantizeLinear", 0) > 0
    fid = res["fidelity"]
    assert fid["images"] == 32 and 0.9 < fid["cosine_p1"] <= fid["cosine_mean"] <= 1.0
    assert m.extra["fidelity"] == fid
    assert res["size_after"] < 0.5 * res["size_before"]  # int8 weights
    rows = fcbench.Store(store).query(kind="compress")
    (row,) = rows
    extra = row["extra"] if isinstance(row["extra"], dict) else json.loads(row["extra"])
    assert row["metric"] == "size_mb" and row["artifact_sha256"] == m.sha256 and extra["technique"] == "ort-static"
    r = cli("bench", out, "--backend", "ort-cpu", "--runs", "3", "--min-seconds", "0", "--warmup", "1",
            "--threads", "1", "--store", store)
    assert r.code == 0, r.err
    r = cli("eval", out, *PAIRS, "--max-drop", "50", "--store", store)
    assert r.code == 0, r.err
    assert "below the float parent" in r.err + r.out
    assert "cosine_to_parent_mean" in r.out and "cosine_to_parent_p1" in r.out  # the embedding's fidelity


@pytest.mark.parametrize("opts", [["--opt", "format=qoperator", "--per-channel"],
                                  ["--opt", "calibrate=entropy"],
                                  ["--opt", "calibrate=percentile", "--opt", "activation_type=int8"]])
def test_ort_static_formats_and_calibrations(ckpt, tmp_path, cli, opts):
    out = tmp_path / "q.onnx"
    r = cli("quantize", ckpt, "--method", "ort-static", *CALIB, *opts, "--out", out, "--threads", "1",
            "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    m = read_manifest(out)
    nodes = m.extra["quantization"]["nodes"]
    if "format=qoperator" in opts:
        assert nodes.get("QLinearConv", 0) > 0 and m.lineage[-1].options["per_channel"] is True
    else:
        assert nodes.get("QuantizeLinear", 0) > 0
    assert json.loads(r.out)["fidelity"]["cosine_mean"] > 0.9


def test_ort_dynamic_needs_no_calibration_and_says_where_fidelity_came_from(ckpt, tmp_path, cli):
    out = tmp_path / "d.onnx"
    r = cli("quantize", ckpt, "--method", "ort-dynamic", "--out", out, "--threads", "1",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    assert "synthetic images" in r.out
    m = read_manifest(out)
    assert m.extra["quantization"]["nodes"].get("ConvInteger", 0) + \
        m.extra["quantization"]["nodes"].get("DynamicQuantizeLinear", 0) > 0
    assert m.extra["fidelity"]["cosine_mean"] > 0.9


def test_quantizing_a_converted_onnx_keeps_the_checkpoint_as_float_parent(ckpt, tmp_path, cli):
    r = cli("convert", ckpt, "--to", "onnx", "--out", tmp_path / "conv", "--format", "json")
    assert r.code == 0, r.err
    onnx_file = tmp_path / "conv" / "model.onnx"
    out = tmp_path / "q.onnx"
    r = cli("quantize", onnx_file, "--method", "ort-static", *CALIB, "--out", out, "--threads", "1",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    from fcbench.lineage import float_parent

    parent, why = float_parent(out, read_manifest(out))
    assert parent is not None and parent.resolve() == ckpt.resolve(), why
    assert [s.verb for s in read_manifest(out).lineage][-2:] == ["convert", "quantize"]


def test_keep_float_and_keep_sensitive(ckpt, tmp_path, cli):
    from fcbench.quantization.ort import _layer_names

    r = cli("convert", ckpt, "--to", "onnx", "--out", tmp_path / "conv")
    assert r.code == 0, r.err
    layers = _layer_names(tmp_path / "conv" / "model.onnx")
    r = cli("quantize", ckpt, "--method", "ort-static", *CALIB, "--keep-sensitive", "2", "--out", tmp_path / "k.onnx",
            "--threads", "1", "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert len(res["kept_float"]) == 2 and len(res["sensitivity"]) == len(layers)
    scores = [s["score"] for s in res["sensitivity"]]
    assert scores == sorted(scores, reverse=True)
    assert res["kept_float"] == [s["layer"] for s in res["sensitivity"][:2]]
    assert read_manifest(tmp_path / "k.onnx").lineage[-1].options["keep_float"] == res["kept_float"]
    r = cli("quantize", ckpt, "--method", "ort-static", *CALIB, "--keep-float", layers[0], "--out",
            tmp_path / "f.onnx", "--threads", "1", "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["kept_float"] == [layers[0]]


def test_python_api_returns_a_path_like_result(ckpt, tmp_path):
    res = fcbench.quantize(input=str(ckpt), method="ort-dynamic", out=str(tmp_path / "api.onnx"), threads=1)
    assert Path(res) == tmp_path / "api.onnx" and res.fidelity["cosine_mean"] > 0.9
    assert res.to_rows()[0].kind == "compress"


@pytest.mark.parametrize("case", ["already-quantized", "no-calib", "too-few", "unknown-method", "unknown-node",
                                  "max-drop-unsupported", "bad-suffix", "no-manifest", "calib-on-fixed-method",
                                  "bad-option", "backend-cannot-run"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(ckpt, tmp_path, cli, case):
    work = tmp_path / "w"
    work.mkdir()
    out = work / "q.onnx"
    src = ckpt
    args: list = ["--method", "ort-static", *CALIB]
    expect = ""
    if case == "already-quantized":
        r = cli("quantize", ckpt, "--method", "ort-dynamic", "--out", tmp_path / "d.onnx", "--threads", "1",
                "--store", tmp_path / "s.sqlite")
        assert r.code == 0, r.err
        src, expect = tmp_path / "d.onnx", "already quantized"
    elif case == "no-calib":
        args, expect = ["--method", "ort-static"], "needs images"
    elif case == "too-few":
        args, expect = [*args, "--calib-size", "4"], "needs at least 8"
    elif case == "unknown-method":
        args, expect = ["--method", "ort-statc"], "did you mean"
    elif case == "unknown-node":
        args, expect = [*args, "--keep-float", "node_Conv_nope"], "not a quantizable node"
    elif case == "max-drop-unsupported":
        args, expect = [*args, "--max-drop", "1", "--eval-data", "synthetic:pairs"], "accuracy control"
    elif case == "bad-suffix":
        out, expect = work / "q.tflite", "must end in .onnx"
    elif case == "no-manifest":
        src = work / "bare.pt"
        src.write_bytes(ckpt.read_bytes())
        expect = "no manifest"
    elif case == "calib-on-fixed-method":  # too few for static, given to a method that needs none is fine: here
        args, expect = ["--method", "ort-static", "--calib-data", "synthetic:faces", "--calib-opt", "num_classes=2",
                        "--calib-opt", "samples_per_class=2"], "gives 4 images"
    elif case == "backend-cannot-run":
        args, expect = [*args, "--bench", "tflite"], "cannot run what ort-static writes (onnx); methods whose"
    elif case == "bad-option":
        args, expect = [*args, "--opt", "calibrate=kl"], "calibrate"
    before = _files(work)
    r = cli("quantize", src, *args, "--out", out, "--threads", "1", "--store", work / "s.sqlite")
    assert r.code == 2, (r.code, r.out, r.err)
    assert expect in r.err, r.err
    assert len([ln for ln in r.err.strip().splitlines() if ln.strip()]) == 1, r.err
    assert _files(work) == before, _files(work) - before  # no artifact, manifest, store or staging folder


def test_a_failing_method_leaves_nothing_behind(ckpt, tmp_path, cli, monkeypatch):
    from fcbench.quantization import ort

    def boom(*a, **k):
        raise RuntimeError("calibration exploded")

    monkeypatch.setattr("onnxruntime.quantization.quantize_static", boom)
    assert ort  # the method imports quantize_static when it runs
    work = tmp_path / "w"
    work.mkdir()
    r = cli("quantize", ckpt, "--method", "ort-static", *CALIB, "--out", work / "q.onnx", "--threads", "1")
    assert r.code == 1 and "calibration exploded" in r.err
    assert not [p for p in work.iterdir() if p.name != "results"], list(work.iterdir())


def test_bench_says_why_a_slower_artifact_is_not_faster(ckpt, tmp_path, cli):
    """ORT's dynamic quantization of convolutions (ConvInteger, activations quantized on every call) is
    genuinely slower than fp32 on a CPU: --bench measures both and names the reason it can read."""
    r = cli("quantize", ckpt, "--method", "ort-dynamic", "--bench", "ort-cpu", "--bench-seconds", "0.5",
            "--out", tmp_path / "d.onnx", "--threads", "1", "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    speed = json.loads(r.out)["speed"]
    assert speed["float_p50_ms"] > 0 and speed["p50_ms"] > 0
    assert speed["speedup"] < 1.0, speed
    assert any("ConvInteger" in why for why in speed["why_not_faster"]), speed
    assert read_manifest(tmp_path / "d.onnx").extra["speed"] == speed
    r = cli("quantize", ckpt, "--method", "ort-dynamic", "--bench", "ort-cpu", "--bench-seconds", "0.5",
            "--out", tmp_path / "d2.onnx", "--threads", "1", "--store", tmp_path / "s.sqlite")
    assert r.code == 0 and "not faster: dynamic quantization of convolutions" in r.out, r.out


def test_why_reads_cpu_flags_and_channel_counts(tmp_path):
    from fcbench.quantization import why

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Old Xeon\nflags\t\t: fpu sse avx2\n")
    name, flags = why.cpu_flags(str(x86))
    assert name == "Old Xeon" and why.int8_dot(flags) == [] and why.simd_width(flags) == 8
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd0b\n")
    assert why.int8_dot(why.cpu_flags(str(arm))[1]) == ["asimddp", "i8mm"]
    assert why.channel_reasons([16, 32, 48], {"avx512f"}) == []
    (line,) = why.channel_reasons([16, 20, 12], {"avx2"})
    assert line.startswith("2 of 3 convolution(s)") and "multiple of 8" in line
