"""The format registry (fcbench.formats): lookup, suffixes, magic bytes on real files, companions,
default backends; and a third-party format (tests/format_plugin_example: TorchScript) installed
apart and driven through the real CLI: listed, converted with parity, benched and evaluated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from fcbench import formats
from fcbench.artifact import owned_files
from fcbench.errors import FcbenchError

REPO = Path(__file__).resolve().parents[1]
BUILTIN = ["fcbench-ckpt", "onnx", "tflite", "openvino", "ptl", "pte"]


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    from fcbench.models import create
    from fcbench.training.checkpoint import save_checkpoint

    model = create("r18", width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32], embedding_size=16).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    return path


def _real_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def _real_openvino_ir(path: Path) -> Path:
    import numpy as np

    ov = pytest.importorskip("openvino")
    ops = pytest.importorskip("openvino.opset13")
    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="input")
    w = ops.constant(np.ones((4, 3, 1, 1), "float32"))
    model = ov.Model([ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1])], [x], "m")
    ov.save_model(model, str(path))
    return path


# --- the registry ------------------------------------------------------------------------------

def test_builtins_are_registered_in_order():
    assert formats.names()[:6] == BUILTIN
    assert [f.name for f in formats.exportable()][:5] == ["onnx", "tflite", "openvino", "ptl", "pte"]
    assert formats.get("fcbench-ckpt").exporter is None and formats.CHECKPOINT == "fcbench-ckpt"
    for name in BUILTIN:
        f = formats.get(name)
        assert f.name == name and f.suffix == f.suffixes[0] and f.description
    eps = {ep.name: ep for ep in metadata.entry_points(group="fcbench.formats")}
    assert set(BUILTIN) <= set(eps) and all(eps[n].dist.name == "fcbench" for n in BUILTIN)


def test_by_suffix_and_is_artifact():
    assert formats.by_suffix("run/model.onnx").name == "onnx"
    assert formats.by_suffix("MODEL.XML").name == "openvino"  # any case
    assert formats.by_suffix("a/b.tflite").name == "tflite"
    assert formats.by_suffix("m.ptl").name == "ptl" and formats.by_suffix("m.pte").name == "pte"
    assert formats.by_suffix("model.pt").name == "fcbench-ckpt"
    assert formats.by_suffix("model.bin") is None and formats.by_suffix("README") is None
    assert formats.by_suffix(".onnx") is None  # a suffix alone is no file name
    assert formats.is_artifact("m.onnx") and formats.is_artifact("m.xml")
    assert not formats.is_artifact("model.pt") and not formats.is_artifact("model.bin")


def test_unknown_format_suggests_the_closest():
    with pytest.raises(FcbenchError, match=r"unknown format 'onxx' \(did you mean 'onnx'\?\)"):
        formats.get("onxx")
    from fcbench.conversion import parse_formats

    with pytest.raises(FcbenchError, match="did you mean 'tflite'"):
        parse_formats("onnx,tflit")
    with pytest.raises(FcbenchError, match="'fcbench-ckpt' is not made by convert"):
        parse_formats("fcbench-ckpt")
    assert parse_formats("all")[:5] == ["onnx", "tflite", "openvino", "ptl", "pte"]


def test_default_backends():
    assert formats.get("onnx").default_backend() == "onnxruntime:cpu"
    assert formats.get("openvino").default_backend() == "openvino:CPU"
    assert formats.get("fcbench-ckpt").default_backend() == "pytorch:eager"
    pte = formats.get("pte")
    assert pte.default_backend(SimpleNamespace(extra={})) == "executorch:xnnpack"
    assert pte.default_backend(SimpleNamespace(extra={"backend_variant": "portable"})) == "executorch:portable"
    assert formats.default_backend(SimpleNamespace(format="pte", extra={"backend_variant": "portable"})) \
        == "executorch:portable"
    assert formats.default_backend(SimpleNamespace(format="nope", extra={})) is None
    from fcbench.evaluation import ARTIFACT_SUFFIXES, DEFAULT_BACKEND

    assert DEFAULT_BACKEND["tflite"] == "tflite:xnnpack" and ".xml" in ARTIFACT_SUFFIXES
    assert ".pt" not in ARTIFACT_SUFFIXES


def test_exporters_take_their_suffix_from_the_format():
    from fcbench.conversion import EXPORTERS, exporter_class

    assert list(EXPORTERS)[:5] == ["onnx", "tflite", "openvino", "ptl", "pte"]
    assert exporter_class("openvino").suffix == ".xml" and exporter_class("onnx").suffix == ".onnx"


# --- recognise and companions on real files ----------------------------------------------------

def test_recognise_a_real_onnx_and_a_fake_one(tmp_path):
    real = _real_onnx(tmp_path / "real.onnx")
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"this is not a model at all\n")
    onnx = formats.get("onnx")
    assert onnx.recognise(real) and not onnx.recognise(fake)
    assert not formats.get("tflite").recognise(real) and not formats.get("openvino").recognise(real)
    assert not onnx.recognise(tmp_path / "missing.onnx")
    from fcbench.infer import infer_manifest

    with pytest.raises(FcbenchError, match="is not onnx"):
        infer_manifest(fake)
    manifest, _ = infer_manifest(real)  # the input shape comes from the format's input reader
    assert manifest.format == "onnx" and manifest.inputs[0].shape == [1, 3, 8, 8]


def test_recognise_a_real_checkpoint(tiny_checkpoint):
    assert formats.by_suffix(tiny_checkpoint).recognise(tiny_checkpoint)
    assert not formats.get("onnx").recognise(tiny_checkpoint)
    assert not formats.get("tflite").recognise(tiny_checkpoint)


def test_companions_of_an_openvino_ir(tmp_path):
    xml = _real_openvino_ir(tmp_path / "model.xml")
    ir = formats.by_suffix(xml)
    assert ir.name == "openvino" and ir.recognise(xml)
    assert ir.companions(xml) == ["model.bin"] and ir.present_companions(xml) == ["model.bin"]
    assert formats.get("onnx").companions(xml) == []
    from fcbench.infer import infer_manifest

    manifest, _ = infer_manifest(xml)
    assert manifest.extra["companion_files"] == ["model.bin"] and manifest.inputs[0].shape == [1, 3, 8, 8]
    keep, dropped = owned_files([str(xml), str(tmp_path / "model.bin")])
    assert keep == [str(xml)] and dropped == [(str(tmp_path / "model.bin"), "a companion file of model.xml "
                                                                         "(read with it)")]
    (tmp_path / "model.bin").unlink()
    assert ir.companions(xml) == ["model.bin"] and ir.present_companions(xml) == []


# --- plugin discovery ---------------------------------------------------------------------------

def test_a_broken_format_plugin_breaks_only_itself(monkeypatch):
    import fcbench.plugins

    real = fcbench.plugins.entry_points

    def fake(kind):
        eps = dict(real(kind))
        if kind == "format":
            for name, value in [("broken", "no_such_module_for_fcbench:F"),
                                ("misnamed", "fcbench.formats.builtin:ONNX"),
                                ("notaformat", "fcbench.formats:get")]:
                eps[name] = metadata.EntryPoint(name=name, value=value, group="fcbench.formats")
        return eps

    monkeypatch.setattr(fcbench.plugins, "entry_points", fake)
    formats.reload()
    try:
        assert formats.by_suffix("m.onnx").name == "onnx"
        assert {"broken", "misnamed", "notaformat"} <= set(formats.names())
        with pytest.raises(FcbenchError, match="'broken' .* cannot be imported"):
            formats.get("broken")
        with pytest.raises(FcbenchError, match="entry-point name must be the format's name"):
            formats.get("misnamed")
        with pytest.raises(FcbenchError, match="not a fcbench.formats.Format"):
            formats.get("notaformat")
    finally:
        monkeypatch.undo()
        formats.reload()
    assert "broken" not in formats.names()


def test_format_needs_dotted_lower_case_suffixes():
    with pytest.raises(FcbenchError, match="must be lower case and start with '.'"):
        formats.Format(name="x", suffixes=("x",))
    with pytest.raises(FcbenchError, match="at least one suffix"):
        formats.Format(name="x", suffixes=())


def test_the_registry_imports_no_torch():
    code = ("import sys\nfrom fcbench import formats\n"
            "fs = formats.formats(); formats.by_suffix('m.xml')\n"
            "heavy = [m for m in ('torch', 'onnx', 'openvino', 'tensorflow') if m in sys.modules]\n"
            "print('N', len(fs), 'HEAVY', heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in p.stdout, p.stdout + p.stderr


# --- a third-party format, end to end -----------------------------------------------------------

def _fcbench(env: dict[str, str], *args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fcbench.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.slow
def test_third_party_format_plugin_end_to_end(tmp_path, tiny_checkpoint):
    """tests/format_plugin_example adds the TorchScript format and its backend through entry points
    only; installed apart, it is listed, converted to with parity, benched and evaluated through the CLI."""
    target = tmp_path / "site"
    source = shutil.copytree(REPO / "tests" / "format_plugin_example", tmp_path / "src")  # keep the tree clean
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    store = tmp_path / "s.sqlite"

    p = _fcbench(env, "plugins", "--kind", "format", "--format", "json")
    assert p.returncode == 0, p.stderr
    items = {i["name"]: i for i in json.loads(p.stdout)}
    assert items["torchscript"]["available"] and items["torchscript"]["provider"] == "fcbench-torchscript-format"
    assert set(BUILTIN) <= set(items) and all(items[n]["provider"] == "fcbench" for n in BUILTIN)
    p = _fcbench(env, "plugins", "--kind", "backend", "--format", "json")
    assert p.returncode == 0 and "torchscript" in {i["name"] for i in json.loads(p.stdout)}, p.stderr
    p = subprocess.run([sys.executable, "-c", "from fcbench import formats; "
                        "print(','.join(f.name for f in formats.exportable()))"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.stdout.split() == ["onnx,tflite,openvino,ptl,pte,torchscript"], p.stdout + p.stderr

    p = _fcbench(env, "convert", tiny_checkpoint, "--to", "torchscript", "--format", "json")
    assert p.returncode == 0, p.stderr
    (o,) = json.loads(p.stdout)
    assert o["format"] == "torchscript" and o["status"] == "ok", o
    assert o["parity"]["ok"] is True and o["parity"]["backend"] == "torchscript:cpu", o["parity"]
    art = Path(o["file"])
    assert art.name == "model.torchscript" and art.is_file()
    manifest = json.loads(Path(str(art) + ".manifest.json").read_text())
    assert manifest["format"] == "torchscript" and manifest["lineage"][-1]["technique"] == "torchscript"

    p = _fcbench(env, "bench", art, "--backend", "torchscript", "--runs", "3", "--min-seconds", "0",
                 "--warmup", "1", "--threads", "2", "--format", "json", "--store", store)
    assert p.returncode == 0, p.stderr
    (cell,) = json.loads(p.stdout)
    assert cell["status"] == "ok" and cell["format"] == "torchscript" and cell["backend"] == "torchscript:cpu", cell

    p = _fcbench(env, "eval", art, "--data", "synthetic:pairs", "--data-opt", "num_pairs=40", "--nfolds", "2",
                 "--threads", "2", "--format", "json", "--store", store)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["backend"] == "torchscript:cpu" and rep["protocol"] == "verification", rep
    assert abs(rep["metrics"]["accuracy"] - rep["pytorch"]["accuracy"]) <= 0.02, rep

    bare = tmp_path / "bare.torchscript"  # no manifest: recognised by its bytes, its input shape assumed
    shutil.copy(art, bare)
    p = _fcbench(env, "bench", bare, "--backend", "torchscript", "--infer-manifest", "--input-shape", "1x3x32x32",
                 "--runs", "3", "--min-seconds", "0", "--warmup", "1", "--format", "json", "--store", store)
    assert p.returncode == 0 and json.loads(p.stdout)[0]["status"] == "ok", p.stderr
    fake = tmp_path / "fake.torchscript"
    shutil.copy(tiny_checkpoint, fake)  # a zip too, but a torch.save checkpoint, not TorchScript
    p = _fcbench(env, "bench", fake, "--backend", "torchscript", "--infer-manifest", "--store", store)
    assert p.returncode == 2 and "is not torchscript" in p.stderr, p.stderr
