"""fcbench quantize with PyTorch's and ExecuTorch's own int8: torch-dynamic, torch-static, torch-qat
(.ptl, run by pytorch-mobile) and executorch-int8 (.pte, run by executorch:xnnpack), through the CLI.

Tiny models are trained once (r18 and mbf at 32x32); each result is checked by the fidelity the
verb measures in its runtime, benched by its backend and evaluated against its float parent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_MBF as MBF
from conftest import TINY_R18 as R18
from conftest import train_tiny

from fcbench.artifact import read_manifest

CALIB = ["--calib-data", "synthetic:faces", "--calib-opt", "num_classes=8", "--calib-opt", "samples_per_class=4"]
FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0"]
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=50"]



@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qtorch")
    return {"r18": train_tiny(root, R18), "mbf": train_tiny(root, MBF)}


def _quantize(cli, model: Path, method: str, out: Path, *extra: str) -> dict:
    r = cli("quantize", model, "--method", method, "--out", out, "--format", "json", *extra)
    assert r.code == 0, r.err
    return json.loads(r.out)


def _bench_and_eval(cli, artifact: Path, backend: str, tmp_path: Path, threads: str = "1") -> None:
    r = cli("bench", artifact, "--backend", backend, *FAST, "--threads", threads, "--format", "json",
            "--store", tmp_path / "b.sqlite")
    assert r.code == 0, r.err
    (cell,) = json.loads(r.out)
    assert cell["status"] == "ok" and cell["backend"].startswith(backend.split(":")[0]), cell
    r = cli("eval", artifact, *PAIRS, "--threads", threads, "--max-drop", "50", "--backend", backend,
            "--format", "json", "--store", tmp_path / "e.sqlite")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert "accuracy" in report["delta"], report  # the float parent was found through the lineage


@pytest.mark.parametrize("method", ["torch-dynamic", "torch-static", "torch-qat"])
def test_torch_methods_write_ptl_that_pytorch_mobile_runs_benches_and_evals(models, cli, tmp_path, method):
    out = tmp_path / f"r18-{method}.ptl"
    extra = [*CALIB, "--threads", "1"] + (["--opt", "epochs=1", "--opt", "lr=0.0001"] if method == "torch-qat" else [])
    res = _quantize(cli, models["r18"], method, out, *extra)
    assert out.is_file() and res["format"] == "ptl" and res["backend"] == "pytorch-mobile"
    assert res["fidelity"]["backend"].startswith("pytorch-mobile")
    assert res["fidelity"]["cosine_mean"] > 0.95, res["fidelity"]
    assert res["size_after"] < res["size_before"]  # against the fp32 .ptl
    m = read_manifest(out)
    step = m.lineage[-1]
    assert (step.verb, step.technique) == ("quantize", method) and step.options["parent_file"].endswith("model.pt")
    assert step.options["engine"] in ("x86", "fbgemm", "qnnpack")  # the quantized engine is recorded
    ops = m.extra["quantization"]["ptl_operators"]
    if method == "torch-dynamic":
        assert any(op.startswith("quantized::linear_dynamic") for op in ops), ops
    else:
        assert any(op.startswith("quantized::conv2d") for op in ops), ops
        assert m.extra["quantization"]["float_prelu"] > 0  # PReLU kept float (torch's quantized PReLU is wrong)
    if method == "torch-qat":
        assert step.options["loss"] == "arcface head" and m.extra["quantization"]["epoch_loss"]
    _bench_and_eval(cli, out, "pytorch-mobile", tmp_path)


def test_torch_static_keep_float_and_keep_sensitive(models, cli, tmp_path):
    """--keep-float names module paths; the named conv stays float in the .ptl (fewer quantized convs);
    --keep-sensitive scores every layer and keeps the worst; an unknown name is one line naming the layers."""
    _quantize(cli, models["r18"], "torch-static", tmp_path / "a.ptl", *CALIB, "--threads", "1")
    kept = _quantize(cli, models["r18"], "torch-static", tmp_path / "b.ptl", *CALIB, "--threads", "1",
                     "--keep-float", "conv1,layer1.0.conv1")
    assert kept["kept_float"] == ["conv1", "layer1.0.conv1"]
    n_quant = {k: read_manifest(tmp_path / f"{k}.ptl").extra["quantization"]["ops"] for k in ("a", "b")}
    convs = {k: sum(v for op, v in ops.items() if "Conv" in op) for k, ops in n_quant.items()}
    assert convs["b"] == convs["a"] - 2, n_quant
    r = cli("quantize", models["r18"], "--method", "torch-static", *CALIB, "--keep-float", "layer9.conv",
            "--out", tmp_path / "c.ptl")
    assert r.code == 2 and "not a layer torch-static quantizes" in r.err and "conv1" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    res = _quantize(cli, models["r18"], "torch-dynamic", tmp_path / "d.ptl", "--threads", "1", "--keep-sensitive", "1")
    assert len(res["kept_float"]) == 1 and res["sensitivity"][0]["layer"] == res["kept_float"][0]


def test_a_qnnpack_file_runs_on_qnnpack_in_pytorch_mobile(models, cli, tmp_path):
    """The engine a file was quantized for (the lineage's quantize step) is the engine pytorch-mobile runs it on,
    and the process's engine is put back when the session closes."""
    import torch

    from fcbench.backends import get_backend

    if "qnnpack" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no qnnpack engine")
    out = tmp_path / "q.ptl"
    res = _quantize(cli, models["r18"], "torch-static", out, *CALIB, "--threads", "1", "--opt", "engine=qnnpack")
    assert res["fidelity"]["cosine_mean"] > 0.95, res["fidelity"]  # scored on qnnpack, as it was made
    before = torch.backends.quantized.engine
    session = get_backend("pytorch-mobile").load(out, read_manifest(out), "cpu", 1, {})
    try:
        assert session.engine == "qnnpack" and torch.backends.quantized.engine == "qnnpack"
    finally:
        session.close()
    assert torch.backends.quantized.engine == before


def test_torch_static_mbf_depthwise(models, cli, tmp_path):
    res = _quantize(cli, models["mbf"], "torch-static", tmp_path / "mbf.ptl", *CALIB, "--threads", "1")
    assert res["fidelity"]["cosine_mean"] > 0.95, res["fidelity"]


def test_torch_qat_classifier_on_cifar(cli, tmp_path):
    from formats import write_cifar10

    write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=8)
    r = cli("train", "--model", "resnet18", "--model-opt", "width=0.125", "--model-opt", "layers=[1,1,1,1]",
            "--model-opt", "cifar_stem=true", "--model-opt", "num_classes=10", "--model-opt", "input_size=[32,32]",
            "--data", tmp_path / "cifar-10-batches-py", "--epochs", "1", "--batch-size", "16", "--threads", "1",
            "--out", tmp_path / "c")
    assert r.code == 0, r.err
    res = _quantize(cli, tmp_path / "c" / "model.pt", "torch-qat", tmp_path / "c.ptl", "--calib-data",
                    tmp_path / "cifar-10-batches-py", "--threads", "1")
    assert res["options"]["loss"] == "cross-entropy" and res["fidelity"]["cosine_mean"] > 0.9, res["fidelity"]
    assert "top1_agreement" in res["fidelity"]


