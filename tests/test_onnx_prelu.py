"""convert --to onnx --opt onnx.prelu=relu-bn: each per-channel PRelu written as Relu + BatchNormalization + Add,
the same arithmetic, which ONNX Runtime's CPU provider keeps in its NCHWc layout (no reorder around each PReLU)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'fcbench[onnx]')")


def _ops(path: Path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _ort(path: Path, level: str, optimized: Path | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = 1
    if optimized is not None:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_prelu_relu_bn_is_the_same_model_without_prelu(cli, in_tmp) -> None:
    import torch

    from fcbench.artifact import read_manifest
    from fcbench.models import create
    from fcbench.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create("r18", width=0.25, layers=[1, 1, 1, 1], input_size=[32, 32])
    prelus = [m for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    with torch.no_grad():  # slopes of every sign and size, not the 0.25 they start at
        for m in prelus:
            m.weight.copy_(torch.empty_like(m.weight).uniform_(-1.5, 1.5))
    save_checkpoint(in_tmp / "m" / "model.pt", model)
    r = cli("convert", in_tmp / "m" / "model.pt", "--to", "onnx", "--opt", "onnx.prelu=keep", "--out", in_tmp / "keep",
            "--format", "json")
    assert r.code == 0, r.err
    (outcome,) = json.loads(r.out)
    assert outcome["status"] == "ok" and outcome["parity"]["ok"], outcome
    import fcbench  # the Python API: convert's per-format options are its keyword options=

    (made,) = fcbench.convert(checkpoint=str(in_tmp / "m" / "model.pt"), to=["onnx"], out=str(in_tmp / "relu-bn"),
                              options={"onnx": {"prelu": "relu-bn"}}).outcomes
    assert made.status == "ok" and made.parity["ok"], made
    files = {"keep": in_tmp / "keep" / "model.onnx", "relu-bn": in_tmp / "relu-bn" / "model.onnx"}
    keep, rewritten = _ops(files["keep"]), _ops(files["relu-bn"])
    assert keep["PRelu"] == len(prelus) > 0 and rewritten["PRelu"] == 0
    assert rewritten["BatchNormalization"] == keep["BatchNormalization"] + 2 * len(prelus)
    extra = read_manifest(files["relu-bn"]).extra
    assert (extra["prelu_rewritten"], extra["prelu_left"]) == (len(prelus), 0)
    assert read_manifest(files["relu-bn"]).lineage[-1].options["prelu"] == "relu-bn"
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    out = {k: _ort(f, "ORT_DISABLE_ALL").run(None, {"input": x})[0] for k, f in files.items()}
    np.testing.assert_allclose(out["relu-bn"], out["keep"], rtol=1e-5, atol=1e-5 * np.abs(out["keep"]).max())
    # ONNX Runtime's optimised graphs: where it lays convolutions out in NCHWc (x86 with AVX2 or AVX-512), each
    # PRelu sits between a ReorderOutput and a ReorderInput; the rewritten model needs none of those pairs
    reorders = {}
    for k, f in files.items():
        _ort(f, "ORT_ENABLE_ALL", in_tmp / f"{k}.opt.onnx")
        ops = _ops(in_tmp / f"{k}.opt.onnx")
        reorders[k] = ops["ReorderInput"] + ops["ReorderOutput"]
    if reorders["keep"]:
        assert reorders["relu-bn"] < reorders["keep"] and reorders["relu-bn"] <= 2, reorders


def test_prelu_option_is_checked(cli, in_tmp) -> None:
    r = cli("convert", "nowhere.pt", "--to", "onnx", "--opt", "onnx.prelu=fused")
    assert r.code == 2 and "prelu" in r.err and "relu-bn" in r.err and len(r.err.strip().splitlines()) == 1, r.err
