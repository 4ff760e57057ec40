"""The detector through the CLI: train, eval (mAP) on the checkpoint and through runtimes, convert
with parity, bench; bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import converted_file
from tests.detection_rects import register

TINY = ["--model", "ssd-mobilenetv2", "-o", "width=0.25", "-o", "input_size=64", "-o", "num_classes=2"]


@pytest.fixture
def rects(monkeypatch):
    register(monkeypatch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny detector trained one short epoch on rects (enough to convert and evaluate; not to detect well)."""
    mp = pytest.MonkeyPatch()
    register(mp)
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    root = tmp_path_factory.mktemp("det")
    try:
        ckpt = Path(train(TrainConfig(
            model="ssd-mobilenetv2", model_options={"width": 0.25, "input_size": 64, "num_classes": 2},
            data="rects", data_options={"n": 32}, epochs=1, batch_size=16, lr=0.005, optimizer="adamw",
            threads=2, out=str(root / "det"))))
    finally:
        mp.undo()
    return ckpt


def _one_line_error(res, *words):
    assert res.code == 2, (res.code, res.out, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    for w in words:
        assert w in lines[0], lines[0]


def test_checkpoint_manifest_says_detections(trained):
    from fcbench.artifact import load_manifest
    from fcbench.training.checkpoint import load_checkpoint

    m = load_manifest(trained)
    assert m.output_kind == "detections" and m.output_size == 2
    det = m.extra["detection"]
    assert det["class_names"] == ["red", "blue"] and det["num_classes"] == 2
    assert det["raw_shape"] == [126, 7] and det["anchors"]["input_size"] == [64, 64]
    assert m.lineage[-1].technique == "multibox"
    model = load_checkpoint(trained).build_model()
    assert model.class_names == ["red", "blue"]


def test_eval_checkpoint_reports_map_rows(trained, rects, cli, in_tmp):
    res = cli("eval", trained, "--data", "rects", "--data-opt", "n=16", "--data-opt", "seed=1", "--store", "s.sqlite",
              "--format", "json")
    assert res.code == 0, res.err
    from fcbench.results.store import Store

    with Store("s.sqlite") as s:
        rows = {r["metric"]: r for r in s.query()}
    assert set(rows) == {"map50", "map", "precision50", "recall50", "ap50/red", "ap50/blue"}
    assert {r["protocol"] for r in rows.values()} == {"detection"}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows.values())


def test_convert_parity_eval_and_bench_through_runtimes(trained, rects, cli, in_tmp):
    """onnx and openvino (and tflite where installed) pass parity on the raw tensor, carry the decode config,
    evaluate to the checkpoint's mAP through their runtime, and bench."""
    out = in_tmp / "conv"
    res = cli("convert", trained, "--to", "onnx,openvino,tflite", "--out", out, "--format", "json")
    assert res.code == 0, res.err
    outcomes = json.loads(res.out)
    outcomes = outcomes.get("outcomes", outcomes) if isinstance(outcomes, dict) else outcomes
    files = {fmt: converted_file(outcomes, fmt) for fmt in ("onnx", "openvino")}
    from fcbench.artifact import load_manifest

    for f in files.values():
        m = load_manifest(f)
        assert m.output_kind == "detections" and m.extra["parity"]["ok"] is True
        assert m.extra["detection"]["class_names"] == ["red", "blue"]
    data = ["--data", "rects", "--data-opt", "n=16"]
    ref = cli("eval", trained, *data, "--format", "json")
    assert ref.code == 0, ref.err
    via = cli("eval", files["onnx"], *data, "--format", "json")
    assert via.code == 0, via.err

    want, got = json.loads(ref.out)["metrics"], json.loads(via.out)
    assert set(got["metrics"]) == {"map50", "map", "precision50", "recall50", "ap50/red", "ap50/blue"}
    assert got["backend"] == "onnxruntime:cpu" and got["protocol"] == "detection"
    for k in ("map50", "map", "recall50"):
        assert got["metrics"][k] == pytest.approx(want[k], abs=1e-3)
        assert got["pytorch"][k] == pytest.approx(want[k])  # the float parent, run beside it
    import numpy as np
    from PIL import Image

    images = in_tmp / "frames"
    images.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    bench = cli("bench", files["onnx"], "--backend", "onnxruntime:cpu", "--runs", "3", "--min-seconds", "0",
                "--pipeline", "--images", images, "--format", "json")
    assert bench.code == 0, bench.err
    (cell,) = json.loads(bench.out)
    assert cell["status"] == "ok" and cell["app_postprocess_ms"] > 0  # box decoding + NMS, timed as a stage


