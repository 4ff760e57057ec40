"""ONNX / OpenVINO converters and the onnxruntime, openvino and opencv-dnn backends, on tiny models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcbench.artifact import Manifest, TensorSpec
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

pytest.importorskip("onnx")

from fcbench.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from fcbench.backends.opencv_dnn import OpenCvDnnBackend  # noqa: E402
from fcbench.backends.openvino import OpenVinoBackend  # noqa: E402
from fcbench.conversion.onnx import OnnxExporter  # noqa: E402
from fcbench.conversion.openvino import OpenVinoExporter  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHAPE = [1, 3, 32, 32]
FP32_TOL = 1e-4  # max abs difference relative to the output's scale
BF16_TOL = 3e-2


def _need(backend) -> None:
    """Skip when the backend's runtime is not installed here (the reason names the package)."""
    ok, reason = backend.available()
    if not ok:
        pytest.skip(reason)


def _artifact(artifacts, model: str, kind: str):
    """``artifacts[model, kind]``; only the OpenVINO IR may be missing, and only with its converter."""
    if kind == "openvino":
        ok, reason = OpenVinoExporter.available()
        if not ok:
            pytest.skip(f"no OpenVINO IR without its converter: {reason}")
    return artifacts[model, kind]


def _randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.6 - 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model.eval()


def _manifest(fmt: str, file: Path, output_size: int) -> Manifest:
    return Manifest(format=fmt, file=file.name, sha256="", size=file.stat().st_size, model={"name": "tiny"},
                    inputs=[TensorSpec("input", list(SHAPE))], preprocessing=Preprocessing(size=(32, 32)),
                    output_kind="embedding", output_size=output_size)


@pytest.fixture(scope="module")
def models():
    from fcbench.models import create

    torch.manual_seed(0)
    r18 = create("r18", width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32], embedding_size=32)
    mbv2 = create("mobilenet_v2", width=0.25, num_classes=10, input_size=[32, 32])
    return {"r18": _randomize_bn(r18), "mbv2": _randomize_bn(mbv2)}


@pytest.fixture(scope="module")
def example() -> torch.Tensor:
    return torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def artifacts(models, example, tmp_path_factory):
    """Every artifact once: {(model, kind): (path, ExportResult)}; kinds onnx, onnx-legacy, openvino."""
    pytest.importorskip("onnxscript")
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for name, model in models.items():
        d = root / name
        d.mkdir()
        out[name, "onnx"] = OnnxExporter().export(model, example, d / f"{name}.onnx", {})
        if name == "r18":
            out[name, "onnx-legacy"] = OnnxExporter().export(model, example, d / f"{name}-legacy.onnx",
                                                              {"exporter": "legacy"})
        if OpenVinoExporter.available()[0]:
            # the PyTorch frontend is slow on mobilenet_v2 (~7 s); its ONNX route is tested with it instead
            opts = {} if name == "r18" else {"source": "onnx"}
            out[name, "openvino"] = OpenVinoExporter().export(model, example, d / "ov" / f"{name}.xml", opts)
    return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    import onnx
    import onnx.helper as h

    d = tmp_path_factory.mktemp("bad")
    (d / "garbage.onnx").write_bytes(b"\x00this is not a model" * 20)
    (d / "garbage.xml").write_text("not an IR either")
    (d / "garbage.bin").write_bytes(b"\x00" * 16)
    x = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    y = h.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    graph = h.make_graph([h.make_node("FooBar", ["input"], ["output"], domain="com.example", name="foo")],
                         "g", [x], [y])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18), h.make_opsetid("com.example", 1)])
    onnx.save(model, str(d / "custom_op.onnx"))
    return d


def _ref(models, name, example) -> np.ndarray:
    with torch.no_grad():
        return models[name](example).numpy()


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(1e-6, float(np.abs(ref).max())))


# --- exporters ---------------------------------------------------------------------------------

