"""fcbench optimize: the search through the CLI on a tiny model (ONNX Runtime: float, ort-static, a pruned
model), the choice and the frontier as pure functions, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_R18 as R18
from conftest import train_tiny

from fcbench.optimize import Candidate, choose, pareto

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'fcbench[onnx]')")

EVAL = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=50", "--nfolds", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("opt")
    return train_tiny(root, R18)


def test_optimize_measures_every_candidate_and_keeps_the_fastest_within_budget(ckpt, tmp_path, cli):
    pytest.importorskip("torch_pruning", reason="torch-pruning is not installed (pip install 'fcbench[prune]')")
    store = tmp_path / "s.sqlite"
    r = cli("optimize", ckpt, "--backend", "onnxruntime", "--max-drop", "100", *EVAL, "--methods", "ort-static",
            "--prune", "0.5", "--bench-seconds", "0.2", "--out", tmp_path / "opt", "--store", store, "--format", "json")
    assert r.code == 0, r.err
    res = json.loads(r.out)
    names = [c["name"] for c in res["candidates"]]
    # r18 has PReLUs: ONNX Runtime also gets the export with PReLU as Relu + BatchNormalization + Add
    assert {"onnx float default", "onnx float f32", "onnx(prelu=relu-bn) float default", "ort-static",
            "prune 0.5 + onnx float default", "prune 0.5 + onnx(prelu=relu-bn) float default",
            "prune 0.5 + ort-static"} <= set(names), names
    ok = [c for c in res["candidates"] if c["status"] == "ok"]
    assert len(ok) == len(names), [c for c in res["candidates"] if c["status"] != "ok"]
    for c in ok:
        assert c["p50_ms"] > 0 and c["ci_ms"] >= 0 and 0 <= c["metric"] <= 1 and Path(c["artifact"]).is_file()
        assert c["speedup_vs_eager"] == pytest.approx(res["eager_p50_ms"] / c["p50_ms"])
    assert res["chosen"]["p50_ms"] == min(c["p50_ms"] for c in ok)  # budget 100: the fastest of all
    by_name = {c["name"]: c for c in ok}
    plain, relu_bn = by_name["onnx float default"], by_name["onnx(prelu=relu-bn) float default"]
    assert abs(plain["metric"] - relu_bn["metric"]) <= 0.02  # the same arithmetic (one pair of 50 at most)
    assert any(c["pareto"] for c in ok)  # both exports are uncompressed: the faster one is the reference
    assert res["fastest_uncompressed"]["name"] == min((plain, relu_bn), key=lambda c: c["p50_ms"])["name"]
    import fcbench

    rows = fcbench.Store(store).query(kind="speed")
    assert len(rows) == len(ok) + 1  # every candidate and eager PyTorch
    quality = fcbench.Store(store).query(kind="quality", metric="accuracy")
    assert len(quality) >= len(ok)
    r = cli("optimize", ckpt, "--backend", "onnxruntime", "--max-drop", "100", *EVAL, "--methods", "ort-static",
            "--bench-seconds", "0.2", "--out", tmp_path / "opt2", "--store", store)
    assert r.code == 0, r.err
    assert "chosen:" in r.out and "x eager PyTorch" in r.out


def _c(name, p50, drop, status="ok"):
    return Candidate(name, "b", p50_ms=p50, metric=1 - drop / 100, drop=drop, status=status)


def test_a_drop_equal_to_the_budget_fits():
    """100 * (0.92 - 0.91) is 1.0000000000000009 in floating point; shown as 1.00, it is within --max-drop 1."""
    at = Candidate("at", "b", p50_ms=1.0, metric=0.91, drop=100 * (0.92 - 0.91))
    over = Candidate("over", "b", p50_ms=0.5, metric=0.909, drop=100 * (0.92 - 0.909))
    assert at.drop > 1.0 and choose([at, over], 1.0) == (at, None)


def test_choice_frontier_and_closest():
    cands = [_c("a", 1.0, 0.0), _c("b", 0.5, 0.8), _c("c", 0.4, 3.0), _c("d", 0.6, 1.0), _c("e", 0.1, 0, "failed")]
    chosen, closest = choose(cands, 1.0)
    assert chosen.name == "b" and closest is None
    assert [c.name for c in pareto(cands)] == ["c", "b", "a"]
    chosen, closest = choose([_c("x", 0.5, 2.0), _c("y", 0.3, 1.5)], 1.0)
    assert chosen is None and closest.name == "y"
    from fcbench.optimize import OptimizeResult

    res = OptimizeResult("m.pt", "accuracy", 1.0, 0.9, 2.0, closest=closest)
    (line,) = res.failures()
    assert "closest: y" in line and "1.50 points" in line and "0.50 over" in line


@pytest.mark.parametrize("args,expect", [
    (["--max-drop", "1", *EVAL], "--backend is required"),
    (["--backend", "onnxruntime", *EVAL], "--max-drop is required"),
    (["--backend", "onnxruntim", "--max-drop", "1", *EVAL], "did you mean"),
    (["--backend", "onnxruntime", "--max-drop", "1", "--prune", "1.5", *EVAL], "(0, 1)"),
    (["--backend", "onnxruntime", "--max-drop", "1", "--prune", "0.5", "--finetune-epochs", "1", *EVAL],
     "--train-data"),
    (["--backend", "onnxruntime", "--max-drop", "1", "--prune", "0.5", "--finetune-distill", "embedding-mse", *EVAL],
     "give --finetune-epochs too"),
    (["--backend", "onnxruntime", "--max-drop", "-1", *EVAL], "--max-drop"),
    (["--backend", "onnxruntime", "--max-drop", "1", "--methods", "ort-statik", *EVAL], "did you mean"),
])
def test_bad_input_is_one_line_exit_2(ckpt, tmp_path, cli, args, expect):
    r = cli("optimize", ckpt, *args, "--out", tmp_path / "o", "--store", tmp_path / "s.sqlite")
    assert r.code == 2, (r.out, r.err)
    assert expect in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.sqlite").exists()
