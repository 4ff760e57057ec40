"""Techniques: the plugin contract, apply_technique, checkpoints of pruned models, lineage walking.

A tiny r18 is trained once; a channel-pruning technique defined here (torch_pruning) and the
third-party ``round-weights`` plugin of tests/technique_plugin_example are applied to it, and
the results go through the real eval and convert verbs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import torch

from fcbench.artifact import Step, read_manifest, sha256_file
from fcbench.errors import FcbenchError
from fcbench.lineage import float_parent
from fcbench.results.store import Store
from fcbench.techniques import TechniqueContext, apply_technique, parse_options
from fcbench.techniques.base import Technique
from fcbench.training.checkpoint import load_checkpoint, save_checkpoint
from fcbench.training.config import TrainConfig
from fcbench.training.loop import train

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SRC = REPO / "tests" / "technique_plugin_example"
R18 = dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                       "embedding_size": 16},
           data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4})
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=40", "--nfolds", "2", "--threads", "2"]


class _EntryPoint:
    """Stands in for an installed package's entry point (the slow test installs a real one)."""

    def __init__(self, obj, dist: str = "tests") -> None:
        self.obj, self.value = obj, f"{obj.__module__}:{obj.__qualname__}"
        self.dist = types.SimpleNamespace(name=dist)

    def load(self):
        return self.obj


@pytest.fixture
def techniques(monkeypatch):
    """Register technique classes for one test: ``techniques["name"] = cls``."""
    from fcbench import plugins

    extra: dict[str, type] = {}
    original = plugins.entry_points

    def entry_points(kind: str):
        found = original(kind)
        if kind == "technique":
            found = {**found, **{name: _EntryPoint(cls) for name, cls in extra.items()}}
        return found

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    return extra


def _round_weights(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_SRC))
    from fcbench_round_weights import RoundWeights

    return RoundWeights


class ChannelPrune(Technique):
    """Structured L2-magnitude channel pruning with torch_pruning (the fc output and the final
    BatchNorm1d keep the embedding size)."""

    name = "test-prune"
    verb = "prune"

    @dataclass
    class Options:
        ratio: float = 0.3

    def apply(self, checkpoint, options, context):
        model = prune_channels(checkpoint.build_model(), options.ratio)
        return checkpoint.with_model(model)


