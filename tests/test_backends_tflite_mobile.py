"""TFLite (litert-torch and Keras paths), PyTorch Mobile (.ptl) and ExecuTorch (.pte): export,
load in every backend variant this host can run, compare with PyTorch / Keras, and the errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcbench.artifact import Manifest, TensorSpec
from fcbench.backends.executorch import ExecutorchBackend
from fcbench.backends.pytorch_mobile import PytorchMobileBackend
from fcbench.backends.tflite import TfliteBackend
from fcbench.conversion.base import ExportResult
from fcbench.conversion.pte import PteExporter
from fcbench.conversion.ptl import PtlExporter
from fcbench.conversion.tflite import TfliteExporter
from fcbench.data.preprocess import Preprocessing
from fcbench.errors import FcbenchError

MODELS = {
    "r18": dict(width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32], embedding_size=32),
    "mobilenet_v2": dict(width=0.25, num_classes=10, input_size=[32, 32]),
}
EXPORTERS = {"tflite": TfliteExporter, "ptl": PtlExporter, "pte": PteExporter}
RTOL = 1e-4  # fp32: max abs difference relative to the largest output magnitude


def close(out: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> bool:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    return float(np.max(np.abs(out - ref))) <= rtol * float(np.max(np.abs(ref)))


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Fresh models have identity BatchNorms and tiny outputs; give every layer real numbers."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def models():
    from fcbench.models import create

    out = {}
    for name, opts in MODELS.items():
        torch.manual_seed(0)
        model = _randomize(create(name, **opts))
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out[name] = (model, x, model(x).numpy())
    return out


@pytest.fixture(scope="module")
def export(models, tmp_path_factory):
    """export(model, fmt, **options) -> (ExportResult, Manifest), made once per module."""
    root = tmp_path_factory.mktemp("artifacts")
    cache: dict[tuple, tuple[ExportResult, Manifest]] = {}

    def make(name: str, fmt: str, **options) -> tuple[ExportResult, Manifest]:
        if fmt == "pte":
            options.setdefault("delegate", "xnnpack")
        key = (name, fmt, tuple(sorted(options.items())))
        if key not in cache:
            model, x, _ = models[name]
            stem = "-".join([name, *(f"{k}{v}" for k, v in sorted(options.items()))])
            cls = EXPORTERS[fmt]
            result = cls().export(model, x, root / (stem + cls.suffix), dict(options))
            cache[key] = result, manifest_for(result, fmt)
        return cache[key]

    return make


def manifest_for(result: ExportResult, fmt: str, shape: list[int] | None = None) -> Manifest:
    shape = shape or ([1, 32, 32, 3] if result.input_layout == "NHWC" else [1, 3, 32, 32])
    return Manifest(format=fmt, file=result.file.name, sha256="", size=result.file.stat().st_size, model={},
                    inputs=[TensorSpec("input", shape, "float32", result.input_layout)],
                    preprocessing=Preprocessing(), output_kind="embedding", output_size=0, extra=dict(result.extra))


# --- TFLite (litert-torch) --------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("variant", ["cpu", "xnnpack"])
def test_tflite_matches_torch_and_reports_placement(models, export, name, variant):
    result, manifest = export(name, "tflite")
    assert result.input_layout == "NCHW" and result.options["litert_torch"]
    assert result.extra["tflite_ops"]["CONV_2D"] > 0
    _, x, ref = models[name]
    session = TfliteBackend().load(result.file, manifest, variant, 2, {})
    try:
        assert close(session.run(x.numpy()), ref)
        rows = session.placement()
    finally:
        session.close()
    assert sum(result.extra["tflite_ops"].values()) == len(rows)
    assert {r.precision for r in rows} == {"f32"}
    # with the XNNPACK delegate every op of these models is delegated; without it none is
    assert {r.placement for r in rows} == ({"XNNPACK"} if variant == "xnnpack" else {"CPU"})
    assert any(r.op_type == "CONV_2D" for r in rows)


def test_tflite_nhwc_option_gives_same_numbers_on_transposed_input(models, export):
    nchw, _ = export("r18", "tflite")
    result, manifest = export("r18", "tflite", nhwc=True)
    assert result.input_layout == "NHWC" and result.options["nhwc"] is True
    _, x, ref = models["r18"]
    backend = TfliteBackend()
    session = backend.load(result.file, manifest, "xnnpack", 1, {})
    out = session.run(x.numpy().transpose(0, 2, 3, 1).copy())
    assert close(out, ref)
    with pytest.raises(FcbenchError, match=r"expects \[1, 32, 32, 3\].*got \[1, 3, 32, 32\]"):
        session.run(x.numpy())
    reference = backend.load(nchw.file, export("r18", "tflite")[1], "xnnpack", 1, {})
    assert close(out, reference.run(x.numpy()), 1e-5)
    # the NCHW artifact needs one more layout transpose at its input
    assert result.extra["tflite_ops"]["TRANSPOSE"] == nchw.extra["tflite_ops"]["TRANSPOSE"] - 1


def test_tflite_placement_shows_ops_xnnpack_leaves_on_cpu(tmp_path):
    class WithCumsum(torch.nn.Module):  # XNNPACK has no CUMSUM: two delegate partitions around it
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1)).mean((2, 3))

    model, x = WithCumsum().eval(), torch.randn(1, 3, 16, 16)
    result = TfliteExporter().export(model, x, tmp_path / "cumsum.tflite", {"nhwc": True})
    session = TfliteBackend().load(result.file, manifest_for(result, "tflite", [1, 16, 16, 3]), "xnnpack", 1, {})
    with torch.no_grad():
        assert close(session.run(x.numpy().transpose(0, 2, 3, 1).copy()), model(x).numpy())
    where = {(r.op_type, r.placement) for r in session.placement()}
    assert ("CUMSUM", "CPU") in where and ("CONV_2D", "XNNPACK") in where
    assert ("CONV_2D", "CPU") not in where


def test_tflite_device_only_variants_say_why():
    backend = TfliteBackend()
    for variant in ("gpu", "nnapi"):
        ok, reason = backend.variant_available(variant)
        assert not ok and "Android" in reason and variant in reason
    assert backend.variant_available("cpu") == (True, "")
    assert backend.variant_available("xnnpack") == (True, "")
    ok, reason = backend.variant_available("cuda")
    assert not ok and "variants" in reason


def test_tflite_gpu_load_refuses(export):
    result, manifest = export("r18", "tflite")
    with pytest.raises(FcbenchError, match="GPU delegate"):
        TfliteBackend().load(result.file, manifest, "gpu", None, {})


def test_tflite_conversion_failure_names_the_op(tmp_path):
    class Svd(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x[0, 0])[1]

    with pytest.raises(FcbenchError, match=r"unsupported op aten\._linalg_svd") as info:
        TfliteExporter().export(Svd(), torch.randn(1, 3, 8, 8), tmp_path / "svd.tflite", {})
    assert info.value.exit_code == 1


# --- PyTorch Mobile (.ptl) --------------------------------------------------------------------

@pytest.mark.parametrize("name", list(MODELS))
def test_ptl_matches_torch_and_restores_threads(models, export, name):
    result, manifest = export(name, "ptl")
    assert result.options["freeze"] is True and "aten::_convolution" in result.extra["ptl_operators"]
    _, x, ref = models[name]
    before = torch.get_num_threads()
    session = PytorchMobileBackend().load(result.file, manifest, "cpu", 1, {})
    assert torch.get_num_threads() == 1
    assert close(session.run(x.numpy()), ref)
    rows = session.placement()
    session.close()
    assert torch.get_num_threads() == before
    assert rows and {r.placement for r in rows} == {"CPU"}
    assert any(r.op_type == "aten::_convolution" for r in rows)


# --- ExecuTorch (.pte) ------------------------------------------------------------------------

@pytest.mark.parametrize("name,delegate", [("r18", "xnnpack"), ("r18", "none")])
def test_pte_matches_torch_and_counts_delegated_ops(models, export, name, delegate):
    result, manifest = export(name, "pte", delegate=delegate)
    variant = {"xnnpack": "xnnpack", "none": "portable"}[delegate]
    extra = result.extra
    assert extra["backend_variant"] == variant
    if delegate == "xnnpack":
        assert extra["ops_delegated"] > 0 and extra["ops_portable"] == 0
        assert extra["delegated_ops_by_backend"] == {"XnnpackBackend": extra["ops_delegated"]}
    else:
        assert extra["ops_delegated"] == 0 and extra["portable_ops"]["aten.convolution.default"] > 0
    _, x, ref = models[name]
    backend = ExecutorchBackend()
    session = backend.load(result.file, manifest, variant, 2, {})
    try:
        assert close(session.run(x.numpy()), ref)
        rows = session.placement()
    finally:
        session.close()
    if delegate == "xnnpack":
        assert {r.placement for r in rows} == {"XNNPACK"} and rows[0].op_type == "XnnpackBackend partition"
    else:
        assert {r.placement for r in rows} == {"CPU"}
        assert any(r.op_type == "aten::convolution.out" and r.precision == "f32" for r in rows)
    other = "portable" if variant == "xnnpack" else "xnnpack"
    with pytest.raises(FcbenchError, match="delegate"):
        backend.load(result.file, manifest, other, None, {})


def test_pte_conversion_failure_names_the_op(tmp_path):
    class Bucketize(torch.nn.Module):
        def forward(self, x):
            return torch.bucketize(x, torch.tensor([0.0, 0.5]))

    with pytest.raises(FcbenchError, match=r"unsupported op aten\.bucketize") as info:
        PteExporter().export(Bucketize(), torch.randn(1, 3, 8, 8), tmp_path / "b.pte", {"delegate": "none"})
    assert info.value.exit_code == 1


# --- shared contract ------------------------------------------------------------------------

BACKENDS = [("tflite", TfliteBackend, "xnnpack"), ("ptl", PytorchMobileBackend, "cpu"),
            ("pte", ExecutorchBackend, "xnnpack")]


@pytest.mark.parametrize("fmt,cls,variant", BACKENDS)
def test_garbage_file_is_a_clear_error(tmp_path, fmt, cls, variant):
    junk = tmp_path / f"junk.{fmt}"
    junk.write_bytes(b"not a model at all " * 64)
    fake = ExportResult(file=junk)
    with pytest.raises(FcbenchError, match=r"not a valid") as info:
        cls().load(junk, manifest_for(fake, fmt), variant, None, {})
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt,cls,variant", BACKENDS)
def test_wrong_input_shape_names_both_shapes(models, export, fmt, cls, variant):
    result, manifest = export("r18", fmt)
    session = cls().load(result.file, manifest, variant, None, {})
    with pytest.raises(FcbenchError, match=r"expects \[1, 3, 32, 32\].*got \[1, 3, 31, 32\]"):
        session.run(np.zeros((1, 3, 31, 32), np.float32))
    with pytest.raises(FcbenchError, match="float64"):
        session.run(np.zeros((1, 3, 32, 32), np.float64))
    session.close()


@pytest.mark.parametrize("fmt,cls,variant", BACKENDS)
def test_unknown_options_are_rejected(models, export, fmt, cls, variant, tmp_path):
    model, x, _ = models["r18"]
    with pytest.raises(FcbenchError, match="option 'bogus' is unknown"):
        EXPORTERS[fmt]().export(model, x, tmp_path / ("m" + EXPORTERS[fmt].suffix), {"bogus": 1})
    result, manifest = export("r18", fmt)
    with pytest.raises(FcbenchError, match="unknown option 'bogus'; options: none"):
        cls().load(result.file, manifest, variant, None, {"bogus": 1})


@pytest.mark.parametrize("fmt,key", [("tflite", "nhwc"), ("ptl", "freeze")])
def test_boolean_exporter_options_take_true_or_false_only(models, fmt, key, tmp_path):
    model, x, _ = models["r18"]
    with pytest.raises(FcbenchError, match=f"option '{key}' must be true or false, got 'maybe'"):
        EXPORTERS[fmt]().export(model, x, tmp_path / ("m" + EXPORTERS[fmt].suffix), {key: "maybe"})
    if fmt == "ptl":  # the string 'false' means False (bool('false') would be True)
        unfrozen = EXPORTERS[fmt]().export(model, x, tmp_path / "u.ptl", {key: "false"})
        frozen = EXPORTERS[fmt]().export(model, x, tmp_path / "f.ptl", {key: "true"})
        assert unfrozen.options[key] is False and frozen.options[key] is True


@pytest.mark.parametrize("fmt,cls,variant", BACKENDS)
def test_load_checks_variant_file_and_threads_first(export, fmt, cls, variant, tmp_path):
    result, manifest = export("r18", fmt)
    backend = cls()
    with pytest.raises(FcbenchError, match=f"{backend.name} has no variant 'gpu0'; variants: ") as err:
        backend.load(result.file, manifest, "gpu0", None, {})
    assert err.value.exit_code == 2
    with pytest.raises(FcbenchError, match="gone.* does not exist") as err:
        backend.load(tmp_path / ("gone." + fmt), manifest, variant, None, {})
    assert err.value.exit_code == 2
    with pytest.raises(FcbenchError, match="threads must be >= 1, got 0"):
        backend.load(result.file, manifest, variant, 0, {})


def test_a_runtime_that_cannot_be_imported_is_named_with_its_install_hint(tmp_path, monkeypatch):
    class Broken(TfliteBackend):
        runtime_modules = ("fcbench_no_such_runtime",)

    class Slow(TfliteBackend):  # a runtime whose import takes 50 ms: imported, and that time returned
        runtime_modules = ("fcbench_slow_runtime_probe",)

    TfliteBackend().import_runtime()  # the real runtime imports (a failure raises FcbenchError)
    assert all(name in sys.modules for name in TfliteBackend.runtime_modules)
    (tmp_path / "fcbench_slow_runtime_probe.py").write_text("import time\ntime.sleep(0.05)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert Slow().import_runtime() >= 50 and "fcbench_slow_runtime_probe" in sys.modules
    finally:
        sys.modules.pop("fcbench_slow_runtime_probe", None)
    hint = r"cannot import fcbench_no_such_runtime .*pip install 'fcbench\[tflite\]'"
    with pytest.raises(FcbenchError, match=hint) as err:
        Broken().import_runtime()
    assert err.value.exit_code == 1


def test_versions_and_cheap_availability():
    assert TfliteBackend().versions()["ai-edge-litert"]
    assert ExecutorchBackend().versions()["executorch"]
    assert PytorchMobileBackend().versions()["torch"] == torch.__version__
    code = ("import sys\n"
            "from fcbench.backends.tflite import TfliteBackend\n"
            "from fcbench.backends.executorch import ExecutorchBackend\n"
            "from fcbench.backends.pytorch_mobile import PytorchMobileBackend\n"
            "import fcbench.conversion.tflite, fcbench.conversion.pte, fcbench.conversion.ptl\n"
            "for c in (TfliteBackend, ExecutorchBackend, PytorchMobileBackend): assert c.available()[0], c\n"
            "from fcbench.conversion.pte import PteExporter\n"
            "from fcbench.conversion.tflite import TfliteExporter\n"
            "for c in (TfliteExporter, PteExporter): assert c.available()[0], c\n"
            "heavy = [m for m in ('ai_edge_litert', 'tensorflow', 'executorch', 'litert_torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_profiles_name_real_variants():
    from fcbench.backends import profiles

    classes = {"tflite": TfliteBackend, "executorch": ExecutorchBackend, "pytorch-mobile": PytorchMobileBackend}
    found = profiles()
    for name in ("tflite-cpu", "tflite-xnnpack", "tflite-gpu", "tflite-nnapi", "executorch-xnnpack", "pytorch-mobile"):
        spec = found[name]
        assert spec.variant in classes[spec.plugin].variants, name
        assert spec.options == {}


# --- Keras -> TFLite --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_sources(tmp_path_factory):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(16, 3, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)  # 4608 weights: quantized by DEFAULT
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(10)(h))
    root = tmp_path_factory.mktemp("keras")
    model.save(str(root / "m.keras"))
    model.save(str(root / "m.h5"))
    model.export(str(root / "m_savedmodel"), verbose=False)
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    return {"keras": root / "m.keras", "h5": root / "m.h5", "saved_model": root / "m_savedmodel"}, x, \
        model(x).numpy()


@pytest.mark.parametrize("source", ["keras", "h5", "saved_model"])
def test_keras_paths_each_optimize_mode(keras_sources, tmp_path, source):
    from fcbench.conversion.tflite import convert_keras

    paths, x, ref = keras_sources
    files = {}
    for mode in ("none", "default", "size", "latency"):
        result = convert_keras(paths[source], tmp_path / f"{mode}.tflite", optimize=mode)
        assert result.input_layout == "NHWC" and result.extra["source_format"] == source
        assert result.options["tf_optimizations"] == ({"none": [], "default": ["DEFAULT"], "size": [
            "OPTIMIZE_FOR_SIZE"], "latency": ["OPTIMIZE_FOR_LATENCY"]}[mode])
        manifest = manifest_for(result, "tflite", [1, 16, 16, 3])
        session = TfliteBackend().load(result.file, manifest, "xnnpack", 1, {})
        out = session.run(x)
        assert session.run(np.repeat(x, 3, axis=0)).shape == (3, 10)  # Keras models have a free batch
        precisions = {r.precision for r in session.placement()}
        files[mode] = result.file.read_bytes()
        if mode == "none":
            assert close(out, ref) and precisions == {"f32"}
        else:  # dynamic-range quantization: int8 weights, float activations
            assert close(out, ref, 5e-2) and "f32+i8w" in precisions
    # in TF 2.21 OPTIMIZE_FOR_SIZE and OPTIMIZE_FOR_LATENCY are aliases of DEFAULT
    assert files["size"] == files["default"] == files["latency"]
    assert len(files["default"]) < len(files["none"])


def test_keras_bad_inputs(keras_sources, tmp_path):
    from fcbench.conversion.tflite import convert_keras

    paths, _, _ = keras_sources
    with pytest.raises(FcbenchError, match="did you mean 'latency'"):
        convert_keras(paths["keras"], tmp_path / "m.tflite", optimize="latncy")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"garbage" * 10)
    with pytest.raises(FcbenchError, match="not a loadable Keras model") as info:
        convert_keras(junk, tmp_path / "m.tflite", optimize="none")
    assert info.value.exit_code == 2
    with pytest.raises(FcbenchError, match="not a Keras model"):
        convert_keras(Path(__file__), tmp_path / "m.tflite")
