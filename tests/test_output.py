"""What the CLI prints: stdout holds data only (runtime chatter goes to the run's log), strings from users
and runtimes show literally in rich output, and a model's options can be listed before anything fails."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_convert_bench_cli import EXOTIC

from fcbench.errors import FcbenchError
from fcbench.models import create
from fcbench.training.checkpoint import save_checkpoint

TINY = dict(width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32], embedding_size=16)
NOISE = ("absl", "oneDNN", "Failed to load", "FutureWarning", "Torch IR graph", "graph(%", "torchvision is not")


def _site(root: Path, module: str, source: str, entry_points: str) -> Path:
    """A plugin package visible through its entry points: a dist-info folder and a module in ``root``."""
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / f"{module}.py").write_text(source)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
    return root


def _fcbench(*args: object, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """The real command in its own process: what a shell's stdout and stderr receive, descriptors included."""
    env = {**os.environ, "COLUMNS": "200"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fcbench.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _log_named(stderr: str, cwd: Path) -> Path:
    m = re.search(r"runtime output.* in\s+(\S+\.log)", " ".join(stderr.split()))
    assert m, f"stderr names no log:\n{stderr}"
    path = Path(m.group(1))
    return path if path.is_absolute() else cwd / path


# --- 9: stdout is data only --------------------------------------------------------------------------------

def test_convert_json_stdout_is_json_and_a_failed_exports_dump_goes_to_the_log(tmp_path):
    """ONNX export of unsupported ops prints the whole TorchScript graph and TensorFlow's import prints absl and
    oneDNN lines, from C++ and Python alike: none of it may reach stdout or the terminal's stderr."""
    site = _site(tmp_path / "site", "exotic_plugin", EXOTIC, "[fcbench.models]\nexotic = exotic_plugin:exotic\n")
    ckpt = tmp_path / "exotic" / "model.pt"
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from fcbench.models import create; from fcbench.training.checkpoint import save_checkpoint; "
                    "save_checkpoint(sys.argv[2], create('exotic'))", str(site), str(ckpt)], check=True)
    p = _fcbench("convert", ckpt, "--to", "onnx,tflite", "--format", "json", cwd=tmp_path, pythonpath=site)
    assert p.returncode == 1, p.stderr
    outcomes = json.loads(p.stdout)  # the whole of stdout, nothing before or after the data
    assert [o["format"] for o in outcomes] == ["onnx", "tflite"]
    assert all(o["status"] == "failed" for o in outcomes), outcomes
    for noise in NOISE:
        assert noise not in p.stdout and noise not in p.stderr, f"{noise!r} reached the terminal:\n{p.stderr}"
    assert "onnx: failed" in p.stderr  # fcbench's own lines still reach the terminal
    log = _log_named(p.stderr, tmp_path)
    assert log.parent == tmp_path / "results" / "logs", log
    text = log.read_text()
    assert "Torch IR graph" in text and "aten::logcumsumexp" in text, text[:2000]