def prune_channels(model: torch.nn.Module, ratio: float) -> torch.nn.Module:
    tp = pytest.importorskip("torch_pruning")
    example = torch.randn(1, 3, *model.preprocessing.size)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=[model.fc, model.features])
    pruner.step()
    return model


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny r18 trained for one epoch: model.pt with a train lineage and an ArcFace head."""
    root = tmp_path_factory.mktemp("tech")
    return Path(train(TrainConfig(**R18, epochs=1, batch_size=8, lr=0.01, out=str(root / "run"))))


# --- options -------------------------------------------------------------------------------------

class _Typed(Technique):
    name = "typed"

    @dataclass
    class Options:
        ratio: float = 0.5
        steps: int = 10
        per_channel: bool = True
        mode: Literal["l1", "l2"] = "l2"
        skip: list[str] = field(default_factory=list)
        bits: int | None = None


def test_options_are_typed_and_unknown_keys_named():
    o = parse_options(_Typed, {"ratio": "0.25", "steps": "3", "per_channel": "false", "mode": "l1",
                               "skip": "fc,features", "bits": "none"})
    assert (o.ratio, o.steps, o.per_channel, o.mode, o.skip, o.bits) == (0.25, 3, False, "l1", ["fc", "features"], None)
    assert parse_options(_Typed, {"steps": 4.0, "bits": 8}).steps == 4
    with pytest.raises(FcbenchError) as e:
        parse_options(_Typed, {"stepz": 3})
    msg = str(e.value)
    assert "'stepz'" in msg and "did you mean 'steps'" in msg and "bits, mode, per_channel, ratio, skip, steps" in msg
    for key, bad, want in (("steps", "many", "an integer"), ("steps", 2.5, "an integer"), ("ratio", True, "a number"),
                           ("mode", "l3", "one of 'l1', 'l2'"), ("per_channel", "maybe", "true or false")):
        with pytest.raises(FcbenchError) as e:
            parse_options(_Typed, {key: bad})
        assert f"option '{key}' must be {want}" in str(e.value) and repr(bad) in str(e.value)


def test_round_weights_options(monkeypatch):
    rw = _round_weights(monkeypatch)
    assert parse_options(rw, {}).decimals == 2
    with pytest.raises(FcbenchError, match="did you mean 'decimals'"):
        parse_options(rw, {"decimal": 3})
    with pytest.raises(FcbenchError, match="decimals must be >= 0"):
        parse_options(rw, {"decimals": -1})


# --- checkpoints of a changed architecture -----------------------------------------------------

def test_pruned_checkpoint_loads_again_without_arguments(base, tmp_path):
    ckpt = load_checkpoint(base)
    assert ckpt.structure is None  # an unchanged model records none: old checkpoints look the same
    model = prune_channels(ckpt.build_model(), 0.3)
    assert model.layer1[0].conv1.out_channels < 16 and model.fc.in_features < 64 * 4
    save_checkpoint(tmp_path / "pruned.pt", model, lineage=[Step("prune", technique="l2")])
    payload = torch.load(tmp_path / "pruned.pt", map_location="cpu", weights_only=True)  # no pickled modules
    kinds = {e["type"] for e in payload["structure"]}
    assert {"Conv2d", "BatchNorm2d", "PReLU", "Linear"} <= kinds
    rebuilt = load_checkpoint(tmp_path / "pruned.pt").build_model()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), rebuilt(x), atol=1e-5)
    assert _params(rebuilt) == _params(model) < 0.8 * _params(ckpt.build_model())
    conv = rebuilt.layer2[0].conv1
    assert (conv.in_channels, conv.out_channels) == tuple(conv.weight.shape[1::-1])


def test_structure_refuses_what_it_cannot_express(base, tmp_path):
    model = load_checkpoint(base).build_model()
    model.layer1[0].prelu = torch.nn.ReLU()  # a module of another class
    with pytest.raises(FcbenchError, match="another class.*layer1.0.prelu"):
        save_checkpoint(tmp_path / "x.pt", model)
    assert not (tmp_path / "x.pt").exists()


# --- apply_technique, eval, convert, lineage ----------------------------------------------------

def test_prune_technique_then_eval_convert_and_float_parent(base, techniques, cli, tmp_path):
    techniques["test-prune"] = ChannelPrune
    seen = []
    res = apply_technique(base, "test-prune", {"ratio": "0.3"}, tmp_path / "pruned.pt",
                          context=TechniqueContext(progress=lambda m, f: seen.append(m)))
    assert res.output == tmp_path / "pruned.pt" and res.verb == "prune" and res.options == {"ratio": 0.3}
    assert res.params_after < 0.8 * res.params_before and res.parent_sha256 == sha256_file(base)
    m = read_manifest(res.output)
    assert m.sha256 == sha256_file(res.output) == res.sha256 and m.params == res.params_after
    assert [s.verb for s in m.lineage] == ["train", "prune"] and res.lineage == "train(arcface) > prune(test-prune)"
    step = m.lineage[-1]
    assert step.technique == "test-prune" and step.parent_sha256 == sha256_file(base)
    assert (res.output.parent / step.options["parent_file"]).resolve() == base.resolve()
    assert load_checkpoint(res.output).head["embedding_size"] == 16  # the head still fits: kept for fine-tuning
    assert float_parent(res.output, m) == (base, "")  # a pruned checkpoint's float parent: what it was pruned from
    (row,) = res.to_rows()
    assert row.kind == "compress" and row.value == res.params_after and row.extra["params_before"] == res.params_before

    store = tmp_path / "s.sqlite"
    r = cli("eval", res.output, *PAIRS, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    assert 0.0 <= json.loads(r.out)["metrics"]["accuracy"] <= 1.0
    with Store(store) as s:
        assert {row["lineage"] for row in s.query(kind="quality")} == {"train(arcface) > prune(test-prune)"}

    pytest.importorskip("onnxruntime")
    r = cli("convert", res.output, "--to", "onnx", "--out", tmp_path / "onnx", "--format", "json")
    assert r.code == 0, r.err
    (outcome,) = json.loads(r.out)
    assert outcome["status"] == "ok" and outcome["parity"]["ok"] is True, outcome
    onnx = Path(outcome["file"])
    assert float_parent(onnx, read_manifest(onnx)) == (res.output, "")  # the pruned checkpoint, not model.pt

    # an artifact quantized after conversion: its float parent is the checkpoint the ONNX came from
    q = tmp_path / "q" / "pruned-int8.onnx"
    q.parent.mkdir()
    shutil.copy(onnx, q)
    qm = read_manifest(onnx)
    qm.lineage.append(Step("quantize", technique="test", parent_sha256=qm.sha256,
                           options={"parent_file": os.path.relpath(onnx, q.parent)}))
    assert float_parent(q, qm) == (res.output, "")

    # the chain breaks where a file moved or changed, and says which
    saved = res.output.read_bytes()
    res.output.rename(tmp_path / "elsewhere.pt")
    parent, why = float_parent(q, qm)
    assert parent is None and "pruned.pt" in why and "not there" in why
    shutil.copy(base, res.output)  # another checkpoint under the same name
    parent, why = float_parent(onnx, read_manifest(onnx))
    assert parent is None and "sha256 differs" in why
    res.output.write_bytes(saved)
    r = cli("eval", onnx, *PAIRS, "--store", store, "--format", "json")
    assert r.code == 0, r.err
    assert set(json.loads(r.out)["delta"]) >= {"accuracy"}  # eval found the float parent through the lineage


def test_quantized_checkpoint_is_walked_through(base, techniques, monkeypatch, tmp_path):
    rw = _round_weights(monkeypatch)

    class FakeQuant(rw):
        name = "test-fake-quant"
        verb = "quantize"

    techniques["test-fake-quant"] = FakeQuant
    res = apply_technique(base, "test-fake-quant", {"decimals": 1}, tmp_path / "q.pt")
    # a quantized checkpoint is no float parent: a file made from it walks through it to model.pt
    (tmp_path / "copy").mkdir()
    child = tmp_path / "copy" / "child.pt"
    shutil.copy(res.output, child)
    cm = read_manifest(res.output)
    cm.lineage.append(Step("compress", technique="copy", parent_sha256=res.sha256,
                           options={"parent_file": "../q.pt"}))
    assert float_parent(child, cm) == (base, "")
    parent, why = float_parent(base, read_manifest(base))
    assert parent is None and "train(arcface)" in why and "names no parent file" in why


def test_apply_technique_errors(base, techniques, monkeypatch, tmp_path):
    techniques["round-weights"] = _round_weights(monkeypatch)
    with pytest.raises(FcbenchError, match="did you mean 'round-weights'"):
        apply_technique(base, "round-weight", {}, tmp_path / "o.pt")
    with pytest.raises(FcbenchError, match="no option 'digits'.*valid options: decimals"):
        apply_technique(base, "round-weights", {"digits": 1}, tmp_path / "o.pt")
    with pytest.raises(FcbenchError, match="is the input"):
        apply_technique(base, "round-weights", {}, base)

    class Broken(Technique):
        name, verb = "broken", "prune"

        def apply(self, checkpoint, options, context):
            raise RuntimeError("kernel exploded\nsecond line")

    class Wrong(Technique):
        name = "wrong"

        def apply(self, checkpoint, options, context):
            return checkpoint.build_model()

    techniques.update(broken=Broken, wrong=Wrong)
    with pytest.raises(FcbenchError) as e:
        apply_technique(base, "broken", {}, tmp_path / "o.pt")
    assert e.value.exit_code == 1 and str(e.value).endswith("RuntimeError: kernel exploded")
    with pytest.raises(FcbenchError, match="returned IResNet, not a Checkpoint"):
        apply_technique(base, "wrong", {}, tmp_path / "o.pt")
    with pytest.raises(FcbenchError, match="has no option 'x'.*valid options: none"):
        apply_technique(base, "wrong", {"x": 1}, tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()


def test_round_weights_in_process(base, techniques, monkeypatch, tmp_path):
    techniques["round-weights"] = _round_weights(monkeypatch)
    res = apply_technique(base, "round-weights", {"decimals": 1}, tmp_path / "sub" / "r.pt")
    sd = load_checkpoint(res.output).state_dict
    w = sd["layer1.0.conv1.weight"]
    assert torch.equal(w, torch.round(w, decimals=1)) and not torch.equal(w, load_checkpoint(base).state_dict[
        "layer1.0.conv1.weight"])
    step = read_manifest(res.output).lineage[-1]
    assert (step.verb, step.technique, step.options["decimals"]) == ("compress", "round-weights", 1)
    assert step.options["parent_file"] == os.path.relpath(base, tmp_path / "sub")


# --- a real third-party package --------------------------------------------------------------------

@pytest.mark.slow
def test_third_party_technique_plugin(base, tmp_path):
    """round-weights installed as its own package: listed with its provider, applied through the
    library, and the eval rows of its output name it in their lineage."""
    target = tmp_path / "site"
    source = shutil.copytree(PLUGIN_SRC, tmp_path / "src")  # keep the tree clean
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*args: str) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        return p

    items = {i["name"]: i for i in json.loads(run("-m", "fcbench.cli", "plugins", "--kind", "technique",
                                                  "--format", "json").stdout)}
    assert items["round-weights"]["available"] and items["round-weights"]["provider"] == "fcbench-round-weights"
    out = tmp_path / "rounded.pt"
    store = tmp_path / "s.sqlite"
    done = json.loads(run("-m", "fcbench.cli", "compress", str(base), "--technique", "round-weights", "--opt",
                          "decimals=2", "--out", str(out), "--store", str(store), "--format", "json").stdout)
    assert done["output"] == str(out) and done["options"] == {"decimals": 2}
    w = load_checkpoint(out).state_dict["conv1.weight"]
    assert torch.equal(w, torch.round(w, decimals=2))
    assert read_manifest(out).lineage[-1].technique == "round-weights"
    run("-m", "fcbench.cli", "eval", str(out), *PAIRS, "--store", str(store))
    rows = json.loads(run("-m", "fcbench.cli", "results", "--store", str(store), "--format", "json").stdout)
    assert {r["kind"] for r in rows} == {"compress", "quality"}
    assert {r["lineage"] for r in rows} == {"train(arcface) > compress(round-weights)"}
