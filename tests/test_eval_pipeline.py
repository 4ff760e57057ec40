"""``fcbench eval --pipeline DET,EMB --gallery DIR --probe VIDEO``: detect -> embed -> identify, through the CLI and
the Python API, eager and through two runtimes (the detector's split pair on ONNX Runtime, the embedder on
OpenVINO), the rows it stores, and bad input as one line.

The models are tiny and untrained (ssd-mobilenetv2 width 0.25 and mbf width 0.25 at 64 x 64): training even a
tiny detector takes minutes here. Untrained, the detector's boxes are where its anchors score highest, so the
runs keep every detection (``--min-score 0``) and compare what was found, frame by frame, and the metrics
between eager PyTorch and the runtimes; a hand-made oracle detector (the ground truth's own boxes) checks that
faces found become mated and distractor probes and that the metrics are those of the score matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest

PROBE = ["--probe", "synthetic:video", "--data-opt", "videos=1", "--data-opt", "frames=3", "--data-opt", "height=64",
         "--data-opt", "width=64", "--data-opt", "identities=20", "--data-opt", "seed=2", "--min-score", "0",
         "--threads", "1"]
PROBE_OPTS = {"videos": 1, "frames": 3, "height": 64, "width": 64, "identities": 20, "seed": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """det.pt (3 classes, face first; class weights of some size so scores differ, box offsets zero so its boxes
    are its anchors: in this probe video they cover every face at IoU >= 0.5), emb.pt, a 20-identity gallery of
    the video's seed with 500 distractor photos, the detector split at layer 6 on ONNX, the embedder on OpenVINO."""
    import torch

    from fcbench.conversion import convert, exporter_class
    from fcbench.models import create
    from fcbench.pipeline_eval import write_synthetic_gallery
    from fcbench.training.checkpoint import save_checkpoint

    out = tmp_path_factory.mktemp("pipe")
    torch.manual_seed(0)
    det = create("ssd-mobilenetv2", width=0.25, input_size=64, num_classes=3)
    det.class_names = ["face", "square", "disc"]
    with torch.no_grad():
        for h in det.cls_heads:
            torch.nn.init.normal_(h[1].weight, 0.0, 1.0)
        for h in det.box_heads:
            h[1].weight.zero_()
            h[1].bias.zero_()
    save_checkpoint(out / "det.pt", det.eval())
    save_checkpoint(out / "emb.pt", create("mbf", width=0.25, input_size=64, embedding_size=32).eval())
    write_synthetic_gallery(out / "gallery", enrolled=20, distractors=500, seed=2)
    paths = {"det": out / "det.pt", "emb": out / "emb.pt", "gallery": out / "gallery", "root": out}
    for fmt in ("onnx", "openvino"):
        if not exporter_class(fmt).available()[0]:
            return paths
    outcomes = convert(out / "det.pt", ["onnx"], out / "c", split_at=6)
    outcomes += convert(out / "emb.pt", ["openvino"], out / "c")
    assert [o.status for o in outcomes] == ["ok"] * 3, [o.reason for o in outcomes]
    paths.update(front=out / "c" / "det.front.onnx", xml=out / "c" / "emb.xml")
    return paths


def _json(res) -> dict:
    assert res.code == 0, res.err
    return json.loads(res.out)


def _one_line(res, *words) -> None:
    assert res.code == 2, (res.code, res.out, res.err)
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    for w in words:
        assert w in lines[0], lines[0]


