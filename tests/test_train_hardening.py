"""A training run folder belongs to one run: train refuses to write over another run (or deletes it with
--overwrite, naming its files), --resume continues only this run's checkpoints with this run's options,
nothing is written before the data, the folder and the resume checkpoint are checked, and Ctrl-C keeps
the last complete checkpoint and says how to continue."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fcbench.artifact import manifest_path, read_manifest, sha256_file
from fcbench.hooks import Hooks
from fcbench.training.checkpoint import load_checkpoint
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

TINY_OPTS = {"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32], "embedding_size": 32}
# the same run on the command line (tiny_cfg's options)
TINY_ARGS = ["--model", "r18", "-o", "width=0.125", "-o", "layers=[1,1,1,1]", "-o", "input_size=[32,32]",
             "-o", "embedding_size=32", "--head-opt", "s=16.0", "--head-opt", "m=0.2", "--data", "synthetic:faces",
             "--data-opt", "num_classes=8", "--data-opt", "samples_per_class=8", "--batch-size", "16",
             "--lr", "0.05", "--seed", "1"]
STEPS_PER_EPOCH = 4  # 8 classes x 8 samples / batch 16


def tiny_cfg(out: Path, **kw) -> TrainConfig:
    base = dict(model="r18", model_options=dict(TINY_OPTS), head="arcface", head_options={"s": 16.0, "m": 0.2},
                data="synthetic:faces", data_options={"num_classes": 8, "samples_per_class": 8}, epochs=2,
                batch_size=16, lr=0.05, out=str(out), seed=1)
    base.update(kw)
    return TrainConfig(**base)


def one_line_error(r) -> str:
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert r.code == 2 and len(lines) == 1 and lines[0].startswith("fcbench: error:"), (r.code, r.err)
    return lines[0]


def listing(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())} if folder.exists() else {}


def train_runs(folder: Path) -> set[str]:
    """The ``train_run`` every checkpoint in ``folder`` names (payload and manifest agree)."""
    runs = set()
    for p in folder.glob("*.pt"):
        ckpt = load_checkpoint(p)
        assert ckpt.train_run and ckpt.manifest.extra["train_run"] == ckpt.train_run, p
        runs.add(ckpt.train_run)
    return runs


def make_legacy(folder: Path) -> None:
    """Rewrite ``folder``'s checkpoints as fcbench wrote them before run ids: no ``train_run`` anywhere, so
    an epoch checkpoint names its run only by the sha256 of the init.pt in its ``train_state``."""

    def rewrite(path: Path, fix) -> str:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        payload.pop("train_run", None)
        fix(payload)
        torch.save(payload, path)
        m = json.loads(manifest_path(path).read_text())
        m["extra"].pop("train_run", None)
        m["sha256"], m["size"] = sha256_file(path), path.stat().st_size
        fix_manifest = m["lineage"][-1] if m["lineage"] and m["lineage"][-1]["verb"] == "train" else None
        if fix_manifest is not None:
            fix_manifest["parent_sha256"] = init_sha
        manifest_path(path).write_text(json.dumps(m))
        return m["sha256"]

    init_sha = ""
    init_sha = rewrite(folder / "init.pt", lambda p: None)

    def fix_state(p):
        p["train_state"].pop("train_run", None)
        p["train_state"]["init_sha256"] = init_sha

    for ep in folder.glob("epoch-*.pt"):
        rewrite(ep, fix_state)
    if (folder / "model.pt").exists():
        rewrite(folder / "model.pt", lambda p: None)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 3-epoch run: what every resumed run below must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return load_checkpoint(train(tiny_cfg(out, epochs=3))).state_dict


def assert_same_weights(a: dict, b: dict) -> None:
    assert a and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --- class 12: one run per folder: refuse, or --overwrite naming what it deletes -----------------------

def test_train_refuses_a_folder_that_holds_a_run_and_overwrite_deletes_it(cli, in_tmp):
    r = cli("train", *TINY_ARGS, "--epochs", "2", "--out", "run", "--store", "s.sqlite")
    assert r.code == 0, r.err
    before = listing(in_tmp / "run")
    (first_run,) = train_runs(in_tmp / "run")

    r = cli("train", *TINY_ARGS, "--epochs", "1", "--out", "run", "--store", "s.sqlite")
    line = one_line_error(r)
    for needle in ("--out run already holds a run", "init.pt", "epoch-001.pt..epoch-002.pt", "model.pt",
                   "new --out", "--resume auto", "--overwrite"):
        assert needle in line, (needle, line)
    assert listing(in_tmp / "run") == before  # nothing was touched

    r = cli("train", *TINY_ARGS, "--overwrite", "--resume", "auto", "--out", "run", "--store", "s.sqlite")
    assert "pass one of them" in one_line_error(r)

    r = cli("train", *TINY_ARGS, "--seed", "2", "--epochs", "1", "--overwrite", "--out", "run", "--store", "s.sqlite")
    assert r.code == 0, r.err
    assert "--overwrite: deleted the earlier run's files in run: init.pt, epoch-001.pt..epoch-002.pt" in r.err
    assert sorted(p.name for p in (in_tmp / "run").glob("*.pt")) == ["epoch-001.pt", "init.pt", "model.pt"]
    (second_run,) = train_runs(in_tmp / "run")  # every checkpoint in the folder is the new run's
    assert second_run != first_run
    assert read_manifest(in_tmp / "run" / "model.pt").lineage[-1].parent_sha256 == sha256_file(
        in_tmp / "run" / "init.pt")


def test_a_recipe_rerun_into_the_same_folder_is_refused(cli, in_tmp):
    recipe = in_tmp / "r.yaml"
    recipe.write_text("steps:\n  - train: {model: r18, model_options: {width: 0.125, layers: [1, 1, 1, 1], "
                      "input_size: [32, 32], embedding_size: 16}, data: synthetic:faces, data_options: "
                      "{num_classes: 4, samples_per_class: 8}, epochs: 1, batch_size: 8, out: runs/x}\n")
    assert cli("run", recipe, "--store", "s.sqlite").code == 0
    r = cli("run", recipe, "--store", "s.sqlite")
    assert r.code == 2 and "runs/x already holds a run" in r.err, r.err


# --- class 5 (train): check before writing ----------------------------------------------------------

def test_out_that_cannot_be_a_run_folder_is_refused_before_anything(cli, in_tmp):
    (in_tmp / "notes.txt").write_text("not a folder")
    r = cli("train", *TINY_ARGS, "--epochs", "1", "--out", "notes.txt", "--store", "s.sqlite")
    assert "--out notes.txt is a file, not a folder" in one_line_error(r)
    r = cli("train", *TINY_ARGS, "--epochs", "1", "--out", "notes.txt/run", "--store", "s.sqlite")
    assert "cannot be made: notes.txt is a file" in one_line_error(r)
    if os.geteuid() != 0:  # root may write anywhere
        (in_tmp / "ro").mkdir(mode=0o555)
        r = cli("train", *TINY_ARGS, "--epochs", "1", "--out", "ro/run", "--store", "s.sqlite")
        assert "is not writable" in one_line_error(r)
    assert (in_tmp / "notes.txt").read_text() == "not a folder"


def test_unreadable_data_stops_train_before_it_writes(cli, in_tmp):
    """A folder of class folders whose images are corrupt: the first batch is decoded before init.pt exists."""
    for c in ("a", "b"):
        (in_tmp / "data" / c).mkdir(parents=True)
        for i in range(8):
            (in_tmp / "data" / c / f"{i}.jpg").write_bytes(b"not a jpeg at all")
    r = cli("train", *TINY_ARGS[:10], "--data", in_tmp / "data", "--batch-size", "4", "--epochs", "1",
            "--out", "run", "--store", "s.sqlite")
    line = one_line_error(r)
    assert "image cannot be decoded" in line and str(in_tmp / "data") in line, line
    assert not (in_tmp / "run").exists()


# --- class 1: --resume continues this run only, with this run's options --------------------------------

@pytest.mark.parametrize("legacy", [False, True], ids=["run-ids", "before-run-ids"])
def test_resume_auto_refuses_checkpoints_of_another_run(cli, tmp_path, legacy):
    """The audit's case: a newer run's init.pt and epoch-001.pt beside an older run's epoch-002.pt and
    model.pt. --resume auto used to continue the older run's epoch 2 without a word."""
    old, new = tmp_path / "old", tmp_path / "new"
    train(tiny_cfg(old, epochs=2, seed=3))
    train(tiny_cfg(new, epochs=1))
    if legacy:
        make_legacy(old)
        make_legacy(new)
    for name in ("init.pt", "epoch-001.pt"):
        for f in (new / name, manifest_path(new / name)):
            shutil.copy(f, old / f.name)
    before = listing(old)
    r = cli("train", *TINY_ARGS, "--epochs", "3", "--resume", "auto", "--out", old, "--store", tmp_path / "s.sqlite")
    line = one_line_error(r)
    assert "also holds checkpoints of another run than the run init.pt belongs to: epoch-002.pt" in line, line
    assert "delete them" in line and "--overwrite" in line
    assert ("model.pt" in line) == (not legacy)  # an old model.pt does not say which run it belongs to
    assert listing(old) == before