def test_onnx_export_is_one_checked_file_with_named_io(artifacts):
    import onnx

    res = artifacts["r18", "onnx"]
    assert res.file.suffix == ".onnx"
    assert sorted(p.name for p in res.file.parent.iterdir() if p.is_file()) == ["r18-legacy.onnx", "r18.onnx"]
    assert res.options == {"opset": 18, "exporter": "dynamo", "simplify": True, "dynamic_batch": False,
                           "prelu": "keep"}
    assert res.extra["opset_written"] == 18 and res.input_layout == "NCHW"
    model = onnx.load(str(res.file))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == SHAPE
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert artifacts["r18", "onnx-legacy"].options["exporter"] == "legacy"


def test_onnx_export_dynamic_batch_runs_any_batch(models, example, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    res = OnnxExporter().export(models["r18"], example, tmp_path / "dyn.onnx",
                                {"exporter": "legacy", "dynamic_batch": True, "opset": 17})
    assert res.options["opset"] == 17 and res.extra["input_shape"] == ["batch", 3, 32, 32]
    x = torch.randn(3, 3, 32, 32)
    out = ort.InferenceSession(str(res.file), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    assert _rel(out, _ref(models, "r18", x)) < FP32_TOL


@pytest.mark.parametrize("options, words", [({"opset": "x"}, "integer"), ({"exporter": "tf"}, "exporter"),
                                            ({"simplfy": True}, "simplfy")])
def test_onnx_export_rejects_bad_options(models, example, tmp_path, options, words):
    with pytest.raises(FcbenchError, match=words):
        OnnxExporter().export(models["r18"], example, tmp_path / "x.onnx", options)


def test_openvino_export_writes_xml_and_bin(artifacts, models, example, tmp_path):
    res = _artifact(artifacts, "r18", "openvino")
    assert res.file.suffix == ".xml" and res.file.with_suffix(".bin").exists()
    assert res.extra["companion_files"] == ["r18.bin"] and res.extra["weights"] == "f32"
    assert res.options == {"compress_to_fp16": False, "source": "torch", "dynamic_batch": False}
    assert artifacts["mbv2", "openvino"].options["source"] == "onnx"
    half = OpenVinoExporter().export(models["r18"], example, tmp_path / "half.xml",
                                     {"compress_to_fp16": True, "source": "onnx", "opset": 17})
    assert half.extra["weights"] == "f16" and half.options["opset"] == 17
    assert half.file.with_suffix(".bin").stat().st_size < 0.6 * res.file.with_suffix(".bin").stat().st_size


# --- parity ------------------------------------------------------------------------------------

CASES = [
    # (backend class, variant, options, artifact kind, tolerance)
    (OnnxRuntimeBackend, "cpu", {}, "onnx", FP32_TOL),
    (OnnxRuntimeBackend, "cpu", {}, "onnx-legacy", FP32_TOL),
    (OnnxRuntimeBackend, "xnnpack", {}, "onnx", FP32_TOL),
    (OpenVinoBackend, "CPU", {"precision": "f32"}, "openvino", FP32_TOL),
    (OpenVinoBackend, "CPU", {"precision": "f32"}, "onnx", FP32_TOL),
    (OpenVinoBackend, "CPU", {}, "openvino", BF16_TOL),  # device default: bf16 on bf16-capable CPUs
    (OpenVinoBackend, "AUTO", {"precision": "f32"}, "openvino", FP32_TOL),
    (OpenCvDnnBackend, "cpu", {}, "onnx", FP32_TOL),
    (OpenCvDnnBackend, "cpu", {}, "onnx-legacy", FP32_TOL),
    (OpenCvDnnBackend, "cpu", {"engine": "classic"}, "onnx", FP32_TOL),
]


def _case_id(case) -> str:
    cls, variant, options, kind, _ = case
    opts = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{cls.name}:{variant}{'[' + opts + ']' if opts else ''}-{kind}"


# OpenCV 5.0.0's classic engine returns wrong numbers for a 3x3 depthwise conv on a 1x1 feature map,
# which mobilenet_v2 has at 32x32 input (right at 64x64 and up; the new engine is right): an upstream
# bug. strict: the day an OpenCV gets it right, the XPASS fails the run and this mark goes.
OPENCV_CLASSIC_DEPTHWISE = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="OpenCV 5.0.0 classic engine: 3x3 depthwise conv on 1x1 spatial input gives wrong output")


def _marks(case, model) -> list:
    cls, _, options, _, _ = case
    return [OPENCV_CLASSIC_DEPTHWISE] if (cls is OpenCvDnnBackend and options.get("engine") == "classic"
                                         and model == "mbv2") else []


PARITY = [pytest.param(model, case, id=f"{_case_id(case)}-{model}", marks=_marks(case, model))
          for case in CASES for model in ("r18", "mbv2")
          if not (case[3] == "onnx-legacy" and model == "mbv2")]  # the legacy exporter is exported for r18 only


@pytest.mark.parametrize("model, case", PARITY)
def test_backend_matches_torch(artifacts, models, example, model, case):
    cls, variant, options, kind, tol = case
    backend = cls()
    _need(backend)
    ok, reason = backend.variant_available(variant)  # checked against the runtime in test_*_variants_*
    if not ok:
        pytest.skip(reason)  # an execution provider / device this host or build does not have
    res = _artifact(artifacts, model, kind)
    out_size = 32 if model == "r18" else 10
    session = backend.load(res.file, _manifest(kind.split("-")[0], res.file, out_size), variant, 2, options)
    try:
        out = session.run(example.numpy())
        assert out.shape == (1, out_size) and out.dtype == np.float32
        assert _rel(out, _ref(models, model, example)) < tol
        assert session.placement(), "every backend here reports per-node placement"
    finally:
        session.close()


# --- placement ---------------------------------------------------------------------------------

def test_onnxruntime_placement_is_per_node_provider(artifacts):
    import onnx

    backend = OnnxRuntimeBackend()
    _need(backend)
    res = artifacts["r18", "onnx"]
    session = backend.load(res.file, _manifest("onnx", res.file, 32), "cpu", 1, {})
    placement = session.placement()
    graph = onnx.load(str(res.file)).graph
    assert len(placement) == len(graph.node)
    assert {p.placement for p in placement} == {"CPUExecutionProvider"}
    assert {p.op_type for p in placement} <= {n.op_type for n in graph.node}
    assert {p.node for p in placement} == {n.name for n in graph.node}
    # ORT reports no precision; each assigned node's comes from its input's type in the file: all float here
    assert {p.precision for p in placement} == {"f32"}


def test_openvino_placement_f32_vs_default(artifacts):
    backend = OpenVinoBackend()
    _need(backend)
    import openvino as ov

    res = _artifact(artifacts, "r18", "openvino")
    manifest = _manifest("openvino", res.file, 32)
    f32 = backend.load(res.file, manifest, "CPU", 2, {"precision": "f32"})
    nodes = f32.placement()
    assert f32.inference_precision == "f32"
    assert nodes and {p.precision for p in nodes} == {"f32"}
    assert {p.placement for p in nodes} == {"CPU"}
    assert "Convolution" in {p.op_type for p in nodes}

    default = backend.load(res.file, manifest, "CPU", 2, {})
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 (OpenVINO's CPU lists no BF16 capability): no bf16 default to check")
    assert default.inference_precision == "bf16"
    precisions = {p.precision for p in default.placement()}
    assert "bf16" in precisions, precisions
    conv = [p for p in default.placement() if p.op_type == "Convolution"]
    assert conv and all(p.precision == "bf16" for p in conv)


def test_opencv_placement_records_engine_and_target(artifacts):
    backend = OpenCvDnnBackend()
    _need(backend)
    res = artifacts["r18", "onnx"]
    manifest = _manifest("onnx", res.file, 32)
    new = backend.load(res.file, manifest, "cpu", 1, {})
    assert new.engine == "new"
    nodes = new.placement()
    assert nodes and all(p.placement == "OPENCV/CPU (new engine)" for p in nodes)
    classic = backend.load(res.file, manifest, "cpu", 1, {"engine": "classic"})
    nodes = classic.placement()
    assert classic.engine == "classic"
    assert {p.placement for p in nodes} == {"OPENCV/CPU"} and {p.precision for p in nodes} == {"f32"}
    assert "Convolution" in {p.op_type for p in nodes}


def test_opencv_threads_restored_on_close(artifacts):
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    res = artifacts["r18", "onnx"]
    session = OpenCvDnnBackend().load(res.file, _manifest("onnx", res.file, 32), "cpu", 1, {})
    assert cv2.getNumThreads() == 1
    session.close()
    assert cv2.getNumThreads() == before


# --- errors ------------------------------------------------------------------------------------

LOADERS = [(OnnxRuntimeBackend, "cpu"), (OpenVinoBackend, "CPU"), (OpenCvDnnBackend, "cpu")]


@pytest.mark.parametrize("cls, variant", LOADERS, ids=[c.name for c, _ in LOADERS])
def test_garbage_file_is_a_clear_input_error(bad_files, cls, variant):
    backend = cls()
    _need(backend)
    with pytest.raises(FcbenchError, match="not a valid") as err:
        backend.load(bad_files / "garbage.onnx", None, variant, 1, {})
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_garbage_ir_is_a_clear_input_error(bad_files):
    backend = OpenVinoBackend()
    _need(backend)
    with pytest.raises(FcbenchError, match="not a valid OpenVINO IR") as err:
        backend.load(bad_files / "garbage.xml", None, "CPU", 1, {})
    assert err.value.exit_code == 2


@pytest.mark.parametrize("cls, variant, options", [(OnnxRuntimeBackend, "cpu", {}), (OpenVinoBackend, "CPU", {}),
                                                   (OpenCvDnnBackend, "cpu", {"engine": "classic"})],
                         ids=["onnxruntime", "openvino", "opencv-dnn"])
def test_unsupported_op_is_named(bad_files, cls, variant, options):
    backend = cls()
    _need(backend)
    with pytest.raises(FcbenchError, match="FooBar") as err:
        backend.load(bad_files / "custom_op.onnx", None, variant, 1, options)
    assert err.value.exit_code == 1 and "\n" not in str(err.value)


@pytest.mark.parametrize("cls, variant, kind", [(OnnxRuntimeBackend, "cpu", "onnx"),
                                                (OpenVinoBackend, "CPU", "openvino"),
                                                (OpenCvDnnBackend, "cpu", "onnx")],
                         ids=["onnxruntime", "openvino", "opencv-dnn"])
def test_wrong_input_shape_names_both_shapes(artifacts, cls, variant, kind):
    backend = cls()
    _need(backend)
    res = _artifact(artifacts, "r18", kind)
    session = backend.load(res.file, _manifest(kind, res.file, 32), variant, 1, {})
    with pytest.raises(FcbenchError, match=r"expects \[1, 3, 32, 32\], got \[1, 3, 16, 32\]") as err:
        session.run(np.zeros((1, 3, 16, 32), np.float32))
    assert err.value.exit_code == 1


def test_onnxruntime_fixed_batch_rejects_other_batch(artifacts):
    _need(OnnxRuntimeBackend())
    res = artifacts["r18", "onnx"]
    session = OnnxRuntimeBackend().load(res.file, _manifest("onnx", res.file, 32), "cpu", 1, {})
    with pytest.raises(FcbenchError, match=r"expects \[1, 3, 32, 32\], got \[2, 3, 32, 32\]"):
        session.run(np.zeros((2, 3, 32, 32), np.float32))


def test_opencv_cannot_run_ir_without_its_openvino_backend(artifacts):
    cv2 = pytest.importorskip("cv2")
    if list(cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_INFERENCE_ENGINE)):
        pytest.skip("this OpenCV has the OpenVINO backend, so the error this test checks cannot happen")
    res = _artifact(artifacts, "r18", "openvino")
    with pytest.raises(FcbenchError, match="no OpenVINO backend") as err:
        OpenCvDnnBackend().load(res.file, _manifest("openvino", res.file, 32), "cpu", 1, {})
    assert err.value.exit_code == 1


@pytest.mark.parametrize("cls, variant, options, words", [
    (OnnxRuntimeBackend, "cpu", {"graph_optimization": "max"}, "graph_optimization"),
    (OnnxRuntimeBackend, "cpu", {"bogus": 1}, "unknown option"),
    (OpenVinoBackend, "CPU", {"precision": "int4"}, "precision"),
    (OpenVinoBackend, "CPU", {"hint": "LATENCY"}, "unknown option"),
    (OpenCvDnnBackend, "cpu", {"engine": "fast"}, "engine"),
    (OpenCvDnnBackend, "cpu", {"fp16": True, "engine": "classic"}, "CPU_FP16"),
])
def test_bad_backend_options(artifacts, cls, variant, options, words):
    backend = cls()
    _need(backend)
    if cls is OpenCvDnnBackend and options.get("fp16"):
        import cv2

        if cv2.dnn.DNN_TARGET_CPU_FP16 in list(cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_OPENCV)):
            pytest.skip("this CPU has the CPU_FP16 target (ARMv8)")
    res = artifacts["r18", "onnx"]
    with pytest.raises(FcbenchError, match=words):
        backend.load(res.file, _manifest("onnx", res.file, 32), variant, 1, options)


