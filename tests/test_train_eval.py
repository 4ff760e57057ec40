"""train and eval through the CLI and the library, on tiny models and synthetic data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcbench.artifact import read_manifest
from fcbench.evaluation import EvalConfig, evaluate
from fcbench.results import Store
from fcbench.training.checkpoint import load_checkpoint
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

TINY = ["-o", "width=0.125", "-o", "layers=[1,1,1,1]", "-o", "input_size=[32,32]", "-o", "embedding_size=32"]
TINY_OPTS = {"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32], "embedding_size": 32}
FACES = {"num_classes": 8, "samples_per_class": 8}


def tiny_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(model="r18", model_options=dict(TINY_OPTS), head="arcface", head_options={"s": 16.0, "m": 0.2},
                data="synthetic:faces", data_options=dict(FACES), epochs=2, batch_size=16, lr=0.05,
                out=str(tmp_path / "run"), seed=1, threads=2)  # fixed: the result must not depend on
    # the torch thread count an earlier test in this process left behind
    base.update(kw)
    return TrainConfig(**base)


def test_train_cli_writes_checkpoints_manifest_and_rows(cli, in_tmp):
    r = cli("train", "--model", "r18", *TINY, "--data", "synthetic:faces", "--data-opt", "num_classes=8",
            "--data-opt", "samples_per_class=8", "--epochs", "2", "--batch-size", "16", "--lr", "0.05",
            "--milestones", "1", "--out", "run", "--store", "s.sqlite")
    assert r.code == 0, r.err
    assert r.out.strip().endswith("model.pt")
    for name in ("init.pt", "epoch-001.pt", "epoch-002.pt", "model.pt"):
        assert (in_tmp / "run" / name).exists(), name
    m = read_manifest(in_tmp / "run" / "model.pt")
    assert m.format == "fcbench-ckpt" and m.output_kind == "embedding" and m.output_size == 32
    assert m.preprocessing.size == (32, 32) and m.inputs[0].shape == [1, 3, 32, 32]
    assert m.params and m.flops == 2 * m.macs
    assert m.lineage[-1].verb == "train" and m.lineage[-1].technique == "arcface"
    assert m.lineage[-1].parent_sha256 == read_manifest(in_tmp / "run" / "init.pt").sha256
    with Store(in_tmp / "s.sqlite") as s:
        rows = s.query(kind="train")
    assert [r["extra"]["epoch"] for r in rows] == [1, 2]
    assert rows[1]["extra"]["lr"] == pytest.approx(0.005)  # x0.1 after milestone epoch 1
    ckpt = load_checkpoint(in_tmp / "run" / "model.pt")
    assert ckpt.head["name"] == "arcface" and ckpt.head["num_classes"] == 8


def test_resume_continues_exactly(tmp_path):
    straight = train(tiny_cfg(tmp_path / "a", epochs=3))
    train(tiny_cfg(tmp_path / "b", epochs=2))
    resumed = train(tiny_cfg(tmp_path / "b", epochs=3, resume="auto"))
    a, b = load_checkpoint(straight).state_dict, load_checkpoint(resumed).state_dict
    assert a and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_works_and_eval_measures_it(tmp_path):
    """Verification accuracy on unseen identities rises clearly after training; metrics are stored."""
    cfg = tiny_cfg(tmp_path, epochs=4, data_options={"num_classes": 16, "samples_per_class": 16},
                   model_options={**TINY_OPTS, "width": 0.25}, schedule="cosine")
    final = train(cfg)
    store = str(tmp_path / "s.sqlite")
    ev = dict(data="synthetic:pairs", data_options={"num_pairs": 200})
    before_report = evaluate(EvalConfig(checkpoint=str(tmp_path / "run" / "init.pt"), **ev))
    after_report = evaluate(EvalConfig(checkpoint=str(final), **ev))
    assert not Path(store).exists()  # the library stores nothing on its own: storing is the caller's step
    with Store(store) as s:
        s.add(before_report)
        s.add(after_report)
    before = dict(before_report.metrics)
    after = dict(after_report.metrics)
    assert after_report.protocol == "verification"
    assert {"accuracy", "accuracy_std", "eer", "auc"} <= set(after)
    # AUC rather than the best-threshold accuracy on 200 pairs, which rose 0.70 -> 0.74 on one CPU and more on others
    assert after["auc"] > before["auc"] + 0.05, (before, after)
    with Store(store) as s:
        rows = s.query(kind="quality", metric="accuracy")
    assert len(rows) == 2 and rows[1]["lineage"].startswith("train")


def test_eval_cli_identification_and_json(cli, tmp_path):
    final = train(tiny_cfg(tmp_path, epochs=1))
    r = cli("eval", final, "--data", "synthetic:faces", "--data-opt", "num_classes=8", "--data-opt",
            "samples_per_class=4", "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["protocol"] == "identification" and 0.0 <= out["metrics"]["rank1"] <= 1.0


def test_classification_train_and_eval(cli, tmp_path):
    opts = ["-o", "width=0.25", "-o", "num_classes=10", "-o", "cifar_stem=true", "-o", "layers=[1,1,1,1]"]
    r = cli("train", "--model", "resnet18", *opts, "--data", "synthetic:classes", "--data-opt",
            "samples_per_class=8", "--epochs", "1", "--batch-size", "16", "--out", tmp_path / "c",
            "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    r = cli("eval", tmp_path / "c" / "model.pt", "--data", "synthetic:classes", "--data-opt", "split=test",
            "--data-opt", "samples_per_class=4", "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    assert set(json.loads(r.out)["metrics"]) >= {"top1", "top5"}
    r = cli("eval", tmp_path / "c" / "model.pt", "--data", "synthetic:classes", "--data-opt", "split=test",
            "--data-opt", "samples_per_class=4", "--flip", "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "--flip" in r.err and "classifier" in r.err


def test_eval_flip_test_fuses_each_embedding_with_its_mirror(cli, tmp_path):
    """--flip: the figure is verification on emb(x) + emb(mirror(x)), L2-normalised (insightface's flip test),
    computed here by hand; rows record it in their protocol, so they never compare with plain figures."""
    import numpy as np

    from fcbench.data import open_dataset
    from fcbench.evaluation import load_for_eval
    from fcbench.metrics.verification import fuse_flip, verification_metrics

    final = train(tiny_cfg(tmp_path, epochs=1))
    data = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=100", "--nfolds", "5"]
    store = tmp_path / "s.sqlite"
    r = cli("eval", final, *data, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    plain = json.loads(r.out)
    r = cli("eval", final, *data, "--flip", "--store", store, "--format", "json")
    assert r.code == 0, r.err
    flip = json.loads(r.out)
    assert flip["flip"] is True and plain["flip"] is False
    model, _ = load_for_eval(EvalConfig(checkpoint=str(final)))
    ds = open_dataset("synthetic:pairs", preprocessing=model.preprocessing, num_pairs=100)
    x = torch.stack([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        fused = fuse_flip(model(x).numpy(), model(torch.flip(x, dims=[3])).numpy())
    want = dict(verification_metrics(fused[0::2], fused[1::2], np.asarray(ds.issame), nfolds=5).to_rows())
    assert flip["metrics"]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-9)
    assert flip["metrics"] != plain["metrics"]  # the mirror images changed the embeddings
    with Store(store) as s:
        assert {r["protocol"] for r in s.query(kind="quality")} == {"verification", "verification+flip"}
    r = cli("eval", final, *data, "--flip", "--store", store)
    assert r.code == 0 and "flip test" in r.out


def test_eval_plain_state_dict_with_model(cli, tmp_path):
    """An insightface-style backbone.pth (a bare state_dict) evaluates with --model."""
    from fcbench.models import create

    model = create("r18", **TINY_OPTS)
    torch.save(model.state_dict(), tmp_path / "backbone.pth")
    r = cli("eval", tmp_path / "backbone.pth", "--data", "synthetic:pairs", "--data-opt", "num_pairs=40",
            "--nfolds", "2", "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "--model" in r.err
    r = cli("eval", tmp_path / "backbone.pth", "--model", "r18", *TINY, "--data", "synthetic:pairs",
            "--data-opt", "num_pairs=40", "--nfolds", "2", "--store", tmp_path / "s.sqlite")
    assert r.code == 0 and "accuracy" in r.out, r.err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--model", "r19"], "did you mean 'r18'"),
        (["train", "--model", "r18", "-o", "widht=0.5"], "widht"),
        (["train", "--data", "synthetic:pairs", *TINY], "no class labels"),
        (["train", "--data", "/nonexistent/data.rec", *TINY], "/nonexistent/data.rec"),
        (["train", "--optimizer", "adam"], "optimizer"),
        (["train", "--milestones", "8,x"], "--milestones"),
        (["train", "-o", "width"], "KEY=VALUE"),
        (["train", "--amp", "on", *TINY], "needs CUDA"),
        (["eval", "missing.pt"], "missing.pt"),
        (["eval", "notes.txt"], "not a PyTorch checkpoint"),
        (["eval", "run/model.pt", "--protocol", "roc"], "protocol"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, in_tmp, capsys, args, needle):
    (in_tmp / "notes.txt").write_text("hello")
    if "--amp" in args and torch.cuda.is_available():
        pytest.skip("--amp on is valid where CUDA exists")
    if "run/model.pt" in args:
        train(tiny_cfg(in_tmp, epochs=1))
        capsys.readouterr()  # the set-up's own training output is not the verb's
    r = cli(*args, "--store", in_tmp / "s.sqlite")
    assert r.code == 2, (r.code, r.err)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fcbench: error:"), r.err
    assert needle in lines[0]


def test_incompatible_checkpoint_is_rejected(cli, tmp_path):
    final = train(tiny_cfg(tmp_path, epochs=1))
    r = cli("train", "--model", "r34", *TINY, "-o", "embedding_size=16", "--weights", final, "--epochs", "1",
            "--out", tmp_path / "x", "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "do not fit" in r.err and "shape mismatch" in r.err


def test_train_weights_starts_from_an_fcbench_checkpoint(tmp_path):
    """--weights takes an fcbench checkpoint's weights (not its architecture record): init.pt equals them."""
    final = train(tiny_cfg(tmp_path / "a", epochs=1))
    train(tiny_cfg(tmp_path / "b", epochs=1, weights=str(final), max_steps=1))
    a, b = load_checkpoint(final).state_dict, load_checkpoint(tmp_path / "b" / "run" / "init.pt").state_dict
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """torchrun with 2 processes (gloo): one checkpoint, rows from rank 0 only, world size recorded."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "fcbench.cli", "train", "--model", "r18", *TINY, "--data", "synthetic:faces",
           "--data-opt", "num_classes=8", "--data-opt", "samples_per_class=8", "--epochs", "2",
           "--batch-size", "8", "--out", str(tmp_path / "ddp"), "--store", str(tmp_path / "s.sqlite")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "ddp" / "model.pt").exists()
    with Store(tmp_path / "s.sqlite") as s:
        rows = s.query(kind="train")
    assert len(rows) == 2 and all(r["extra"]["world_size"] == 2 for r in rows)
    # 64 samples / (2 ranks x batch 8) = 4 steps per epoch
    assert rows[-1]["extra"]["step"] == 8


def test_eval_writes_the_whole_roc(cli, tmp_path):
    """--roc: every ROC point as CSV, from accepting nothing to accepting everything; its area is the AUC."""
    import csv

    final = train(tiny_cfg(tmp_path, epochs=1))
    roc = tmp_path / "roc.csv"
    r = cli("eval", final, "--data", "synthetic:pairs", "--data-opt", "num_pairs=100", "--nfolds", "5",
            "--roc", roc, "--store", tmp_path / "s.sqlite", "--format", "json")
    assert r.code == 0, r.err
    pts = [(float(x["far"]), float(x["tar"]), float(x["threshold"])) for x in csv.DictReader(roc.open())]
    assert len(pts) > 10 and pts[0][:2] == (0.0, 0.0) and pts[-1][:2] == (1.0, 1.0)
    assert all(a[0] <= b[0] and a[1] <= b[1] and a[2] > b[2] for a, b in zip(pts, pts[1:], strict=False))
    area = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:], strict=False))
    assert abs(area - json.loads(r.out)["metrics"]["auc"]) < 1e-6
    for args, needle in [(["--roc", tmp_path / "nope" / "roc.csv"], "does not exist"),
                         (["--roc", roc, "--protocol", "identification"], "verification"),
                         (["--data", "synthetic:faces", "--data-opt", "num_classes=8", "--roc", roc], "pairs")]:
        r = cli("eval", final, *args, "--store", tmp_path / "s.sqlite")
        assert r.code == 2 and needle in r.err, (args, r.err)
    r = cli("eval", final, final, "--roc", roc, "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "one curve" in r.err


def test_train_and_eval_put_torch_thread_count_back(tmp_path):
    """torch's thread count is process-wide: ``threads=1`` holds for the verb's own work, not for what follows."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ckpt = train(tiny_cfg(tmp_path, epochs=1, threads=1))
        assert torch.get_num_threads() == 2
        evaluate(EvalConfig(checkpoint=str(ckpt), data="synthetic:pairs", data_options={"num_pairs": 20},
                            threads=1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
