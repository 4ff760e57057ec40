"""fcbench distill: every method through the command line on tiny models, the lineage it writes, the teacher
by name (found in the store or trained first), projections, and the bad input it refuses before writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fcbench
from fcbench.artifact import read_manifest, sha256_file
from fcbench.results.store import Store
from fcbench.training.checkpoint import load_checkpoint

SIZE = ["-o", "input_size=32x32"]
DATA = ["--data-opt", "num_classes=8", "--data-opt", "samples_per_class=8"]
STUDENT = ["--student", "r18", "-o", "width=0.125", "-o", "layers=[1,1,1,1]", *SIZE]
FAST = ["--epochs", "1", "--batch-size", "16", *DATA]
FACE_METHODS = ["embedding-mse", "adaptive-margin", "triplet-l2", "triplet-cos", "margin", "angular", "ekd"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny IResNet-18 face teacher (ArcFace, 32x32, 8 identities), trained once for the module."""
    out = tmp_path_factory.mktemp("teacher")
    run = fcbench.train(model="r18", model_options={"width": 0.25, "input_size": [32, 32]}, epochs=3,
                        batch_size=16, data_options={"num_classes": 8, "samples_per_class": 8}, out=str(out / "t"),
                        threads=2)
    return Path(run.checkpoint)


def _last_step(ckpt: Path):
    return read_manifest(ckpt).lineage[-1]