def test_executorch_int8_writes_pte_that_executorch_runs_benches_and_evals(models, cli, tmp_path):
    pytest.importorskip("executorch")
    out = tmp_path / "r18-int8.pte"
    # 1 thread: the pool is resized before the program loads (resized under a loaded XNNPACK method, it
    # aborted or hung the int8 kernels in ExecuTorch 1.5.1)
    # --keep-float: the embedding layer stays fp32 (one weight fewer dequantized per channel)
    res = _quantize(cli, models["r18"], "executorch-int8", out, *CALIB, "--threads", "1", "--keep-float", "fc")
    assert res["format"] == "pte" and res["fidelity"]["backend"].startswith("executorch:xnnpack")
    assert res["fidelity"]["cosine_mean"] > 0.95, res["fidelity"]
    m = read_manifest(out)
    q = m.extra["quantization"]
    assert q["ops_portable"] == 0 and q["delegated_ops"].get("quantized_decomposed.quantize_per_tensor.default")
    from fcbench.training.checkpoint import load_checkpoint

    layers = [n for n, x in load_checkpoint(models["r18"]).build_model().named_modules()
              if type(x).__name__ in ("Conv2d", "Linear")]
    assert "fc" in layers and res["kept_float"] == ["fc"] == m.lineage[-1].options["keep_float"]
    assert q["delegated_ops"]["quantized_decomposed.dequantize_per_channel.default"] == len(layers) - 1
    assert m.lineage[-1].options["parent_file"].endswith("model.pt") and m.lineage[-1].options["per_channel"] is True
    _bench_and_eval(cli, out, "executorch", tmp_path, threads="1")


# --- bad input: one line, exit 2, nothing written ----------------------------------------------

def _nothing_written(folder: Path, out: Path) -> None:
    assert not out.exists() and not Path(str(out) + ".manifest.json").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


@pytest.mark.parametrize("method", ["torch-static", "torch-qat", "executorch-int8"])
def test_too_few_calibration_images_refused(models, cli, tmp_path, method):
    if method == "executorch-int8":
        pytest.importorskip("executorch")
    out = tmp_path / ("x.pte" if method == "executorch-int8" else "x.ptl")
    r = cli("quantize", models["r18"], "--method", method, *CALIB, "--calib-size", "4", "--out", out)
    assert r.code == 2 and "gives 4 images" in r.err and "needs at least" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    _nothing_written(tmp_path, out)


def test_wrong_input_kind_refused(models, cli, tmp_path):
    pytest.importorskip("onnxruntime")
    r = cli("convert", models["r18"], "--to", "onnx", "--out", tmp_path / "onnx", "--format", "json")
    assert r.code == 0, r.err
    onnx_file = next((tmp_path / "onnx").glob("*.onnx"))
    for method, suffix in [("torch-static", ".ptl"), ("executorch-int8", ".pte")]:
        out = tmp_path / f"y{suffix}"
        r = cli("quantize", onnx_file, "--method", method, *CALIB, "--out", out)
        assert r.code == 2 and "quantizes an fcbench checkpoint" in r.err, r.err
        _nothing_written(tmp_path, out)


def test_qat_refuses_unlabelled_data_and_bad_options(models, cli, tmp_path, in_tmp):
    out = tmp_path / "z.ptl"
    r = cli("quantize", models["r18"], "--method", "torch-qat", "--calib-data", "synthetic:pairs",
            "--calib-opt", "num_pairs=20", "--out", out)
    assert r.code == 2 and "labelled" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    _nothing_written(tmp_path, out)
    r = cli("quantize", models["r18"], "--method", "torch-qat", *CALIB, "--opt", "epochs=0", "--out", out)
    assert r.code == 2 and "epochs" in r.err, r.err
    r = cli("quantize", models["r18"], "--method", "torch-static", *CALIB, "--opt", "engine=arm", "--out", out)
    assert r.code == 2 and "engine" in r.err, r.err
    _nothing_written(tmp_path, out)