def test_tflite_converts_with_parity(trained, cli, in_tmp, monkeypatch):
    res = cli("convert", trained, "--to", "tflite", "--out", in_tmp, "--format", "json")
    assert res.code == 0, res.err
    outcomes = json.loads(res.out)
    outcomes = outcomes.get("outcomes", outcomes) if isinstance(outcomes, dict) else outcomes
    from fcbench.artifact import load_manifest

    file = converted_file(outcomes, "tflite")
    m = load_manifest(file)
    assert m.output_kind == "detections" and m.extra["parity"]["ok"] is True
    register(monkeypatch)
    via = cli("eval", file, "--data", "rects", "--data-opt", "n=16", "--format", "json")
    assert via.code == 0, via.err
    got = json.loads(via.out)
    assert got["metrics"]["map50"] == pytest.approx(got["pytorch"]["map50"], abs=1e-3)


def test_train_and_eval_on_synthetic_video(cli, in_tmp):
    """The built-in synthetic video (faces, squares, discs) trains the detector and evaluates per class
    through the CLI; the checkpoint keeps the video's class names."""
    res = cli("train", "--model", "ssd-mobilenetv2", "-o", "width=0.25", "-o", "input_size=64", "-o", "num_classes=3",
              "--data", "synthetic:video", "--data-opt", "videos=1", "--epochs", "1", "--batch-size", "16",
              "--lr", "0.005", "--optimizer", "adamw", "--threads", "2", "--out", "vid", "--store", "s.sqlite")
    assert res.code == 0, res.err
    from fcbench.artifact import load_manifest

    assert load_manifest(in_tmp / "vid" / "model.pt").extra["detection"]["class_names"] == ["face", "square", "disc"]
    res = cli("eval", "vid/model.pt", "--data", "synthetic:video", "--data-opt", "split=test", "--data-opt", "videos=1",
              "--format", "json")
    assert res.code == 0, res.err
    got = json.loads(res.out)
    assert got["protocol"] == "detection"
    assert {"ap50/face", "ap50/square", "ap50/disc", "map50", "map"} <= set(got["metrics"])


def test_train_bad_input_is_one_line(rects, cli, in_tmp):
    _one_line_error(cli("train", *TINY, "--data", "rects", "--head", "cosface", "--out", "a"), "--head", "detector")
    _one_line_error(cli("train", *TINY, "--data", "synthetic:classes", "--out", "b"), "has no boxes")
    _one_line_error(cli("train", "--model", "ssd-mobilenetv2", "-o", "width=0.25", "-o", "input_size=64",
                        "--data", "rects", "--out", "c"), "num_classes=2")
    assert not any((in_tmp / d).exists() and any((in_tmp / d).iterdir()) for d in "abc")


def test_eval_bad_input_is_one_line(trained, rects, cli, in_tmp):
    _one_line_error(cli("eval", trained, "--data", "synthetic:classes"), "needs images with boxes")
    _one_line_error(cli("eval", trained, "--data", "rects", "--protocol", "classification"), "detector")
    _one_line_error(cli("eval", trained, "--data", "rects", "--flip"), "drop --flip")
    _one_line_error(cli("train", "--model", "mobilenet_v2", "-o", "width=0.25", "-o", "num_classes=2", "-o",
                        "input_size=32", "--data", "rects", "--batch-size", "16", "--out", "cls"), "for a detector")


@pytest.mark.slow
def test_training_beats_untrained_map(rects, cli, in_tmp):
    """Done-when: a tiny detector trained through the CLI (3 epochs of 2048 rects images at 64x64, about
    400 AdamW steps, about a minute on 2 free cores) detects held-out images far better than its
    untrained init. Measured: untrained mAP@0.5 0.003, trained ~0.6. On synthetic:video the same budget
    (3 epochs of 2048 frames at 64x64, from 8 or 16 videos: more videos make its frames much slower to draw)
    reaches only 0.02-0.07 on the test split's unseen videos (0.0001 untrained): too few distinct scenes to
    generalise, so this test uses the rects data (fresh scenes in every image)."""
    res = cli("train", *TINY, "--data", "rects", "--data-opt", "n=2048", "--epochs", "3", "--batch-size", "16",
              "--lr", "0.005", "--optimizer", "adamw", "--weight-decay", "0", "--threads", "2", "--out", "det")
    assert res.code == 0, res.err
    scores = {}
    for name in ("init", "model"):
        r = cli("eval", f"det/{name}.pt", "--data", "rects", "--data-opt", "n=128", "--data-opt", "seed=1",
                "--format", "json")
        assert r.code == 0, r.err
        scores[name] = json.loads(r.out)["metrics"]
    assert scores["init"]["map50"] < 0.05, scores
    assert scores["model"]["map50"] > 0.3, scores
    assert scores["model"]["recall50"] > scores["init"]["recall50"]
