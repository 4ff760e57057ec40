from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

BUILTIN_MODELS = {"r18", "r34", "r50", "r100", "mbf", "resnet18", "resnet34", "resnet50", "mobilenet_v1",
                  "mobilenet_v2", "densenet_bc", "alexnet", "alexnet_separable"}


def test_help_imports_no_heavy_runtime():
    code = ("import sys; sys.argv = ['fcbench', '--help']\n"
            "from fcbench.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'openvino', 'cv2', 'onnxruntime', 'executorch')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in p.stdout, p.stdout + p.stderr
    for verb in ("train", "eval", "results", "run", "plugins", "profile"):
        assert verb in p.stdout


def test_plugins_lists_builtins_json(cli):
    r = cli("plugins", "--format", "json")
    assert r.code == 0, r.err
    items = json.loads(r.out)
    assert all({"kind", "name", "available", "reason"} <= set(i) for i in items)
    models = {i["name"] for i in items if i["kind"] == "model"}
    assert BUILTIN_MODELS <= models
    datasets = {i["name"] for i in items if i["kind"] == "dataset"}
    assert {"synthetic", "imagefolder", "insightface-rec", "verification-bin", "cifar10"} <= datasets
    assert {"local"} <= {i["name"] for i in items if i["kind"] == "device"}
    assert all(i["available"] for i in items if i["kind"] in ("model", "dataset"))


def test_plugins_kind_filter_and_table(cli):
    r = cli("plugins", "--kind", "dataset")
    assert r.code == 0 and "synthetic" in r.out and "r18" not in r.out
    r = cli("plugins", "--kind", "modle")
    assert r.code == 2 and "did you mean 'model'" in r.err


def test_profile_reports_params_and_flops(cli):
    r = cli("profile", "resnet18", "--input-size", "224", "--format", "json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["params"] == 11_689_512 and info["flops"] == 2 * info["macs"]
    assert 1.80e9 < info["macs"] < 1.83e9
    r = cli("profile", "r18", "-o", "width=0.25", "--input-size", "56")
    assert r.code == 0 and "GFLOPs" in r.out


@pytest.mark.slow
def test_third_party_plugin_is_discovered(tmp_path):
    """A separately installed package registers a model and a verb via entry points; fcbench lists and builds the
    model, and the verb works as a command and as a recipe step."""
    target = tmp_path / "site"
    source = shutil.copytree(REPO / "tests" / "plugin_example", tmp_path / "src")  # keep the tree clean
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    p = subprocess.run([sys.executable, "-m", "fcbench.cli", "plugins", "--kind", "model", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    items = {i["name"]: i for i in json.loads(p.stdout)}
    assert items["tinynet"]["available"] and items["tinynet"]["provider"] == "fcbench-example-plugin"
    p = subprocess.run([sys.executable, "-m", "fcbench.cli", "profile", "tinynet", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["params"] > 0
    # its verb is a command and a recipe step like fcbench's own
    from fcbench.artifact import Step
    from fcbench.models import create
    from fcbench.training.checkpoint import save_checkpoint

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, create("r18", width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32]),
                    lineage=[Step("init", technique="r18"),
                             Step("train", technique="arcface", parent_sha256="ab" * 32)])
    p = subprocess.run([sys.executable, "-m", "fcbench.cli", "lineage", str(ckpt), "--last", "1", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["steps"] == [{"verb": "train", "technique": "arcface", "parent_sha256": "ab" * 6}]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"steps:\n  - lineage: {{artifact: '{ckpt}'}}\n  - lineage: {{artifact: '{ckpt}', lst: 1}}\n")
    p = subprocess.run([sys.executable, "-m", "fcbench.cli", "run", str(recipe)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 2 and "unknown key 'lst' (did you mean 'last'?)" in p.stderr, p.stderr
    recipe.write_text(f"steps:\n  - lineage: {{artifact: '{ckpt}'}}\n")
    p = subprocess.run([sys.executable, "-m", "fcbench.cli", "run", str(recipe)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0 and "1. init(r18)\n2. train(arcface)" in p.stdout, p.stderr
