"""Bad input to every verb, through the CLI: one line on stderr that starts 'fcbench: error:', names the
verb or option and the path, exit code 2, no traceback, and nothing left behind (no output file, no
temporary file, no store created, no row stored).

One tiny r18 is trained once and converted to ONNX; beside it lie the bad inputs: a directory, a text
file named .pt/.onnx, empty files, a text file used as a store, an empty store, a store with rows.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import converted_file

from fcbench.conversion import convert
from fcbench.results.context import RunContext
from fcbench.results.store import Store
from fcbench.techniques.base import Technique
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

TINY = ["-o", "width=0.125", "-o", "layers=[1,1,1,1]", "-o", "input_size=[32,32]", "-o", "embedding_size=16"]
R18 = dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                       "embedding_size": 16},
           data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4})
PAIRS = ["--data-opt", "num_pairs=20", "--nfolds", "2"]
QUICK = ["--runs", "2", "--warmup", "0", "--min-seconds", "0", "--in-process"]


class Keep(Technique):
    """A technique that changes nothing (the compress cases fail before it would run)."""

    name = "keep"
    verb = "compress"

    @dataclass
    class Options:
        pass

    def apply(self, checkpoint, options, context):
        return checkpoint.with_model(checkpoint.build_model())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[Path, bool]:
    """The folder of inputs, and whether run/model.onnx could be made here."""
    root = tmp_path_factory.mktemp("bad")
    ckpt = Path(train(TrainConfig(**R18, epochs=1, batch_size=8, lr=0.01, out=str(root / "run"))))
    try:  # skips only when the onnx exporter is not installed; a failed conversion fails
        converted_file(convert(ckpt, ["onnx"], root / "run"), "onnx")
        has_onnx = True
    except pytest.skip.Exception:
        has_onnx = False
    (root / "dir").mkdir()
    (root / "text.pt").write_text("hello\n")
    (root / "text.onnx").write_text("hello\n")
    (root / "empty.pt").write_bytes(b"")
    (root / "empty.onnx").write_bytes(b"")
    (root / "store.txt").write_text("not a database\n")
    Store(root / "empty.sqlite").close()
    with Store(root / "s.sqlite") as s:
        ctx = RunContext()
        s.add(ctx.row("train", model="r18", metric="loss", value=1.0))
        s.add(ctx.row("quality", model="r18", metric="accuracy", value=0.5))
    return root, has_onnx


@pytest.fixture
def keep_technique(monkeypatch):
    """The 'keep' technique, registered as an installed plugin's entry point would be."""
    from fcbench import plugins

    original = plugins.entry_points
    ep = types.SimpleNamespace(load=lambda: Keep, value=f"{__name__}:Keep", dist=types.SimpleNamespace(name="tests"))

    def entry_points(kind: str):
        found = original(kind)
        return {**found, "keep": ep} if kind == "technique" else found

    monkeypatch.setattr(plugins, "entry_points", entry_points)