def test_convert_and_bench_of_a_good_model_print_json_alone(tmp_path):
    ckpt = tmp_path / "tiny" / "model.pt"
    save_checkpoint(ckpt, create("r18", **TINY))
    p = _fcbench("convert", ckpt, "--to", "onnx", "--format", "json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (o,) = json.loads(p.stdout)
    assert o["status"] == "ok" and Path(o["file"]).is_file()
    for noise in NOISE:
        assert noise not in p.stderr, p.stderr
    onnx = o["file"]
    store = tmp_path / "elsewhere" / "s.sqlite"
    p = _fcbench("bench", onnx, "--backend", "ort-cpu", "--runs", "3", "--warmup", "1", "--min-seconds", "0",
                 "--store", store, "--format", "json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (cell,) = json.loads(p.stdout)
    assert cell["status"] == "ok" and cell["p50_ms"] > 0


def test_chatter_during_a_verb_goes_to_the_log_not_stdout(cli, in_tmp, monkeypatch):
    """In-process too: a library's print() and a runtime's writes to descriptors 1 and 2 land in the log."""
    import fcbench.benchmark.run
    import fcbench.models

    real = fcbench.models.profile

    def chatty(*args, **kwargs):
        print("chatter from a library")
        os.write(1, b"C-level chatter on fd 1\n")
        os.write(2, b"C-level chatter on fd 2\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(fcbench.models, "profile", chatty)
    r = cli("profile", "r18", "-o", "width=0.125", "--input-size", "32", "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["model"] == "r18"
    assert "chatter" not in r.err
    text = _log_named(r.err, in_tmp).read_text()
    for line in ("chatter from a library", "C-level chatter on fd 1", "C-level chatter on fd 2"):
        assert line in text, text

    def chatty_bench(*args, **kwargs):
        os.write(1, b"chatter while benching\n")
        return real_bench(*args, **kwargs)

    from fcbench.conversion import convert

    save_checkpoint(in_tmp / "tiny" / "model.pt", create("r18", **TINY))
    (onnx,) = convert(in_tmp / "tiny" / "model.pt", ["onnx"])
    real_bench = fcbench.benchmark.run.bench
    monkeypatch.setattr(fcbench.benchmark.run, "bench", chatty_bench)
    store = in_tmp / "elsewhere" / "s.sqlite"
    r = cli("bench", onnx.file, "--backend", "ort-cpu", "--runs", "3", "--warmup", "1", "--min-seconds", "0",
            "--in-process", "--store", store, "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)[0]["status"] == "ok"
    log = _log_named(r.err, in_tmp)  # beside the store given
    assert log.parent == store.parent / "logs" and "chatter while benching" in log.read_text()

    def chatty_then_bad_input(*args, **kwargs):
        os.write(2, b"C-level chatter before the error\n")
        raise FcbenchError("profile: something about the input; fix it like this")

    monkeypatch.setattr(fcbench.models, "profile", chatty_then_bad_input)
    r = cli("profile", "r18", "-o", "width=0.125", "--input-size", "32")
    assert r.code == 2 and r.err.strip().splitlines() == ["fcbench: error: profile: something about the input; "
                                                          "fix it like this"], r.err  # bad input: still one line


# --- 10: strings from users and runtimes show literally ----------------------------------------------------

NEEDS_EXTRA = '''
from fcbench.backends.base import Backend


class NeedsExtra(Backend):
    name = "needs-extra"
    formats = ("onnx",)
    module = "fcbench_absent_runtime"
    install_hint = "pip install 'fcbench[openvino]'"
'''


@pytest.fixture
def unavailable_backend(tmp_path, monkeypatch):
    site = _site(tmp_path / "site", "needs_extra", NEEDS_EXTRA,
                 "[fcbench.backends]\nneeds-extra = needs_extra:NeedsExtra\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("needs_extra", None)


def test_plugins_table_shows_the_install_hint_with_its_brackets(cli, unavailable_backend):
    r = cli("plugins", "--kind", "backend")
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if "needs-extra" in line)
    assert "pip install 'fcbench[openvino]'" in row, r.out
    r = cli("plugins", "--kind", "backend", "--format", "json")
    (info,) = [i for i in json.loads(r.out) if i["name"] == "needs-extra"]
    assert not info["available"] and "fcbench[openvino]" in info["reason"]


def test_a_path_with_markup_shows_literally_in_tables_and_log_lines(cli, in_tmp):
    folder = in_tmp / "[red]run"
    ckpt = folder / "[bold]m.pt"
    save_checkpoint(ckpt, create("r18", **TINY))
    r = cli("convert", ckpt, "--to", "onnx")
    assert r.code == 0, r.err
    assert "[red]run" in r.out and "[bold]m.pt" in r.out, r.out  # the table's title and file column
    (onnx,) = folder.glob("*.onnx")
    r = cli("bench", onnx, "--backend", "ort-cpu", "--runs", "3", "--warmup", "1", "--min-seconds", "0",
            "--in-process")
    assert r.code == 0, r.err
    assert f"{onnx.name}: p50" in " ".join(r.err.split()), r.err  # the per-cell log line
    assert onnx.name in r.out, r.out
    copy = folder / "[red]copy.onnx"  # no manifest: the 'assumed' line names it too
    copy.write_bytes(onnx.read_bytes())
    r = cli("bench", copy, "--backend", "ort-cpu", "--runs", "3", "--warmup", "1", "--min-seconds", "0",
            "--infer-manifest", "--in-process")
    assert r.code == 0, r.err
    err = " ".join(r.err.split())
    assert "[red]copy.onnx: no manifest; assumed" in err and "[red]copy.onnx: p50" in err, r.err
    assert "[red]copy.onnx" in r.out, r.out


# --- 13: a model's options before anything fails -----------------------------------------------------------

def test_plugins_verbose_lists_task_input_size_and_options_with_defaults(cli):
    r = cli("plugins", "--kind", "model", "--verbose", "--format", "json")
    assert r.code == 0, r.err
    models = {i["name"]: i["details"] for i in json.loads(r.out)}
    assert models["r18"]["task"] == "embedding" and models["r18"]["input_size"] == [112, 112]
    assert models["r18"]["options"]["embedding_size"] == 512 and models["r18"]["options"]["width"] == 1.0
    assert models["resnet18"]["task"] == "classification" and models["resnet18"]["input_size"] == [224, 224]
    assert models["resnet18"]["options"]["num_classes"] == 1000
    r = cli("plugins", "--kind", "model", "-v")
    row = " ".join(next(line for line in r.out.splitlines() if "│ r18 " in line).split())
    assert "embedding, input 112x112" in row and "embedding_size=512" in row, r.out
    r = cli("plugins", "--kind", "dataset", "--verbose")
    assert "samples_per_class=32" in r.out
    r = cli("plugins", "--kind", "model")  # without --verbose: the short listing
    assert "embedding_size" not in r.out


def test_an_unknown_model_option_points_at_the_listing_and_profile_shows_options(cli):
    r = cli("profile", "r18", "-o", "widht=0.25")
    assert r.code == 2 and "did you mean 'width'" in r.err and "plugins --kind model --verbose" in r.err
    r = cli("profile", "r18", "-o", "width=0.125", "--input-size", "32")
    assert r.code == 0 and "options: width=0.125" in r.out and "embedding_size=512" in r.out
    r = cli("profile", "--help")
    assert "plugins --kind model --verbose" in " ".join(r.out.split())