def test_resume_refuses_other_options_and_names_them(cli, tmp_path):
    out = tmp_path / "run"
    train(tiny_cfg(out, epochs=1))
    before = listing(out)
    store = tmp_path / "s.sqlite"
    r = cli("train", *TINY_ARGS, "--lr", "0.1", "--epochs", "2", "--resume", "auto", "--out", out, "--store", store)
    line = one_line_error(r)
    assert "epoch-001.pt was trained with other options: lr 0.05 -> 0.1;" in line, line
    assert "only --epochs, --max-steps, --workers, --threads and --device may change" in line
    r = cli("train", *TINY_ARGS, "-o", "width=0.25", "--epochs", "2", "--resume", "auto", "--out", out,
            "--store", store)
    assert 'model_options {"embedding_size":32,"input_size":[32,32],"layers":[1,1,1,1],"width":0.125}' in \
        one_line_error(r)
    r = cli("train", *TINY_ARGS, "--epochs", "2", "--resume", out / "init.pt", "--out", out, "--store", store)
    assert "holds no training state" in one_line_error(r)
    assert listing(out) == before

    # what may change does not stop it; a checkpoint resumed into another folder keeps its run
    r = cli("train", *TINY_ARGS, "--epochs", "2", "--workers", "0", "--resume",
            out / "epoch-001.pt", "--out", tmp_path / "more", "--store", store)
    assert r.code == 0, r.err
    assert train_runs(tmp_path / "more") == train_runs(out)
    assert sorted(p.name for p in (tmp_path / "more").glob("*.pt")) == ["epoch-002.pt", "model.pt"]


