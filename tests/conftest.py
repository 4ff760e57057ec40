from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("COLUMNS", "200")
# OpenMP threads spin while they wait for each other: when two xdist workers each start a command with two torch
# threads on two cores, every parallel region waits out the other process's time slice. benchmarks/
# omp_wait_policy.py: a tiny detector's forward pass, two such processes at once, 35 ms with the default policy,
# 16 ms PASSIVE (9 ms alone). Set before torch loads, here in the controller, so the workers and the processes
# tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# the tiny models the technique tests train once per module (r18 and a depthwise mbf, 32x32, one epoch)
TINY_DATA = dict(data="synthetic:faces", data_options={"num_classes": 8, "samples_per_class": 8})
TINY_R18 = dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32]})
TINY_MBF = dict(model="mbf", model_options={"width": 0.25, "input_size": [32, 32]})


def train_tiny(root: Path, spec: dict) -> Path:
    """Train ``spec`` (TINY_R18, TINY_MBF) one epoch on TINY_DATA into ``root/<model>``; its model.pt."""
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    return Path(train(TrainConfig(**spec, **TINY_DATA, epochs=1, batch_size=16, lr=0.01, threads=1,
                                  out=str(root / spec["model"]))))


def save_small_keras(path: Path) -> Path:
    """A small Keras classifier (32x32x3 -> 10 logits, two convolutions) saved at ``path``."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))
    model.save(path)
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real console entry point in-process; return exit code, stdout, stderr."""
    from fcbench.cli import main

    def run(*args: object) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["fcbench", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def converted_file(outcomes, fmt: str) -> Path:
    """The file ``fmt``'s conversion wrote, from ``convert``'s outcomes (objects or their JSON dicts).

    Skips only when the format's exporter is not installed here (status ``skipped``, and its
    exporter really is unavailable), naming it; any other status (``failed``, ``parity-failed``,
    ``skipped`` with the exporter installed) or an ``ok`` without its file fails the test with the reason.
    """
    from fcbench.conversion import exporter_class

    def get(o, key: str):
        return o[key] if isinstance(o, dict) else getattr(o, key)

    found = [o for o in outcomes if get(o, "format") == fmt]
    assert len(found) == 1, f"expected one {fmt} outcome, got {len(found)}: {outcomes}"
    o = found[0]
    status, reason = get(o, "status"), get(o, "reason")
    if status == "skipped":
        installed, why = exporter_class(fmt).available()
        if installed:
            pytest.fail(f"{fmt} conversion skipped although its exporter is installed here: {reason}")
        pytest.skip(f"{fmt} exporter is not installed here: {why}")
    if status != "ok":
        pytest.fail(f"{fmt} conversion {status}: {reason}")
    file = get(o, "file")
    assert file and Path(file).is_file(), f"{fmt} conversion says ok but its file is not there: {o}"
    return Path(file)


def manifest_for(file: Path, like: Path) -> None:
    """Give ``file`` the manifest of ``like``, re-recorded for ``file``'s own bytes (its sha256 and size):
    a manifest that vouches for exactly this file, as tests that bench a deliberately broken or
    rewritten artifact need (a copied manifest alone is refused: its sha256 is another file's)."""
    import json

    from fcbench.artifact import manifest_path, sha256_file

    data = json.loads(manifest_path(like).read_text())
    data.update(file=Path(file).name, sha256=sha256_file(file), size=Path(file).stat().st_size)
    manifest_path(file).write_text(json.dumps(data))


# a recipe's train step of a tiny face model (recipes written by tests)
TINY_TRAIN = """  - train:
      model: r18
      model_options: {width: 0.125, layers: [1, 1, 1, 1], input_size: [32, 32], embedding_size: 16}
      data: synthetic:faces
      data_options: {num_classes: 4, samples_per_class: 8}
      epochs: 1
      batch_size: 8
      out: ${out}
"""


class _CheapTwins:
    @pytest.hookimpl(trylast=True)  # after -m / -k have deselected what they do
    def pytest_collection_modifyitems(self, config, items):
        """A docs page's cheap-examples test is deselected when the session also runs the page's slow test, which
        runs the same commands (and the slow ones between them): CI ran the user guide's cheap commands twice."""
        slow = {i.name.replace("test_docs_examples_run_with_slow_ones[", "test_docs_examples_run[", 1) for i in items
                if i.name.startswith("test_docs_examples_run_with_slow_ones[")}
        twins = [i for i in items if i.name in slow]
        if twins:
            config.hook.pytest_deselected(items=twins)
            items[:] = [i for i in items if i not in twins]


def pytest_configure(config):
    config.pluginmanager.register(_CheapTwins(), "fcbench-cheap-twins")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # two test workers on two cores: one thread of torch (and of OpenMP in the processes tests start) each,
        # or the workers' thread pools fight over the cores; tests that need a count set their own
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