# --- variants, versions, cheap import ------------------------------------------------------------

def test_onnxruntime_variants_match_its_providers():
    """Every variant is available exactly when onnxruntime lists its provider; the others say why."""
    backend = OnnxRuntimeBackend()
    _need(backend)
    import onnxruntime as ort

    from fcbench.backends.onnxruntime import PROVIDERS

    here = set(ort.get_available_providers()) | {d.ep_name for d in ort.get_ep_devices()}
    assert "cpu" in PROVIDERS and "CPUExecutionProvider" in here
    for variant, provider in PROVIDERS.items():
        ok, reason = backend.variant_available(variant)
        assert ok == (provider in here), (variant, reason)
        assert (reason == "") if ok else (provider in reason and "available:" in reason), (variant, reason)
    assert backend.variant_available("cpu") == (True, "")
    ok, reason = backend.variant_available("tpu")
    assert not ok and "no variant 'tpu'" in reason


def test_openvino_variants_match_its_devices():
    backend = OpenVinoBackend()
    _need(backend)
    import openvino as ov

    devices = ov.Core().available_devices  # e.g. ['CPU', 'GPU.0']
    for variant in ("CPU", "GPU", "NPU"):
        ok, reason = backend.variant_available(variant)
        assert ok == any(d.split(".")[0] == variant for d in devices), (variant, reason, devices)
        assert (reason == "") if ok else (variant in reason and "devices:" in reason), (variant, reason)
    assert backend.variant_available("AUTO")[0] == bool(devices)
    ok, reason = backend.variant_available("tpu")
    assert not ok and "no variant 'tpu'" in reason


