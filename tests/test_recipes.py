from __future__ import annotations

import re

import pytest
from conftest import REPO, TINY_TRAIN

from fcbench.errors import FcbenchError
from fcbench.recipes import load_recipe
from fcbench.results import Store

QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def run_ok(cli, *args):
    """`fcbench run ARGS` that must succeed: its result and the run id it printed."""
    r = cli("run", *args)
    assert r.code == 0, r.err
    return r, re.search(r"run id (\S+)", r.err).group(1)


def write(tmp_path, text: str):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_every_shipped_recipe_validates(cli):
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert QUICKSTART in recipes, recipes
    for path in recipes:
        r = cli("run", path, "--check")
        assert r.code == 0, (path, r.err)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("steps:\n  - train: {epochs: 1, bacth_size: 4}\n", "unknown key 'bacth_size' (did you mean 'batch_size'?)"),
        ("steps:\n  - trian: {}\n", "unknown verb 'trian' (did you mean 'train'?)"),
        ("step:\n  - train: {}\n", "unknown key 'step' (did you mean 'steps'?)"),
        ("steps: []\n", "non-empty list"),
        ("steps:\n  - eval: {checkpoint: '${ot}/m.pt'}\nvars: {out: x}\n", "unknown variable '${ot}'"),
        ("steps:\n  - train: {epochs: 0}\n", "epochs must be >= 1"),
        ("steps:\n  - train: {epochs: [1\n", "not valid YAML"),
    ],
)
def test_recipe_errors_name_key_and_file(cli, tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(FcbenchError) as err:
        load_recipe(p)
    assert needle in str(err.value) and str(p) in str(err.value)
    r = cli("run", p)
    assert r.code == 2 and needle in r.err and len(r.err.strip().splitlines()) == 1


def test_defaults_vars_and_overrides(tmp_path):
    p = write(tmp_path, "vars: {out: a}\ndefaults: {store: s.sqlite, seed: 3}\n"
                        "steps:\n  - train: {out: '${out}/t'}\n  - eval: {checkpoint: '${out}/t/model.pt'}\n")
    rec = load_recipe(p, {"out": "b"})
    (verb1, train), (verb2, ev) = rec.steps
    assert (verb1, train.out, rec.steps[0].store, train.seed) == ("train", "b/t", "s.sqlite", 3)
    assert (verb2, ev.checkpoint, rec.steps[1].store) == ("eval", "b/t/model.pt", "s.sqlite")  # eval takes no seed
    assert not hasattr(ev, "seed")
    with pytest.raises(FcbenchError, match="no such variable"):
        load_recipe(p, {"ou": "b"})


def test_a_value_that_is_only_a_variable_keeps_its_type(tmp_path):
    p = write(tmp_path, "vars: {width: 0.25, layers: [1, 1, 1, 1], out: runs}\n"
                        "steps:\n  - train: {model_options: {width: '${width}', layers: '${layers}'},\n"
                        "             out: '${out}/w${width}'}\n")
    (_, cfg), = load_recipe(p).steps
    assert cfg.model_options == {"width": 0.25, "layers": [1, 1, 1, 1]} and cfg.out == "runs/w0.25"
    (_, cfg), = load_recipe(p, {"width": 0.5}).steps
    assert cfg.model_options["width"] == 0.5 and cfg.out == "runs/w0.5"


def test_recipe_runs_train_eval_results(cli, in_tmp):
    p = write(in_tmp, """
name: mini
vars: {out: runs/mini}
defaults: {store: s.sqlite}
steps:
""" + TINY_TRAIN + """\
  - eval: {checkpoint: '${out}/model.pt', data: synthetic:pairs, data_options: {num_pairs: 40}, nfolds: 2}
  - results: {format: csv}
""")
    r, run_id = run_ok(cli, p)
    assert "accuracy" in r.out and "run_id" in r.out
    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(run_id=run_id)
    assert {r["kind"] for r in rows} == {"train", "quality"} and all(r["recipe"] == "mini" for r in rows)


def test_recipe_converts_and_benches(cli, in_tmp):
    """train -> convert -> bench over a pattern -> results: one run id on every row, tables printed."""
    p = write(in_tmp, """
name: chain
vars: {out: runs/chain}
defaults: {store: s.sqlite, threads: 2}
steps:
""" + TINY_TRAIN + """\
  - convert: {checkpoint: '${out}/model.pt', to: 'onnx,openvino', options: {onnx: {opset: 18}}}
  - bench: {artifacts: '${out}/model.*', backends: 'onnxruntime:cpu,openvino-f32', warmup: 1, runs: 3,
            min_seconds: 0}
  - results: {format: csv}
""")
    r, run_id = run_ok(cli, p)
    assert "convert runs/chain/model.pt" in r.out and "openvino-f32" in r.out
    with Store(in_tmp / "s.sqlite") as s:
        speed = s.query(run_id=run_id, kind="speed")
    # model.pt, .onnx and .xml matched the pattern (their manifests and model.bin are left out); each pair
    # that loads: onnxruntime on .onnx, openvino on .onnx and .xml
    assert sorted((r["format"], r["backend"]) for r in speed) == [("onnx", "onnxruntime"), ("onnx", "openvino"),
                                                                  ("openvino", "openvino")], speed
    assert all(r["recipe"] == "chain" and r["threads"] == 2 and r["p50_ms"] > 0 for r in speed)


@pytest.mark.parametrize(
    "step, needle",
    [
        ("  - bench: {artifacts: x.onnx, backend: all}\n", "unknown key 'backend' (did you mean 'backends'?)"),
        ("  - bench: {artifacts: x.onnx, require_placement: 2}\n", "require_placement must be in [0, 1]"),
        ("  - convert: {checkpoint: m.pt, to: 'onnx,tflit'}\n", "tflit"),
        ("  - convert: {checkpoint: m.pt, to: onnx, options: {tflite: {nhwc: true}}}\n", "formats in 'to'"),
        ("  - convert: {to: onnx}\n", "'checkpoint' is required"),
    ],
)
def test_convert_and_bench_steps_are_validated_up_front(cli, tmp_path, step, needle):
    p = write(tmp_path, "steps:\n" + step)
    r = cli("run", p)
    assert r.code == 2 and needle in r.err and str(p) in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_a_bench_pattern_that_matches_nothing_is_one_error(cli, tmp_path):
    p = write(tmp_path, "steps:\n  - bench: {artifacts: 'nowhere/model.*', backends: all}\n")
    r = cli("run", p)
    assert r.code == 2 and "'nowhere/model.*' matches no file" in r.err, r.err


@pytest.mark.slow
def test_quickstart_learns(cli, in_tmp):
    """The README's main job: trained verification accuracy clearly beats the untrained weights."""
    r = cli("run", QUICKSTART, "--set", "out=runs/q")
    assert r.code == 0, r.err
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        acc = [row["value"] for row in s.query(kind="quality", metric="accuracy")]
    init_acc, trained_acc = acc
    assert trained_acc > init_acc + 0.1, (init_acc, trained_acc)
    assert trained_acc > 0.85


@pytest.mark.slow
def test_android_latency_recipe_at_toy_scale(cli, in_tmp):
    """Seed 4 end to end on built-in data: four classifiers learn, convert to TFLite (float, faithful), are
    quantized by name (tflite-dynamic, the paper's int8 weights), and float and quantized files are timed on
    TFLite's CPU kernels and XNNPACK, with load time stored apart from inference."""
    r, run_id = run_ok(cli, REPO / "recipes" / "android-latency.yaml", "--set", "out=runs/a")
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        top1 = {row["model"]: row["value"] for row in s.query(run_id=run_id, kind="quality", metric="top1")}
        speed = s.query(run_id=run_id, kind="speed")
        compress = s.query(run_id=run_id, kind="compress")
    assert set(top1) == {"alexnet", "alexnet_separable", "mobilenet_v1", "mobilenet_v2"}
    assert all(v > 0.85 for v in top1.values()), top1  # chance is 0.5
    cells = sorted((row["model"], row["variant"], row["lineage"].endswith("quantize(tflite-dynamic)")) for row in speed)
    assert cells == sorted((m, v, q) for m in top1 for v in ("cpu", "xnnpack") for q in (False, True)), cells
    assert all(row["format"] == "tflite" and row["init_ms"] > 0 and row["p50_ms"] > 0 for row in speed)
    assert sorted(row["model"] for row in compress) == sorted(top1)
    assert all(row["extra"]["technique"] == "tflite-dynamic" and row["extra"]["fidelity"]["cosine_mean"] > 0.99
               for row in compress)
    assert "alexnet_separable/model.tflite" in r.out  # the table tells the four model.tflite files apart
    assert "alexnet_separable/model-tflite-dynamic.tflite" in r.out


@pytest.mark.slow
def test_serbian_kd_recipe_at_toy_scale(cli, in_tmp):
    """Seed 1 end to end: teacher, student alone and distilled (embedding-mse) evaluated with the flip test,
    the distilled student converted and timed on OpenCV DNN and PyTorch Mobile, one table of the three."""
    r, run_id = run_ok(cli, REPO / "recipes" / "serbian-kd-r34-r18.yaml", "--set", "out=runs/s", "--set", "epochs=3",
                       "--set", "milestones=[2]")
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        acc = {row["artifact"]: row for row in s.query(run_id=run_id, kind="quality", metric="accuracy")}
        speed = s.query(run_id=run_id, kind="speed")
    assert set(acc) == {f"runs/s/{n}/model.pt" for n in ("teacher", "alone", "distilled")}
    assert all(row["protocol"] == "verification+flip" and row["extra"]["label"] == "LFW-style" for row in acc.values())
    assert acc["runs/s/distilled/model.pt"]["lineage"] == "distill(embedding-mse)"
    assert sorted(row["backend"] for row in speed) == ["opencv-dnn", "pytorch-mobile"]
    assert "LFW-style accuracy" in r.out and "distill(embedding-mse)" in r.out


@pytest.mark.slow
def test_serbian_pruning_recipe_at_toy_scale(cli, in_tmp):
    """Seed 1's pruning table: r18 and r34, dense and 50 % channel-pruned (fine-tuned), evaluated with the flip
    test, converted to ONNX and PTL and timed on OpenCV DNN and PyTorch Mobile; rows in the store, tables shown."""
    r, run_id = run_ok(cli, REPO / "recipes" / "serbian-pruning.yaml", "--set", "out=runs/p", "--set", "epochs=1",
                       "--set", "milestones=[]", "--set", "data_options={num_classes: 8, samples_per_class: 8}",
                       "--set", "eval_data_options={num_pairs: 100}", "--set", "finetune_epochs=1",
                       "--set", "batch_size=16", "--set", "runs=5", "--set", "min_seconds=0", "--set", "width=0.125")
    names = {f"runs/p/{m}/{n}" for m in ("r18", "r34") for n in ("model", "pruned")}
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        acc = {row["artifact"]: row for row in s.query(run_id=run_id, kind="quality", metric="accuracy")}
        pruned = {row["artifact"]: row for row in s.query(run_id=run_id, kind="compress")}
        speed = s.query(run_id=run_id, kind="speed")
    assert set(acc) == {f"{n}.pt" for n in names}
    assert acc["runs/p/r34/pruned.pt"]["lineage"] == "train(arcface) > prune(channel)"
    assert set(pruned) == {"runs/p/r18/pruned.pt", "runs/p/r34/pruned.pt"}
    for row in pruned.values():
        assert row["extra"]["macs_after"] < 0.35 * row["extra"]["macs_before"]
        assert row["extra"]["options"]["finetune_epochs"] == 1 and len(row["extra"]["finetune"]) == 1
    assert sorted((row["artifact"], row["backend"]) for row in speed) == sorted(
        [(f"{n}.onnx", "opencv-dnn") for n in names] + [(f"{n}.ptl", "pytorch-mobile") for n in names])
    assert all(row["p50_ms"] > 0 for row in speed)
    assert "LFW-style accuracy" in r.out and "runs/p/r34/pruned.ptl" in r.out


@pytest.mark.slow
def test_russian_adaptive_margin_recipe_at_toy_scale(cli, in_tmp):
    """Seed 2: every method of the dissertation's table and the ablation rows, one line each with LFW-style and
    AgeDB-style verification and identification rank-1."""
    r, run_id = run_ok(cli, REPO / "recipes" / "russian-adaptive-margin.yaml", "--set", "out=runs/r",
                       "--set", "epochs=2", "--set", "milestones=[2]",
                       "--set", "data_options={num_classes: 16, samples_per_class: 8}",
                       "--set", "ident_options={num_classes: 16, samples_per_class: 4, split: test}")
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        rows = s.query(run_id=run_id, kind="quality")
    by = {}
    for row in rows:
        by.setdefault(row["artifact"], {})[(row["extra"]["label"], row["metric"])] = row["value"]
    names = {"teacher", "alone", "triplet-l2", "triplet-cos", "margin-t4", "angular", "am-copy-mi-freeze",
             "am-copy-mi", "am-copy", "am-mi", "am-copy-freeze", "ekd"}
    assert set(by) == {f"runs/r/{n}/model.pt" for n in names}
    for figures in by.values():
        assert {("LFW-style", "accuracy"), ("AgeDB-style", "accuracy"), ("identification", "rank1")} <= set(figures)
    for col in ("LFW-style accuracy", "AgeDB-style accuracy", "identification rank1"):
        assert col in r.out
    lineage = {row["artifact"]: row["lineage"] for row in rows}
    assert lineage["runs/r/am-mi/model.pt"] == "distill(adaptive-margin)"


@pytest.mark.slow
def test_croatian_cifar_quant_recipe_at_toy_scale(cli, in_tmp):
    """Seed 3: fp32, dynamic, static and QAT int8 ResNet18 (CIFAR stem) on CIFAR-10 python batches, as .ptl:
    size, top-1 with its delta against fp32, and PyTorch Mobile latency, in the recipe's tables."""
    from formats import write_cifar10

    write_cifar10(in_tmp / "cifar-10-batches-py", per_batch=8)
    data = f"cifar10:{in_tmp / 'cifar-10-batches-py'}"
    r, run_id = run_ok(cli, REPO / "recipes" / "croatian-cifar-quant.yaml", "--set", "out=runs/c",
                       "--set", f"data={data}", "--set", "data_options={}", "--set", f"eval_data={data}",
                       "--set", "eval_data_options={split: test}", "--set", "width=0.125",
                       "--set", "layers=[1, 1, 1, 1]", "--set", "epochs=1", "--set", "calib_size=32")
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        sizes = {row["extra"]["technique"]: row for row in s.query(run_id=run_id, kind="compress")}
        top1 = {row["artifact"]: row for row in s.query(run_id=run_id, kind="quality", metric="top1")}
        speed = s.query(run_id=run_id, kind="speed")
    assert set(sizes) == {"torch-dynamic", "torch-static", "torch-qat"}
    # static and QAT quantize every conv: smaller (0.64x at this toy width, where the container's bytes weigh).
    # Dynamic quantizes Linear weights only, here one 64 -> 10 classifier, so its file is the float one give or
    # take the container's bytes (3 bytes smaller in one process, a hair larger in a pytest-xdist worker): the
    # size claim is the full-scale recipe's, not this toy's
    assert all(sizes[t]["value"] < 0.8 * sizes[t]["extra"]["size_before_mb"] for t in ("torch-static", "torch-qat"))
    assert sizes["torch-dynamic"]["value"] < 1.05 * sizes["torch-dynamic"]["extra"]["size_before_mb"]
    names = {f"runs/c/fp32/{n}" for n in ("model.pt", "model.ptl", "dynamic.ptl", "static.ptl", "qat.ptl")}
    assert set(top1) == names, set(top1)
    assert sorted(row["artifact"].rsplit("/", 1)[-1] for row in speed) == [
        "dynamic.ptl", "model.ptl", "qat.ptl", "static.ptl"]
    assert all(row["backend"] == "pytorch-mobile" and row["p50_ms"] > 0 for row in speed)
    assert "static.ptl" in r.out and "quantize(torch-qat)" in r.out


@pytest.mark.slow
def test_russian_detector_gating_recipe_at_toy_scale(cli, in_tmp):
    """Seed 2, motion gating: a tiny detector trained on come-and-go synthetic video, eval --video on moving
    truth in PyTorch and through ONNX Runtime (the front and back artifacts of convert --split-at): quality rows
    without and with the gate, the gate's options and frames skipped in their extra, one speed row per mode."""
    r, run_id = run_ok(cli, REPO / "recipes" / "russian-detector-gating.yaml", "--set", "out=runs/g",
                       "--set", "epochs=1",
                       "--set", "train_options={videos: 2, frames: 16, height: 64, width: 64, visits: true}",
                       "--set", "eval_options={videos: 1, frames: 24, height: 64, width: 64, visits: true, "
                                "truth: moving}")
    with Store(in_tmp / "results" / "fcbench.sqlite") as s:
        quality = s.query(run_id=run_id, kind="quality", metric="map50")
        speed = s.query(run_id=run_id, kind="speed")
    got = {(row["backend"], row["protocol"]): row for row in quality}
    assert set(got) == {(b, p) for b in ("pytorch", "onnxruntime") for p in ("detection+video", "detection+video+gate")}
    for backend in ("pytorch", "onnxruntime"):
        gated = got[(backend, "detection+video+gate")]
        assert gated["extra"]["gating"] == {"layer": 6, "lam": 0.4, "alpha": 0.9, "alpha_moving": 1.0}
        assert gated["extra"]["frames_skipped"] > 0 and gated["extra"]["frames"] == 24
        assert got[(backend, "detection+video")]["extra"]["frames_skipped"] == 0
    assert (got[("pytorch", "detection+video+gate")]["extra"]["frames_skipped"]
            == got[("onnxruntime", "detection+video+gate")]["extra"]["frames_skipped"])
    assert got[("onnxruntime", "detection+video+gate")]["value"] == pytest.approx(
        got[("pytorch", "detection+video+gate")]["value"], abs=2e-3)
    assert len(speed) == 4 and all(len(row["samples_ms"]) == 24 for row in speed)
    assert "frames skipped" in r.out and "model.front.onnx" in r.out