def test_checkpoints_from_before_run_ids_still_resume_exactly(tmp_path, straight):
    out = tmp_path / "run"
    train(tiny_cfg(out, epochs=2))
    make_legacy(out)
    notes: list[str] = []
    resumed = train(tiny_cfg(out, epochs=3, resume="auto"), hooks=Hooks(on_log=notes.append))
    assert any("written before checkpoints named their run" in n for n in notes), notes
    assert_same_weights(straight, load_checkpoint(resumed).state_dict)


# --- class 8: Ctrl-C -------------------------------------------------------------------------------

def interrupt_at(step: int) -> Hooks:
    def progress(task, done, total, info):
        if done == step:
            raise KeyboardInterrupt

    return Hooks(on_progress=progress)


def test_ctrl_c_keeps_the_last_epoch_and_its_command_continues_exactly(cli, in_tmp, straight):
    out = in_tmp / "run"
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(tiny_cfg(out, epochs=3), hooks=interrupt_at(STEPS_PER_EPOCH + 2))  # in epoch 2
    note = str(stopped.value)
    assert note.startswith(f"train stopped in epoch 2 of 3; kept {out / 'epoch-001.pt'}, the last complete "
                           "checkpoint (epoch 1); continue with: fcbench train "), note
    assert sorted(p.name for p in out.iterdir()) == ["epoch-001.pt", "epoch-001.pt.manifest.json", "init.pt",
                                                    "init.pt.manifest.json"]
    command = shlex.split(note.split("continue with: ")[1])
    assert command[-2:] == ["--resume", "auto"]
    r = cli(*command[1:])  # the command as printed, run as it is
    assert r.code == 0, r.err
    assert_same_weights(straight, load_checkpoint(out / "model.pt").state_dict)


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(tiny_cfg(out, epochs=2), hooks=interrupt_at(2))
    note = str(stopped.value)
    assert note.startswith(f"train stopped in epoch 1 of 2, before its first checkpoint: nothing is kept; removed "
                           f"init.pt with its manifest from {out}; start again with: fcbench train "), note
    assert "--resume" not in note
    assert not out.exists()


def test_sigint_to_fcbench_train_exits_130_naming_what_was_kept(tmp_path):
    """A real Ctrl-C (SIGINT) to a real `fcbench train`: exit 130, one line with the kept checkpoint and the
    command; no half-written file; that command (with fewer epochs) continues the run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "fcbench.cli"]
    args = ["train", *TINY_ARGS, "--epochs", "50", "--out", "run", "--store", "s.sqlite"]
    # as in a terminal: Ctrl-C has its default action even when this test runs under a shell that ignores
    # SIGINT for background jobs (its children inherit the ignore, and Python then installs no handler)
    p = subprocess.Popen([*base, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not manifest_path(tmp_path / "run" / "epoch-001.pt").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.02)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fcbench: interrupted: train stopped in epoch "), err
    kept = sorted((tmp_path / "run").glob("epoch-*.pt"))
    assert f"kept {kept[-1].relative_to(tmp_path)}, the last complete checkpoint" in last, last
    assert all(manifest_path(k).exists() for k in kept)
    assert not list((tmp_path / "run").glob("*.tmp")) and not (tmp_path / "run" / "model.pt").exists()
    command = shlex.split(last.split("continue with: ")[1])
    assert command == ["fcbench", *args, "--resume", "auto"]
    epochs = len(kept) + 1
    done = subprocess.run([*base, *command[1:], "--epochs", str(epochs)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / f"epoch-{epochs:03d}.pt").exists() and (tmp_path / "run" / "model.pt").exists()
    assert f"resuming run/epoch-{epochs - 1:03d}.pt" in done.stderr