def _files(root: Path) -> set[str]:
    """Every file under root but the stores the cases read (SQLite may add -wal/-shm files for a moment)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(("s.sqlite", "empty.sqlite"))}


def _rows(path: Path) -> int:
    with Store(path) as s:
        return len(s.query())


FRESH = ["--store", "fresh.sqlite"]  # a store that must not be created: nothing is stored on bad input

# (verb and arguments, words the one line must hold). Grouped by what is wrong.
CASES = [
    # a directory where a file is expected
    (["eval", "dir", *FRESH], ["checkpoint dir", "is a directory", "dir/model.pt"]),
    (["eval", "dir", "--model", "r18", *FRESH], ["eval: weights file dir", "is a directory"]),
    (["bench", "dir", *FRESH], ["bench: artifact dir", "is a directory"]),
    (["inspect", "dir", "--backend", "onnxruntime:cpu"], ["inspect: artifact dir", "is a directory"]),
    (["convert", "dir"], ["checkpoint dir", "is a directory"]),
    (["compress", "dir", "--technique", "keep", *FRESH], ["checkpoint dir", "is a directory"]),
    (["train", "--weights", "dir", *TINY, "--out", "t", *FRESH], ["weights file dir", "is a directory"]),
    (["run", "dir"], ["recipe dir", "is a directory"]),
    # a missing file
    (["eval", "missing.pt", *FRESH], ["missing.pt", "does not exist"]),
    (["bench", "missing.onnx", *FRESH], ["bench: artifact missing.onnx", "does not exist"]),
    (["inspect", "missing.onnx", "--backend", "onnxruntime:cpu"], ["inspect: artifact missing.onnx",
                                                                   "does not exist"]),
    (["convert", "missing.pt"], ["missing.pt", "does not exist"]),
    (["compress", "missing.pt", "--technique", "keep", *FRESH], ["missing.pt", "does not exist"]),
    (["eval", "run/model.pt", "--data", "nope/data.rec", *FRESH], ["nope/data.rec", "does not exist"]),
    (["results", "--store", "missing.sqlite"], ["missing.sqlite", "does not exist"]),
    # an .onnx where a .pt is expected, and the other way round
    (["convert", "run/model.onnx"], ["run/model.onnx is an onnx model", "not a PyTorch checkpoint"]),
    (["compress", "run/model.onnx", "--technique", "keep", *FRESH], ["is an onnx model", "not a PyTorch"]),
    (["train", "--weights", "run/model.onnx", *TINY, "--out", "t", *FRESH], ["weights file run/model.onnx",
                                                                             "onnx model"]),
    (["eval", "run/model.onnx", "--model", "r18", *FRESH], ["--model is for a plain state_dict", "drop --model"]),
    (["eval", "run/model.pt", "--backend", "onnxruntime:cpu", *FRESH], ["eval:", "does not load fcbench-ckpt"]),
    (["inspect", "run/model.pt", "--backend", "onnxruntime:cpu"], ["inspect:", "does not load fcbench-ckpt"]),
    # a text file named .pt / .onnx, an empty file
    (["eval", "text.pt", *FRESH], ["text.pt is a text file", "not a PyTorch checkpoint"]),
    (["convert", "text.pt"], ["text.pt is a text file"]),
    (["compress", "text.pt", "--technique", "keep", *FRESH], ["text.pt is a text file"]),
    (["train", "--weights", "text.pt", *TINY, "--out", "t", *FRESH], ["weights file text.pt", "text file"]),
    (["eval", "empty.pt", *FRESH], ["empty.pt is empty (0 bytes)"]),
    (["convert", "empty.pt"], ["empty.pt is empty"]),
    (["bench", "empty.onnx", *FRESH], ["bench: artifact empty.onnx", "is empty"]),
    (["eval", "text.onnx", *FRESH], ["text.onnx", "no manifest", "--infer-manifest"]),
    (["bench", "text.onnx", "--infer-manifest", *FRESH], ["text.onnx", "not onnx"]),
    # a store that is a text file or a directory
    (["results", "--store", "store.txt"], ["store.txt", "cannot be opened as SQLite", "text file"]),
    (["results", "--store", "dir"], ["results store dir", "is a directory"]),
    (["eval", "run/model.pt", *PAIRS, "--store", "store.txt"], ["store.txt", "cannot be opened as SQLite"]),
    (["eval", "run/model.pt", *PAIRS, "--store", "dir"], ["results store dir", "is a directory"]),
    (["bench", "run/model.onnx", "--backend", "onnxruntime:cpu", *QUICK, "--store", "store.txt"],
     ["store.txt", "cannot be opened as SQLite"]),
    (["bench", "run/model.onnx", "--backend", "onnxruntime:cpu", *QUICK, "--store", "dir"],
     ["results store dir", "is a directory"]),
    (["compress", "run/model.pt", "--technique", "keep", "--out", "c.pt", "--store", "store.txt"],
     ["store.txt", "cannot be opened as SQLite"]),
    (["train", *TINY, "--epochs", "1", "--out", "t", "--store", "dir"], ["results store dir", "is a directory"]),
    (["eval", "run/model.pt", *PAIRS, "--store", "text.pt/s.sqlite"], ["--store", "text.pt is a file, not a folder"]),
    (["bench", "run/model.onnx", "--backend", "onnxruntime:cpu", "--worker-logs", "text.pt", *FRESH],
     ["bench: --worker-logs text.pt", "is a file, not a folder"]),
    # output paths that are directories or below a file
    (["eval", "run/model.pt", *PAIRS, "--roc", "dir", *FRESH], ["--roc dir", "is a directory"]),
    (["eval", "run/model.pt", *PAIRS, "--roc", "text.pt/roc.csv", *FRESH], ["--roc", "text.pt is a file"]),
    (["eval", "run/model.pt", "--roc", "roc.csv", "--data", "synthetic:faces", "--data-opt", "num_classes=4",
      *FRESH], ["--roc needs a verification set", "nothing was stored"]),
    (["compress", "run/model.pt", "--technique", "keep", "--out", "dir", *FRESH], ["compress: --out dir",
                                                                                   "is a directory"]),
    (["compress", "run/model.pt", "--technique", "keep", "--out", "text.pt/x.pt", *FRESH],
     ["compress: --out", "text.pt is a file, not a folder"]),
    # unknown names
    (["eval", "run/model.onnx", "--backend", "nope", *FRESH], ["unknown backend 'nope'"]),
    (["bench", "run/model.onnx", "--backend", "nope", *FRESH], ["unknown backend 'nope'"]),
    (["inspect", "run/model.onnx", "--backend", "nope"], ["unknown backend 'nope'"]),
    (["eval", "run/model.pt", "--model", "r99", *FRESH], ["unknown model 'r99'"]),
    (["eval", "run/model.pt", "--data", "bogus:x", *FRESH], ["unknown dataset 'bogus'"]),
    (["convert", "run/model.pt", "--to", "nope"], ["unknown format 'nope'"]),
    (["compress", "run/model.pt", "--technique", "nope", *FRESH], ["unknown technique 'nope'"]),
    (["profile", "r99"], ["unknown model 'r99'"]),
    (["train", "--model", "r99", *FRESH], ["unknown model 'r99'"]),
    # selections that match nothing
    (["results", "--store", "empty.sqlite"], ["empty.sqlite is empty (no rows yet)"]),
    (["results", "--store", "s.sqlite", "--model", "r99"], ["no rows with model 'r99' in s.sqlite",
                                                            "models in the store: r18"]),
    (["results", "--store", "s.sqlite", "--metric", "acc"], ["no rows with metric 'acc'",
                                                             "did you mean 'accuracy'"]),
    (["results", "--store", "s.sqlite", "--kind", "sped"], ["no rows with kind 'sped'", "did you mean 'speed'"]),
    (["results", "--store", "s.sqlite", "--run", "nonexistent"], ["no rows with run 'nonexistent'"]),
    (["results", "--store", "s.sqlite", "--kind", "quality", "--metric", "loss"], ["together"]),
    (["bench", "run/model.onnx", "--backend", "tflite", *FRESH], ["bench: nothing to run",
                                                                 "tflite does not load onnx"]),
    (["eval", "run/model.onnx", "--backend", "tflite", *FRESH], ["eval:", "tflite does not load onnx"]),
    (["eval", "run/model.onnx", "--backend", "tflite,tflite-cpu", *FRESH], ["eval: nothing to run",
                                                                           "tflite does not load onnx"]),
    (["inspect", "run/model.onnx", "--backend", "tflite"], ["inspect:", "tflite does not load onnx"]),
]


@pytest.mark.parametrize("args, words", CASES, ids=[" ".join(a[:4]) for a, _ in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(cli, work, monkeypatch, keep_technique, capsys, args, words):
    root, has_onnx = work
    if "run/model.onnx" in args and not has_onnx:
        pytest.skip("the onnx exporter is not installed here, so run/model.onnx could not be made")
    monkeypatch.chdir(root)
    before, rows_before = _files(root), _rows(root / "s.sqlite")
    r = cli(*args)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err
    assert len(lines) == 1 and lines[0].startswith("fcbench: error:"), r.err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert _files(root) == before, f"left behind: {_files(root) ^ before}"
    assert _rows(root / "s.sqlite") == rows_before


def test_a_matrix_where_some_cells_ran_is_no_error(cli, work, monkeypatch):
    """Skips beside cells that ran are shown, and the command succeeds."""
    root, has_onnx = work
    if not has_onnx:
        pytest.skip("the onnx exporter is not installed here, so run/model.onnx could not be made")
    monkeypatch.chdir(root)
    r = cli("bench", "run/model.onnx", "--backend", "tflite,onnxruntime:cpu", *QUICK, "--store", "partial.sqlite")
    assert r.code == 0, r.err
    assert "tflite does not load onnx" in r.err + r.out
    assert _rows(root / "partial.sqlite") == 1
    (root / "partial.sqlite").unlink()


def test_results_filters_that_match_show_rows(cli, work, monkeypatch):
    root, _ = work
    monkeypatch.chdir(root)
    r = cli("results", "--store", "s.sqlite", "--model", "r18", "--kind", "quality", "--format", "csv")
    assert r.code == 0, r.err
    assert "accuracy" in r.out and "loss" not in r.out

