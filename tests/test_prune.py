"""fcbench prune: channel (Torch-Pruning's dependency graph) and l1-unstructured, through the CLI and the API.

Two tiny models are trained once (r18 and mbf at 32x32); each pruned checkpoint is loaded by itself,
converted to ONNX, benched on ort-cpu and evaluated against its float parent with the real verbs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY_DATA as DATA
from conftest import TINY_MBF as MBF
from conftest import TINY_R18 as R18
from conftest import train_tiny

import fcbench
from fcbench.artifact import read_manifest
from fcbench.training.checkpoint import load_checkpoint
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=100", "--threads", "1"]



@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("torch_pruning")
    root = tmp_path_factory.mktemp("prune")
    return {"r18": train_tiny(root, R18), "mbf": train_tiny(root, MBF)}


def _convs(model: torch.nn.Module) -> dict[str, torch.nn.Conv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def test_channel_round_to_then_load_convert_bench_eval(models, cli, tmp_path):
    base = models["r18"]
    out, store = tmp_path / "r18-pruned.pt", tmp_path / "s.sqlite"
    r = cli("prune", base, "--method", "channel", "--ratio", "0.5", "--round-to", "8", "--out", out,
            "--store", store, "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["output"] == str(out) and res["options"]["round_to"] == 8 and res["options"]["importance"] == "l2"
    assert res["params_after"] < 0.7 * res["params_before"] and res["macs_after"] < 0.8 * res["macs_before"]
    assert res["params_ratio"] == pytest.approx(res["params_after"] / res["params_before"])
    assert res["lineage"] == "train(arcface) > prune(channel)"

    dense = load_checkpoint(base).build_model()
    pruned = load_checkpoint(out).build_model()  # by itself, from the checkpoint's recorded structure
    before, after = _convs(dense), _convs(pruned)
    changed = [n for n in after if after[n].out_channels != before[n].out_channels]
    assert changed and all(after[n].out_channels % 8 == 0 for n in changed), \
        {n: after[n].out_channels for n in changed}
    assert pruned.fc.out_features == dense.fc.out_features == pruned.output_size  # the embedding is kept
    assert pruned.features.num_features == dense.features.num_features
    with torch.no_grad():
        assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, dense.output_size)
    m = read_manifest(out)
    assert m.params == res["params_after"] and m.macs == res["macs_after"]
    assert (m.lineage[-1].verb, m.lineage[-1].technique) == ("prune", "channel")

    with fcbench.Store(store) as s:
        (row,) = s.query(kind="compress")
    assert row["lineage"] == "train(arcface) > prune(channel)" and row["value"] == res["params_after"]

    r = cli("eval", out, "--max-drop", "100", *PAIRS, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert set(report["pytorch"]) >= {"accuracy"} and "accuracy" in report["delta"]  # against model.pt

    pytest.importorskip("onnxruntime")
    r = cli("convert", out, "--to", "onnx", "--out", tmp_path / "onnx", "--format", "json")
    assert r.code == 0, r.err
    (outcome,) = json.loads(r.out)
    assert outcome["status"] == "ok" and outcome["parity"]["ok"] is True, outcome
    r = cli("bench", outcome["file"], "--backend", "ort-cpu", "--runs", "3", "--min-seconds", "0", "--warmup", "1",
            "--threads", "1", "--store", store, "--format", "json")
    assert r.code == 0, r.err
    (cell,) = json.loads(r.out)
    assert cell["status"] == "ok", cell


def test_channel_api_mbf_bn_scale_default_out(models):
    base = models["mbf"]
    res = fcbench.prune(checkpoint=str(base), method="channel", ratio=0.5, importance="bn-scale", threads=1)
    assert Path(res) == base.with_name("model-pruned.pt") and res.output.exists()
    assert res.technique.params_after < 0.6 * res.technique.params_before
    assert res.macs_after < 0.5 * res.macs_before and res.macs_ratio == res.macs_after / res.macs_before
    dense, pruned = load_checkpoint(base).build_model(), load_checkpoint(res.output).build_model()
    assert sum(m.out_channels for m in _convs(pruned).values()) < sum(m.out_channels for m in _convs(dense).values())
    assert pruned.output_size == dense.output_size
    with torch.no_grad():
        assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, dense.output_size)
    assert read_manifest(res.output).lineage_summary().endswith("prune(channel)")
    (row,) = res.to_rows()
    assert row.kind == "compress" and row.extra["macs_after"] == res.macs_after


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_l1_unstructured_sparsity(models, cli, tmp_path, scope):
    from fcbench.pruning import prunable_weights

    out = tmp_path / "sparse.pt"
    r = cli("prune", models["mbf"], "--method", "l1-unstructured", "--ratio", "0.3", "--scope", scope,
            "--out", out, "--threads", "1")
    assert r.code == 0, r.err
    assert "unstructured sparsity: dense runtimes keep size and speed" in r.out and "weight sparsity" in r.out
    model = load_checkpoint(out).build_model()
    weights = [w for _, w in prunable_weights(model)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - 0.3) < 0.01
    if scope == "layer":
        assert all(abs(float((w == 0).float().mean()) - 0.3) < 0.05 for w in weights if w.numel() >= 100)
    dense = load_checkpoint(models["mbf"]).build_model()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in dense.parameters())
    res = fcbench.prune(checkpoint=str(models["mbf"]), method="l1-unstructured", ratio=0.3, scope=scope,
                        out=str(tmp_path / "api.pt"), threads=1)
    assert abs(res.sparsity - 0.3) < 0.01 and res.macs_after == res.macs_before and res.note
    assert read_manifest(res.output).lineage[-1].technique == "l1-unstructured"


@pytest.mark.parametrize("args, message", [
    (["--ratio", "0"], "--ratio must be in (0, 1), got 0.0"),
    (["--ratio", "1.5"], "--ratio must be in (0, 1), got 1.5"),
    (["--ratio=-1"], "--ratio must be in (0, 1), got -1.0"),
    (["--method", "chanel"], "did you mean 'channel'"),
    (["--importance", "l3"], "--importance must be one of l1, l2, bn-scale"),
    (["--round-to", "0"], "--round-to must be >= 1"),
    (["--method", "l1-unstructured", "--round-to", "8"], "--round-to is for --method channel"),
    (["--round-to", "4096"], "has no prunable channels"),
])
def test_bad_input_exit_2_nothing_written(models, cli, tmp_path, args, message):
    out = tmp_path / "out.pt"
    r = cli("prune", models["r18"], *args, "--out", out)
    assert r.code == 2 and message in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not out.exists()


def test_missing_checkpoint(cli, tmp_path):
    r = cli("prune", tmp_path / "nope.pt", "--ratio", "0.5", "--out", tmp_path / "o.pt")
    assert r.code == 2 and "nope.pt does not exist" in r.err
    assert not (tmp_path / "o.pt").exists()
    with pytest.raises(fcbench.FcbenchError, match="ratio must be in"):
        fcbench.prune(checkpoint=str(tmp_path / "nope.pt"), ratio=1.0)


def test_another_prune_technique_plugin_is_a_method(models, cli, tmp_path, monkeypatch):
    """A third party's technique whose verb is prune is a --method; one of another verb is not."""
    from dataclasses import dataclass

    from fcbench import plugins
    from fcbench.techniques.base import Technique

    class HalveFc(Technique):
        verb = "prune"

        @dataclass
        class Options:
            ratio: float = 0.5

        def apply(self, checkpoint, options, context):
            model = checkpoint.build_model()
            with torch.no_grad():
                model.fc.weight[: int(model.fc.out_features * options.ratio)] = 0
            return checkpoint.with_model(model)

    class Other(HalveFc):
        verb = "compress"

    class EntryPoint:
        def __init__(self, obj):
            self.obj, self.value = obj, f"tests:{obj.__name__}"

        def load(self):
            return self.obj

    original = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points", lambda kind: {
        **original(kind), **({"test-halve-fc": EntryPoint(HalveFc), "test-other": EntryPoint(Other)}
                             if kind == "technique" else {})})
    out = tmp_path / "halved.pt"
    r = cli("prune", models["r18"], "--method", "test-halve-fc", "--ratio", "0.25", "--out", out, "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["lineage"] == "train(arcface) > prune(test-halve-fc)"
    fc = load_checkpoint(out).build_model().fc.weight
    assert bool((fc[: fc.shape[0] // 4] == 0).all()) and not bool((fc[fc.shape[0] // 4:] == 0).all())
    r = cli("prune", models["r18"], "--method", "test-other", "--out", tmp_path / "o.pt")
    assert r.code == 2 and "--method must be one of channel, l1-unstructured, test-halve-fc" in r.err, r.err
    assert not (tmp_path / "o.pt").exists()


def test_pruned_checkpoint_fine_tunes_with_train_weights(models, tmp_path):
    """train --weights (and so distill --student) takes a pruned checkpoint: its shapes come with it."""
    pruned = fcbench.prune(checkpoint=str(models["r18"]), method="channel", ratio=0.5, out=str(tmp_path / "p.pt"),
                           threads=1)
    run = Path(train(TrainConfig(**R18, **DATA, weights=str(pruned.output), epochs=1, batch_size=16, lr=0.01,
                                 threads=1, out=str(tmp_path / "ft"))))
    tuned = load_checkpoint(run).build_model()
    assert sum(p.numel() for p in tuned.parameters()) == pruned.technique.params_after
    want = load_checkpoint(pruned.output).build_model().layer2[0].conv1.out_channels
    assert tuned.layer2[0].conv1.out_channels == want < 16


FACES = ["--data", "synthetic:faces", "--data-opt", "num_classes=8", "--data-opt", "samples_per_class=8"]


def test_taylor_ranks_by_the_training_loss_gradients(models, cli, tmp_path):
    """--importance taylor takes the gradients of the checkpoint's ArcFace loss on --data: another choice of
    channels than l2's, the same widths; the batches and the importance are in the lineage."""
    out = tmp_path / "taylor.pt"
    r = cli("prune", models["r18"], "--importance", "taylor", *FACES, "--batches", "2", "--out", out,
            "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["options"]["importance"] == "taylor" and res["options"]["batches"] == 2
    l2 = fcbench.prune(checkpoint=str(models["r18"]), ratio=0.5, out=str(tmp_path / "l2.pt"), threads=1)
    assert res["params_after"] == l2.technique.params_after  # same widths per layer
    a, b = load_checkpoint(out).state_dict, load_checkpoint(l2.output).state_dict
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].shape == b[k].shape and a[k].dtype.is_floating_point)
    step = read_manifest(out).lineage[-1]
    assert step.options["importance"] == "taylor" and step.options["batches"] == 2
    assert load_checkpoint(out).head is not None  # the head stays with the pruned checkpoint


def test_taylor_bad_input(models, cli, tmp_path):
    from fcbench.training.checkpoint import save_checkpoint

    out = tmp_path / "o.pt"
    r = cli("prune", models["r18"], "--importance", "taylor", "--out", out)
    assert r.code == 2 and "taylor" in r.err and "needs --data" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    bare = tmp_path / "bare.pt"  # the backbone alone: no ArcFace head to take the loss of
    save_checkpoint(bare, load_checkpoint(models["r18"]).build_model())
    r = cli("prune", bare, "--importance", "taylor", *FACES, "--out", out)
    assert r.code == 2 and "holds no training head" in r.err and "--importance l2" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    r = cli("prune", models["r18"], "--importance", "taylor", "--data", "synthetic:pairs", "--out", out)
    assert r.code == 2 and "has no class labels" in r.err, r.err
    r = cli("prune", models["r18"], "--batches", "2", "--out", out)
    assert r.code == 2 and "--batches is for --importance taylor" in r.err, r.err
    assert not out.exists()


def test_iterative_prune_finetune(models, cli, tmp_path, monkeypatch):
    """--iterative 2 --finetune-epochs 1: two rounds, each fine-tuned by the train loop; the widths are one-shot's,
    the weights are not; the lineage's last step is prune(channel) naming the dense input, so eval --max-drop
    compares with it; the rounds' checkpoints are gone."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    base, out, store = models["r18"], tmp_path / "it" / "iter.pt", tmp_path / "s.sqlite"
    out.parent.mkdir()
    r = cli("prune", base, "--iterative", "2", "--finetune-epochs", "1", *FACES, "--batch-size", "16", "--lr", "0.01",
            "--out", out, "--store", store, "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    one = fcbench.prune(checkpoint=str(base), ratio=0.5, out=str(tmp_path / "one.pt"), threads=1)
    assert res["params_after"] == one.technique.params_after and res["macs_after"] == one.macs_after
    a, b = load_checkpoint(out).state_dict, load_checkpoint(one.output).state_dict
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])  # fine-tuned
    assert [f["round"] for f in res["finetune"]] == [1, 2] and all(len(f["loss"]) == 1 for f in res["finetune"])
    m = read_manifest(out)
    step = m.lineage[-1]
    assert (step.verb, step.technique) == ("prune", "channel")
    assert m.lineage_summary() == "train(arcface) > prune(channel)"
    assert step.options["iterative"] == 2 and step.options["finetune_epochs"] == 1 and step.options["lr"] == 0.01
    assert (out.parent / step.options["parent_file"]).resolve() == base.resolve()
    assert sorted(p.name for p in out.parent.iterdir()) == ["iter.pt", "iter.pt.manifest.json"]
    assert list(scratch.iterdir()) == []  # the rounds' folder is removed
    with fcbench.Store(store) as s:
        (row,) = s.query(kind="compress")
    assert [f["round"] for f in row["extra"]["finetune"]] == [1, 2]
    r = cli("eval", out, "--max-drop", "100", *PAIRS, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    assert "accuracy" in json.loads(r.out)["delta"]  # against the dense model.pt


def _cosine_to(dense: Path, pruned: Path) -> float:
    """Mean cosine of the pruned model's embeddings to the dense model's on the fine-tuning images."""
    from fcbench.data import open_dataset

    teacher = load_checkpoint(dense).build_model().eval()
    ds = open_dataset("synthetic:faces", preprocessing=teacher.preprocessing, num_classes=8, samples_per_class=8)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        student = load_checkpoint(pruned).build_model().eval()
        return float(torch.nn.functional.cosine_similarity(student(x), teacher(x)).mean())


def test_finetune_distilled_from_the_unpruned_model(models, cli, tmp_path):
    """--finetune-distill embedding-mse: fine-tuning adds the distillation term with the dense input as the frozen
    teacher, so the pruned model ends nearer the dense one's embeddings than plain fine-tuning leaves it; the
    method and its options are in the lineage. Bad combinations are one line, exit 2."""
    base, store = models["r18"], tmp_path / "s.sqlite"
    common = ["--finetune-epochs", "1", *FACES, "--batch-size", "16", "--threads", "1", "--store", store]
    r = cli("prune", base, *common, "--finetune-distill", "embedding-mse", "--finetune-distill-opt", "weight=10000",
            "--out", tmp_path / "kd.pt", "--format", "json")
    assert r.code == 0, r.err
    r = cli("prune", base, *common, "--out", tmp_path / "plain.pt")
    assert r.code == 0, r.err
    step = read_manifest(tmp_path / "kd.pt").lineage[-1]
    assert step.options["finetune_distill"] == "embedding-mse"
    assert step.options["finetune_distill_options"] == {"weight": 10000}
    assert read_manifest(tmp_path / "plain.pt").lineage[-1].options["finetune_distill"] == ""
    assert _cosine_to(base, tmp_path / "kd.pt") > _cosine_to(base, tmp_path / "plain.pt")
    out = tmp_path / "bad.pt"
    for args, message in [(["--finetune-distill", "embedding-mze", "--finetune-epochs", "1", *FACES],
                           "did you mean 'embedding-mse'"),
                          (["--finetune-distill", "embedding-mse", *FACES], "give --finetune-epochs too"),
                          (["--finetune-distill-opt", "weight=3", "--finetune-epochs", "1", *FACES],
                           "name the method too"),
                          (["--finetune-distill", "kd", "--finetune-epochs", "1", *FACES], "distils classifiers")]:
        r = cli("prune", base, *args, "--out", out)
        assert r.code == 2 and message in r.err and len(r.err.strip().splitlines()) == 1, (args, r.err)
    assert not out.exists()


def test_iterative_failure_leaves_nothing(models, cli, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "o" / "iter.pt"
    out.parent.mkdir()
    r = cli("prune", models["r18"], "--iterative", "2", "--finetune-epochs", "1", *FACES, "--batch-size", "16",
            "--lr", "1e30", "--out", out, "--threads", "1")
    assert r.code == 1 and "loss became" in r.err, r.err
    assert list(out.parent.iterdir()) == [] and list(scratch.iterdir()) == []
    for args, message in [(["--finetune-epochs", "1"], "--finetune-epochs needs --data"),
                          (["--method", "l1-unstructured", "--iterative", "2"], "--iterative is for --method channel")]:
        r = cli("prune", models["r18"], *args, "--out", out)
        assert r.code == 2 and message in r.err, r.err
    assert not out.exists()


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_bench_before_and_after(models, cli, tmp_path, backend):
    """--bench converts the dense and the pruned model to the backend's format and times both in turn in one
    worker: p50s and the A/B ratio with its interval in the JSON, the table and the compress row; the converted
    files are gone."""
    import importlib.util

    runtime = {"ort-cpu": "onnxruntime", "openvino": "openvino"}[backend]
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    out, store = tmp_path / "b" / "p.pt", tmp_path / "s.sqlite"
    out.parent.mkdir()
    r = cli("prune", models["r18"], "--bench", backend, "--out", out, "--store", store, "--threads", "1",
            "--format", "json")
    assert r.code == 0, r.err
    b = json.loads(r.out)["bench"]
    assert b["format"] == {"ort-cpu": "onnx", "openvino": "openvino"}[backend]
    assert b["p50_ms_before"] > 0 and b["p50_ms_after"] > 0
    lo, hi = b["latency_ratio_ci"]
    assert lo <= b["latency_ratio"] <= hi and b["rounds"] >= 12, b
    assert b["latency_ratio"] == pytest.approx(b["p50_ms_after"] / b["p50_ms_before"], rel=0.5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.pt", "p.pt.manifest.json"]
    with fcbench.Store(store) as s:
        (row,) = s.query(kind="compress")
    assert row["extra"]["bench"]["p50_ms_after"] == b["p50_ms_after"]
    if backend == "ort-cpu":
        r = cli("prune", models["r18"], "--bench", backend, "--out", tmp_path / "t.pt", "--threads", "1")
        assert r.code == 0, r.err
        assert "p50 ms, ort-cpu (onnx)" in r.out and re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", r.out), r.out


def test_bench_says_why_unstructured_pruning_is_not_faster(models, cli, tmp_path):
    """l1-unstructured keeps every channel: the dense ONNX file is no faster, and the result says why from what
    fcbench reads (the lineage's pruning method), in the JSON, the compress row and the table."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    out, store = tmp_path / "u.pt", tmp_path / "s.sqlite"
    r = cli("prune", models["r18"], "--method", "l1-unstructured", "--ratio", "0.5", "--bench", "ort-cpu",
            "--out", out, "--store", store, "--threads", "1", "--format", "json")
    assert r.code == 0, r.err
    b = json.loads(r.out)["bench"]
    if b["latency_ratio"] < 0.95:  # timing noise made the same work look faster: then nothing is explained
        assert b["why_not_faster"] == []
    else:
        assert any("l1-unstructured" in w and "dense" in w for w in b["why_not_faster"]), b
    with fcbench.Store(store) as s:
        (row,) = s.query(kind="compress")
    assert row["extra"]["bench"]["why_not_faster"] == b["why_not_faster"]
    r = cli("prune", models["r18"], "--method", "l1-unstructured", "--ratio", "0.5", "--bench", "ort-cpu",
            "--out", tmp_path / "v.pt", "--threads", "1")
    assert r.code == 0, r.err
    assert "p50 ms, ort-cpu (onnx)" in r.out
    assert ("not faster on ort-cpu: l1-unstructured" in r.out) == (
        "not faster" in r.out), r.out  # any explanation shown names the method first


def test_bench_backend_absent(models, cli, tmp_path):
    out = tmp_path / "o.pt"
    r = cli("prune", models["r18"], "--bench", "onnxruntime:nnapi", "--out", out)
    assert r.code == 2 and "--bench onnxruntime:nnapi cannot run here" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    r = cli("prune", models["r18"], "--bench", "onnxruntme", "--out", out)
    assert r.code == 2 and "did you mean" in r.err, r.err
    assert not out.exists()
