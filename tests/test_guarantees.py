"""The promises docs/guarantees.md makes about interruption and concurrent writers, each tried for real:
separate processes, SIGKILL, the real store file. (Bad-input promises are tested beside each verb.)"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--model", "r18", "-o", "width=0.125", "-o", "layers=[1,1,1,1]", "-o", "input_size=[32,32]",
        "-o", "embedding_size=16", "--data", "synthetic:faces", "--data-opt", "num_classes=4",
        "--data-opt", "samples_per_class=8", "--batch-size", "8", "--lr", "0.01", "--seed", "3"]


def _fcbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "fcbench.cli", *args]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "COLUMNS": "200"}


def _wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _count(store: Path, where: str = "1=1") -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=5) as db:
            return db.execute(f"SELECT COUNT(*) FROM results WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0


_WRITER = """
import sys
from fcbench.results.store import Row, Store
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.add_many([Row(kind="speed", run_id=sys.argv[2], model=f"m{i}", p50_ms=float(i))])
store.close()
"""


def test_concurrent_writers_lose_no_row(tmp_path):
    """Guarantee: two processes writing one store at once lose nothing and corrupt nothing."""
    store = tmp_path / "s.sqlite"
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(store), f"w{k}", str(n)], env=_env(tmp_path),
                              stderr=subprocess.PIPE, text=True) for k in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        got = dict(db.execute("SELECT run_id, COUNT(DISTINCT model) FROM results GROUP BY run_id").fetchall())
    assert got == {f"w{k}": n for k in range(3)}


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from fcbench.conversion import exporter_class

    ok, why = exporter_class("onnx").available()
    if not ok:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("g")
    env = _env(root)
    r = subprocess.run(_fcbench("train", *TINY, "--epochs", "1", "--max-steps", "2", "--out", str(root / "run")),
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(_fcbench("convert", str(root / "run" / "model.pt"), "--to", "onnx", "--format", "json"),
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return root / "run" / "model.onnx"


@pytest.mark.slow
def test_sigkill_mid_bench_keeps_every_row_already_measured(onnx_model, tmp_path):
    """Guarantee: a bench killed with SIGKILL between cells keeps every cell it finished, whole, and the
    store stays readable; a rerun appends to it."""
    from fcbench.backends import get_backend

    ok, why = get_backend("onnxruntime").available()
    if not ok:
        pytest.skip(why)
    store = tmp_path / "s.sqlite"
    cmd = _fcbench("bench", str(onnx_model), "--backend", "ort-cpu,openvino-f32,openvino-latency,ort-xnnpack",
                   "--warmup", "1", "--runs", "3", "--min-seconds", "2", "--threads", "1", "--store", str(store))
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _count(store, "kind='speed'") >= 1, proc, 300, "the first stored row")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT backend, p50_ms, samples_ms, artifact_sha256 FROM results "
                          "WHERE kind='speed'").fetchall()
    assert 1 <= len(rows) < 4, rows  # killed mid-matrix: some, not all
    for backend, p50, samples, sha in rows:
        assert p50 and p50 > 0 and len(json.loads(samples)) >= 3 and len(sha) == 64, (backend, p50, samples)
    r = subprocess.run(_fcbench("results", "--store", str(store), "--format", "json"), env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len([x for x in json.loads(r.stdout) if x["kind"] == "speed"]) == len(rows)


@pytest.mark.slow
def test_sigkill_mid_train_then_resume_gives_the_uninterrupted_model(tmp_path):
    """Guarantee: a training run killed with SIGKILL keeps every epoch checkpoint it finished, whole, and
    `--resume auto` ends with the same weights as a run never interrupted."""
    import torch

    from fcbench.training.checkpoint import load_checkpoint

    env = _env(tmp_path)
    straight = subprocess.run(_fcbench("train", *TINY, "--epochs", "3", "--out", str(tmp_path / "a")), env=env,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    killed = tmp_path / "b"
    proc = subprocess.Popen(_fcbench("train", *TINY, "--epochs", "3", "--out", str(killed)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (killed / "epoch-001.pt").exists(), proc, 300, "the first epoch checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "model.pt").exists() or proc.returncode == 0  # killed before the end (or raced it)
    resumed = subprocess.run(_fcbench("train", *TINY, "--epochs", "3", "--out", str(killed), "--resume", "auto"),
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "a" / "model.pt").state_dict
    b = load_checkpoint(killed / "model.pt").state_dict
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