def test_opencv_variants_match_its_targets():
    backend = OpenCvDnnBackend()
    _need(backend)
    import cv2

    cpu = cv2.dnn.DNN_TARGET_CPU in list(cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_OPENCV))
    ok, reason = backend.variant_available("cpu")
    assert ok == cpu, reason
    for variant in ("vulkan", "cuda", "opencl"):
        ok, reason = backend.variant_available(variant)
        assert (reason == "") if ok else (f"opencv {cv2.__version__}" in reason), (variant, reason)
    ok, reason = backend.variant_available("tpu")
    assert not ok and "no variant 'tpu'" in reason


@pytest.mark.parametrize("cls, key", [(OnnxRuntimeBackend, "onnxruntime"), (OpenVinoBackend, "openvino"),
                                      (OpenCvDnnBackend, "opencv")], ids=["onnxruntime", "openvino", "opencv-dnn"])
def test_versions(cls, key):
    backend = cls()
    _need(backend)
    assert backend.versions()[key]


def test_backend_modules_import_no_runtime():
    code = (
        "import sys\n"
        "import fcbench.backends.onnxruntime as a, fcbench.backends.openvino as b, fcbench.backends.opencv_dnn as c\n"
        "import fcbench.conversion.onnx, fcbench.conversion.openvino\n"
        "for m in (a.OnnxRuntimeBackend, b.OpenVinoBackend, c.OpenCvDnnBackend): m.available()\n"
        "bad = [m for m in ('onnxruntime', 'openvino', 'cv2', 'onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_profiles_name_real_variants():
    import tomllib

    classes = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend, "opencv-dnn": OpenCvDnnBackend}
    names = ["ort-cpu", "ort-xnnpack", "ort-nnapi", "ort-openvino", "openvino-latency", "openvino-f32", "opencv-cpu"]
    for name in names:
        doc = tomllib.loads((REPO / "fcbench" / "backends" / "profiles" / f"{name}.toml").read_text())
        cls = classes[doc["plugin"]]
        assert doc["variant"] in cls.variants, name
        assert doc["description"] and isinstance(doc.get("options"), dict), name