@pytest.mark.parametrize("method", FACE_METHODS)
def test_every_face_method_writes_a_distill_step(cli, tmp_path, teacher, method):
    store = tmp_path / "s.sqlite"
    r = cli("distill", "--teacher", teacher, *STUDENT, "--method", method, *FAST, "--out", tmp_path / "d",
            "--store", store)
    assert r.code == 0, r.err
    out = tmp_path / "d" / "model.pt"
    assert r.out.strip() == str(out)
    step = _last_step(out)
    assert (step.verb, step.technique) == ("distill", method)
    assert step.options["teacher_sha256"] == sha256_file(teacher)
    assert step.options["teacher_file"] == os.path.relpath(teacher, tmp_path / "d")
    assert method in step.options["methods"]
    with Store(store) as s:
        (row,) = s.query(kind="train")
    assert row["extra"]["method"] == method and row["artifact"] == str(out)
    if method != "adaptive-margin":  # adaptive-margin changes the ArcFace term itself and adds none
        assert row["extra"]["loss_terms"][method] > 0
    student = load_checkpoint(out).build_model()  # a normal checkpoint: it loads and runs
    assert student(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_kd_distils_a_classifier(cli, tmp_path):
    opts = ["-o", "width=0.25", "-o", "num_classes=4", "-o", "input_size=32x32"]
    data = ["--data", "synthetic:classes", "--data-opt", "num_classes=4", "--data-opt", "samples_per_class=8"]
    t = fcbench.train(model="mobilenet_v2", model_options={"width": 0.25, "num_classes": 4, "input_size": [32, 32]},
                      head="softmax", data="synthetic:classes", data_options={"num_classes": 4, "samples_per_class": 8},
                      epochs=1, batch_size=16, out=str(tmp_path / "t"))
    r = cli("distill", "--teacher", t, "--student", "mobilenet_v2", *opts, *data, "--head", "softmax",
            "--method", "kd", "--method-opt", "temperature=2", "--method-opt", "alpha=0.5", "--epochs", "1",
            "--batch-size", "16", "--out", tmp_path / "d", "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    step = _last_step(tmp_path / "d" / "model.pt")
    assert step.technique == "kd" and step.options["methods"]["kd"] == {"temperature": 2.0, "alpha": 0.5}
    assert step.options["ce_weight"] == 0.5


def test_combination_weights_and_projection(cli, tmp_path, teacher):
    """Two methods with a weight each; a 64-d student learns through a projection that the saved model lacks."""
    r = cli("distill", "--teacher", teacher, *STUDENT, "-o", "embedding_size=64",
            "--method", "embedding-mse+angular", "--method-opt", "embedding-mse.weight=50",
            "--method-opt", "angular.weight=2", *FAST, "--out", tmp_path / "d", "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    out = tmp_path / "d" / "model.pt"
    step = _last_step(out)
    assert step.technique == "embedding-mse+angular"
    assert step.options["methods"] == {"embedding-mse": {"weight": 50.0}, "angular": {"weight": 2.0}}
    assert step.options["projection"] == "linear 64->512"
    ckpt = load_checkpoint(out)
    fresh = fcbench.create_model("r18", **ckpt.model_options)
    assert set(ckpt.state_dict) == set(fresh.state_dict())  # no projection weights in the student
    assert ckpt.build_model()(torch.zeros(1, 3, 32, 32)).shape == (1, 64)


def test_adaptive_margin_ablation_flags(cli, tmp_path, teacher):
    """Copied centres are the teacher's and stay frozen unless --train-centres; each flag is in the lineage."""
    t_head = load_checkpoint(teacher).head["state_dict"]["weight"]
    for name, flags, frozen in [("freeze", [], True), ("train", ["--train-centres"], False),
                                ("fixed", ["--fixed-margin"], True)]:
        r = cli("distill", "--teacher", teacher, *STUDENT, "--method", "adaptive-margin", *flags, *FAST,
                "--out", tmp_path / name, "--store", tmp_path / "s.sqlite")
        assert r.code == 0, r.err
        ckpt = load_checkpoint(tmp_path / name / "model.pt")
        assert torch.equal(ckpt.head["state_dict"]["weight"], t_head) is frozen, name
        opts = _last_step(tmp_path / name / "model.pt").options["methods"]["adaptive-margin"]
        assert opts["train_centres"] is (name == "train") and opts["fixed_margin"] is (name == "fixed")
    r = cli("distill", "--teacher", teacher, *STUDENT, "--method", "adaptive-margin", "--no-copy-centres", *FAST,
            "--out", tmp_path / "nocopy", "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err
    assert not torch.equal(load_checkpoint(tmp_path / "nocopy" / "model.pt").head["state_dict"]["weight"], t_head)


def test_teacher_by_name_is_trained_then_found_in_the_store(cli, tmp_path):
    store = tmp_path / "s.sqlite"
    args = ["--teacher", "r18", "--teacher-opt", "width=0.25", "--teacher-opt", "input_size=32x32", *STUDENT,
            *FAST, "--store", store]
    r = cli("distill", *args, "--out", tmp_path / "a")
    assert r.code == 0, r.err
    assert "training r18 first into" in r.err
    first = _last_step(tmp_path / "a" / "model.pt").options
    assert first["teacher_how"] == "trained" and first["teacher_file"] == "teacher/model.pt"
    assert first["teacher_sha256"] == sha256_file(tmp_path / "a" / "teacher" / "model.pt")
    r = cli("distill", *args, "--out", tmp_path / "b")
    assert r.code == 0, r.err
    assert "the newest trained r18 on this data" in r.err
    second = _last_step(tmp_path / "b" / "model.pt").options
    assert second["teacher_how"] == "store" and second["teacher_sha256"] == first["teacher_sha256"]
    assert not (tmp_path / "b" / "teacher").exists()
    # other data: that teacher does not count, a new one is trained
    r = cli("distill", *args, "--data-opt", "seed=3", "--out", tmp_path / "c")
    assert r.code == 0, r.err
    assert _last_step(tmp_path / "c" / "model.pt").options["teacher_how"] == "trained"


def test_distilled_student_learns_and_beats_an_untrained_one(tmp_path, teacher):
    """Its distillation term falls epoch by epoch, and its verification on unseen identities is above the same
    network before training."""
    common = dict(teacher=str(teacher), student="r18", model_options={"width": 0.125, "input_size": [32, 32]},
                  method="embedding-mse", epochs=8, batch_size=16, lr=0.05, threads=2,
                  data_options={"num_classes": 8, "samples_per_class": 8})
    # at the paper's weight (100) the term is ~0.4 beside ArcFace's ~20 and drifts at this toy scale; weighted up
    # so that it dominates, it must fall
    heavy = fcbench.distill(**common, method_options={"weight": 2000.0}, out=str(tmp_path / "heavy"))
    terms = [r.extra["loss_terms"]["embedding-mse"] for r in heavy.rows]
    assert terms[-1] < 0.95 * terms[0], terms
    run = fcbench.distill(**common, out=str(tmp_path / "d"))
    pairs = {"data": "synthetic:pairs", "data_options": {"num_pairs": 200}, "nfolds": 5}
    after = dict(fcbench.evaluate(checkpoints=[str(run)], **pairs).metrics)
    before = dict(fcbench.evaluate(checkpoints=[str(run.init_checkpoint)], **pairs).metrics)
    # AUC, not the best-threshold accuracy: on 200 pairs that moves in steps of 0.5 % and flipped with the CPU
    assert after["auc"] > before["auc"] + 0.03, (before, after)


def test_resume_continues_the_projection(cli, tmp_path, teacher):
    args = ["distill", "--teacher", teacher, *STUDENT, "-o", "embedding_size=64", *DATA, "--batch-size", "16",
            "--out", tmp_path / "d", "--store", tmp_path / "s.sqlite"]
    assert cli(*args, "--epochs", "1").code == 0
    state = torch.load(tmp_path / "d" / "epoch-001.pt", weights_only=True)["train_state"]
    assert "extra" in state and state["extra"]["projection.weight"].shape == (512, 64)
    r = cli(*args, "--epochs", "2", "--resume", "auto")
    assert r.code == 0, r.err
    assert (tmp_path / "d" / "epoch-002.pt").exists()
    for change in (["--method", "angular"], ["--method-opt", "weight=5"]):  # another loss, another weight
        r = cli(*args, *change, "--epochs", "3", "--resume", "auto")
        assert r.code == 2 and "other options" in r.err, (change, r.err)


def test_compress_with_a_distillation_method_points_at_distill(cli, teacher, tmp_path):
    r = cli("compress", teacher, "--technique", "kd", "--out", tmp_path / "x.pt")
    assert r.code == 2 and "fcbench distill" in r.err


def test_methods_are_listed_with_their_options(cli):
    r = cli("plugins", "--kind", "technique", "-v", "--format", "json")
    assert r.code == 0, r.err
    listed = json.dumps(json.loads(r.out))
    for name in ["kd", *FACE_METHODS]:
        assert f'"{name}"' in listed


# --- bad input: one line, exit 2, nothing written --------------------------------------------------------

def _bad(cli, tmp_path, *args):
    out = tmp_path / "never"
    r = cli("distill", *args, "--out", out, "--store", tmp_path / "s.sqlite")
    assert r.code == 2, (r.code, r.err)
    assert not out.exists()
    lines = [ln for ln in r.err.splitlines() if ln.strip() and "log:" not in ln]
    return " ".join(lines)


def test_bad_input(cli, tmp_path, teacher):
    classifier = fcbench.train(model="mobilenet_v2", model_options={"width": 0.25, "num_classes": 4,
                                                                    "input_size": [32, 32]},
                               head="softmax", data="synthetic:classes", max_steps=1, epochs=1, batch_size=8,
                               data_options={"num_classes": 4, "samples_per_class": 4}, out=str(tmp_path / "cls"))
    backbone = tmp_path / "backbone.pth"
    torch.save(load_checkpoint(teacher).state_dict, backbone)  # an insightface-style bare state_dict
    cases = [
        (["--teacher", classifier, *STUDENT, *FAST], "classification model and the student a embedding"),
        (["--teacher", teacher, *STUDENT, "--method", "kd", *FAST], "method 'kd' distils classifiers"),
        (["--teacher", backbone, "--teacher-model", "r34", *STUDENT, *FAST], "mismatch"),
        (["--teacher", backbone, *STUDENT, *FAST], "--teacher-model"),
        (["--teacher", backbone, "--teacher-model", "r18", "--teacher-opt", "width=0.25",
          "--teacher-opt", "input_size=32x32", *STUDENT, "--method", "adaptive-margin", *FAST],
         "needs the teacher's training head"),
        (["--teacher", teacher, *STUDENT, "--method", "embeding-mse", *FAST], "did you mean 'embedding-mse'"),
        (["--teacher", teacher, *STUDENT, "--method-opt", "weight=-1", *FAST], "weight must be a finite number >= 0"),
        (["--teacher", teacher, *STUDENT, "--method", "embedding-mse+angular", "--method-opt", "weight=5", *FAST],
         "name it as METHOD.weight"),
        (["--teacher", teacher, *STUDENT, "--fixed-margin", *FAST], "adaptive-margin option"),
        (["--teacher", teacher, *STUDENT, "-o", "embedding_size=64", "--method", "adaptive-margin", *FAST],
         "embedding_size=512"),
        (["--teacher", teacher, "--student", "r18", "-o", "width=0.125", *FAST], "input_size=32x32"),
        (["--teacher", "r43", *STUDENT, *FAST], "did you mean 'r34'"),
        (["--teacher", tmp_path / "missing.pt", *STUDENT, *FAST], "does not exist"),
        ([*STUDENT, *FAST], "--teacher is required"),
    ]
    for args, needle in cases:
        msg = _bad(cli, tmp_path, *args)
        assert needle in msg, (args, msg)


def test_adaptive_margin_needs_a_teacher_trained_on_this_data(cli, tmp_path, teacher):
    msg = _bad(cli, tmp_path, "--teacher", teacher, *STUDENT, "--method", "adaptive-margin", "--epochs", "1",
               "--batch-size", "16", "--data-opt", "num_classes=6", "--data-opt", "samples_per_class=8")
    assert "teacher's head has 8 classes" in msg


@pytest.mark.slow
def test_distill_under_torchrun(tmp_path, teacher):
    """Two gloo processes: one student checkpoint with the distill step, rows from rank 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "fcbench.cli", "distill", "--teacher", str(teacher), *STUDENT, "-o", "embedding_size=64",
           "--method", "embedding-mse+adaptive-margin", "--no-copy-centres", "--epochs", "2", "--batch-size", "8",
           *DATA, "--out", str(tmp_path / "ddp"), "--store", str(tmp_path / "s.sqlite")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _last_step(tmp_path / "ddp" / "model.pt").verb == "distill"
    with Store(tmp_path / "s.sqlite") as s:
        rows = s.query(kind="train")
    assert len(rows) == 2 and all(r["extra"]["world_size"] == 2 for r in rows)