def test_two_runtimes_match_eager_and_rows_are_stored(models, cli, in_tmp) -> None:
    """The detect -> embed -> identify pipeline through two runtimes: ONNX Runtime (detector) + OpenVINO (embedder)
    at f32: the profile openvino-f32, since OpenVINO's default on a CPU with AMX is bf16, which moves the
    similarities by more than these tolerances."""
    if "front" not in models:
        pytest.skip("the onnx or openvino exporter is not installed")
    m = models
    eager = _json(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", "--gallery", m["gallery"], *PROBE,
                      "--format", "json"))
    rt = _json(cli("eval", "--pipeline", f"{m['front']},{m['xml']}", "--backend", "onnxruntime:cpu,openvino-f32",
                   "--gallery", m["gallery"], *PROBE, "--store", "s.sqlite", "--format", "json"))
    assert (rt["detector"]["backend"], rt["embedder"]["backend"]) == ("onnxruntime:cpu", "openvino-f32")
    assert eager["detector"]["backend"] == eager["embedder"]["backend"] == "pytorch:eager"
    assert rt["frames"] == eager["frames"] == 3 and rt["faces"] == eager["faces"] > 0
    for key in ("probes", "mated", "distractors", "identities", "distractor_photos"):
        assert rt[key] == eager[key], key
    assert eager["distractor_photos"] == 500 and eager["identities"] == 20 and eager["mated"] > 0
    # enough distractors and comparisons here: both metrics are figures, and the runtimes' agree with eager
    assert set(eager["metrics"]) == set(rt["metrics"]) >= {"dir@fpir=1e-01", "fnmr@fmr=1e-04"}
    assert not eager["unavailable"] and not rt["unavailable"]
    for k, v in eager["metrics"].items():
        assert rt["metrics"][k] == pytest.approx(v, abs=5e-3), k
    for a, b in zip(eager["similarities"], rt["similarities"], strict=True):  # each frame's faces, best match
        np.testing.assert_allclose(a, b, atol=2e-3)
    assert set(rt["ms_per_stage"]) == {"preprocess", "front", "back", "decode", "align", "embed", "match"}
    assert rt["ms_per_stage"]["embed"] > 0 and rt["ms_per_frame"] == pytest.approx(sum(rt["ms_per_stage"].values()))
    from fcbench.results.store import Store

    with Store("s.sqlite") as s:
        rows = s.query()
    quality = {r["metric"]: r for r in rows if r["kind"] == "quality"}
    speed = {r["metric"]: r for r in rows if r["kind"] == "speed"}
    assert {r["protocol"] for r in rows} == {"identification+pipeline"}
    assert quality["dir@fpir=1e-01"]["value"] == rt["metrics"]["dir@fpir=1e-01"]
    extra = quality["fnmr@fmr=1e-04"]["extra"]
    assert extra["backends"] == {"detector": "onnxruntime:cpu", "embedder": "openvino-f32"}
    assert (extra["gallery_identities"], extra["distractor_photos"], extra["probes"]) == (20, 500, rt["probes"])
    assert set(speed) == {"ms_per_frame", "ms_preprocess", "ms_front", "ms_back", "ms_decode", "ms_align",
                          "ms_embed", "ms_match"}
    assert all(len(r["samples_ms"]) == 3 for r in speed.values())
    assert speed["ms_per_frame"]["backend"] == "onnxruntime+openvino"
    table = cli("eval", "--pipeline", f"{m['front']},{m['xml']}", "--backend", "onnxruntime:cpu,openvino-f32",
                "--gallery", m["gallery"], *PROBE)
    assert table.code == 0 and "onnxruntime:cpu + openvino-f32" in table.out and "embed" in table.out


def test_backend_all_runs_every_combination_that_can(models, cli, in_tmp) -> None:
    """``--backend all,openvino:CPU``: the detector on every installed runtime that runs its ONNX pair, the
    embedder on OpenVINO; one line and one set of rows per combination, the same faces found in each."""
    if "front" not in models:
        pytest.skip("the onnx or openvino exporter is not installed")
    from fcbench.pipeline_eval import stage_backends

    m = models
    expected = stage_backends(str(m["front"]), "all")
    assert "onnxruntime:cpu" in expected and "openvino:CPU" in expected and "tflite:xnnpack" not in expected
    got = _json(cli("eval", "--pipeline", f"{m['front']},{m['xml']}", "--backend", "all,openvino:CPU",
                    "--gallery", m["gallery"], *PROBE, "--data-opt", "frames=1", "--store", "b.sqlite",
                    "--format", "json"))
    combos = got["combinations"]
    ran = [c["detector"]["backend"] for c in combos] + [s["detector"] for s in got["skipped"]]
    assert sorted(ran) == sorted(expected) and all(c["embedder"]["backend"] == "openvino:CPU" for c in combos)
    assert len(combos) >= 2 and len({c["faces"] for c in combos}) == 1 and combos[0]["frames"] == 1
    from fcbench.results.store import Store

    with Store("b.sqlite") as s:
        per_frame = [r for r in s.query() if r["kind"] == "speed" and r["metric"] == "ms_per_frame"]
    assert sorted(r["extra"]["backends"]["detector"] for r in per_frame) == sorted(c["detector"]["backend"]
                                                                                  for c in combos)


def test_the_python_api_and_metrics_na_with_their_reason(models, in_tmp) -> None:
    import shutil

    import fcbench
    from fcbench.options import EvalConfig

    small = in_tmp / "small"
    shutil.copytree(models["gallery"], small, ignore=lambda d, names: [n for n in names if n.startswith("004")])
    result = fcbench.evaluate_pipeline(EvalConfig(pipeline=[str(models["det"]), str(models["emb"])],
                                                  gallery=str(small), probe="synthetic:video",
                                                  data_options=PROBE_OPTS, min_score=0.0, threads=1))
    assert isinstance(result, fcbench.PipelineEvalResult)
    # 400 distractor photos x 20 identities and the faces found: fewer than FMR 1e-4's 10,000 impostor comparisons
    assert "fnmr@fmr=1e-04" in result.unavailable and "needs at least 10000" in result.unavailable["fnmr@fmr=1e-04"]
    assert "dir@fpir=1e-01" in result.metrics and not any(r.metric.startswith("fnmr") for r in result.to_rows())
    assert len(result.matches()) == 3 and sum(map(len, result.matches())) == result.summary()["faces"]
    via_evaluate = fcbench.evaluate(pipeline=[str(models["det"]), str(models["emb"])], gallery=str(small),
                                    probe="synthetic:video", data_options=PROBE_OPTS, min_score=0.0, threads=1)
    assert via_evaluate.metrics == pytest.approx(result.metrics)
    # a folder of frames: no ground truth, so both metrics are n/a and only the timings are rows
    from PIL import Image

    from fcbench.pipeline_eval import open_probe

    video = open_probe("synthetic:video", PROBE_OPTS)
    (in_tmp / "frames").mkdir()
    for k, rgb in enumerate(video.frames()):
        Image.fromarray(rgb).save(in_tmp / "frames" / f"{k:03d}.png")
    frames = fcbench.evaluate_pipeline(EvalConfig(pipeline=[str(models["det"]), str(models["emb"])],
                                                  gallery=str(small), probe=str(in_tmp / "frames"), min_score=0.0,
                                                  threads=1))
    assert frames.figures.run.frames == 3 and not frames.metrics
    assert all("no ground-truth faces" in why for why in frames.unavailable.values()) and len(frames.unavailable) == 2
    assert {r.kind for r in frames.to_rows()} == {"speed"}
    for a, b in zip(frames.summary()["similarities"], result.summary()["similarities"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)  # the same frames (PNG is lossless), the same faces


def test_an_oracle_detector_turns_faces_into_mated_and_distractor_probes(models) -> None:
    """A hand-made detector that returns the probe's true face boxes: every true face becomes a probe, those of
    identities without a gallery folder are distractors, and DIR is the score matrix's."""
    import fcbench.metrics.identification as ident
    from fcbench.detection.pipeline import Detector
    from fcbench.pipeline_eval import identify_and_score, load_embedder, open_probe, read_gallery

    probe = open_probe("synthetic:video", PROBE_OPTS)
    photos = read_gallery(models["gallery"])
    photos.photos, photos.labels = photos.photos[:10], photos.labels[:10]  # identities 10-19 are no longer enrolled
    frame = {"i": -1}

    def front(x):
        frame["i"] += 1
        return x

    def decode(raw):
        b = probe.truth_boxes[frame["i"] % probe.count]
        return b, np.ones(len(b), np.float32), np.zeros(len(b), np.int64)

    det = Detector(front=front, back=lambda f: f, decode=decode, preprocess=lambda rgb: rgb.transpose(2, 0, 1))
    emb, stage = load_embedder(str(models["emb"]), None, 1)
    frame["i"] = -2  # the warm-up frame comes first
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as --threads 1 does (two threads on a shared 2-core machine crawl)
    try:
        fig = identify_and_score(det, emb, photos, probe, min_score=0.0)
    finally:
        torch.set_num_threads(threads)
    truth = [str(i) for ids in probe.truth_ids for i in ids]
    assert fig.run.frames == 3 and sum(map(len, fig.run.matches)) == len(truth) > 0
    enrolled = set(photos.labels)
    assert fig.mated == sum(t in enrolled for t in truth)
    assert fig.distractors == 500 + sum(t not in enrolled for t in truth)
    assert fig.probes == fig.mated + fig.distractors
    assert "dir@fpir=1e-01" in fig.metrics and 0.0 <= fig.metrics["dir@fpir=1e-01"] <= 1.0
    assert fig.metrics["fpir_achieved@fpir=1e-01"] <= 0.1
    from fcbench.detection.pipeline import probe_set

    found, who = probe_set(fig.run, probe.truth_boxes, probe.truth_ids)
    with torch.inference_mode():
        others = emb.embed(np.stack([emb.preprocess(im) for im in photos.distractors]))
        gallery = emb.embed(np.stack([emb.preprocess(im) for im in photos.photos]))
    scores = ident.similarity_matrix(np.concatenate([found, others]), gallery)
    want = ident.dir_at_fpir(scores, np.asarray(photos.labels), np.asarray([*map(str, who), *["-"] * 500]), 0.1)
    assert fig.metrics["dir@fpir=1e-01"] == pytest.approx(want.dir)
    assert fig.metrics["dir_threshold@fpir=1e-01"] == pytest.approx(want.threshold, abs=1e-6)


def test_bad_input_is_one_line(models, cli, in_tmp) -> None:
    m = models
    gal = ["--gallery", m["gallery"]]
    _one_line(cli("eval", "--pipeline", f"{m['emb']},{m['det']}", *gal, *PROBE), "not a detector", "DET,EMB")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['det']}", *gal, *PROBE), "not a face embedder")
    _one_line(cli("eval", "--pipeline", str(m["det"]), *gal, *PROBE), "two models")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", *PROBE), "--gallery")
    _one_line(cli("eval", "--gallery", m["gallery"], m["det"]), "add --pipeline")
    (in_tmp / "empty" / "alice").mkdir(parents=True)
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", "--gallery", "empty", *PROBE), "enrols nobody")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", "--gallery", "nowhere", *PROBE), "not a folder")
    (in_tmp / "bad" / "bob").mkdir(parents=True)
    (in_tmp / "bad" / "bob" / "0.png").write_bytes(b"not a png")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", "--gallery", "bad", *PROBE), "0.png")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", *gal, "--probe", "nothing.avi"), "nothing.avi")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", *gal, "--probe", "synthetic:classes"),
              "not a video")
    _one_line(cli("eval", "--pipeline", f"{m['det']},{m['emb']}", *gal, *PROBE, "--backend", "onnxruntime:cpu"),
              "checkpoint", "PyTorch")
    if "front" not in m:
        return
    _one_line(cli("eval", "--pipeline", f"{m['front']},{m['xml']}", *gal, *PROBE, "--backend",
                  "tflite:xnnpack,openvino:CPU"), "cannot run", "det.front.onnx")
    # an embedder whose input the crops cannot feed (its manifest says one channel)
    import shutil

    for name in ("emb.xml", "emb.bin", "emb.xml.manifest.json"):
        shutil.copy(m["xml"].parent / name, in_tmp / name)
    man = json.loads((in_tmp / "emb.xml.manifest.json").read_text())
    man["inputs"][0]["shape"][1] = 1
    (in_tmp / "emb.xml.manifest.json").write_text(json.dumps(man))
    _one_line(cli("eval", "--pipeline", f"{m['front']},{in_tmp / 'emb.xml'}", *gal, *PROBE),
              "face crops are 64x64 RGB")
