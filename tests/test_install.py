"""fcbench as a user installs it: a wheel, non-editable, in a fresh venv, run from outside the source tree.

Nothing is downloaded: the wheel is built without build isolation, installed with --no-deps, and
the fresh venv sees this test environment's dependencies (torch, onnxruntime, ...) through a
.pth file written after the install. The test environment has fcbench installed editable; the
fresh venv must import fcbench, its package data and its entry points from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BUILTIN_PROFILES = sorted(p.name for p in (REPO / "fcbench" / "backends" / "profiles").glob("*.toml"))


def _under(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def _dependency_paths() -> list[str]:
    """This interpreter's import folders a fresh venv needs for fcbench's dependencies: every
    sys.path folder except the standard library (the venv has its own) and the source tree (a
    site-packages inside the checkout, such as ./.venv's, is a dependency folder, not source).
    Folders are added as plain paths, so their .pth files (the editable fcbench's finder among
    them) are not run in the fresh venv."""
    stdlib = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")}
    out = []
    for p in sys.path:
        if not p or not Path(p).is_dir():
            continue
        resolved = Path(p).resolve()
        if _under(resolved, REPO) and resolved.name not in ("site-packages", "dist-packages"):
            continue  # the source tree (a venv inside the checkout, as README's set-up makes, is kept)
        in_stdlib = any(resolved == s or resolved.is_relative_to(s) for s in stdlib)
        if in_stdlib and resolved.name not in ("site-packages", "dist-packages"):
            continue
        if str(resolved) not in out:
            out.append(str(resolved))
    return out


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "FCBENCH_BACKENDS", "FCBENCH_DEVICES",
                        "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(argv: list, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (f"{[str(a) for a in argv[:3]]} exit {p.returncode}\n"
                               f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def _start_wheel_build(tmp: Path) -> tuple[subprocess.Popen, Path]:
    """Start building a wheel of this repo, from a copy so the source tree gets no build/ or egg-info."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg", "setup.py"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "fcbench", src / "fcbench",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp / "dist"
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
            "--disable-pip-version-check", "-q", "-w", str(dist), str(src)]
    proc = subprocess.Popen(argv, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, dist


def _finish_wheel_build(proc: subprocess.Popen, dist: Path) -> Path:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"pip wheel exit {proc.returncode}:\n{out[-3000:]}"
    wheels = list(dist.glob("fcbench-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _tiny_onnx(folder: Path) -> Path:
    """A tiny r18 checkpoint converted to ONNX with its manifest, made by the test interpreter."""
    from fcbench.conversion import convert
    from fcbench.models import create
    from fcbench.training.checkpoint import save_checkpoint

    folder.mkdir()
    model = create("r18", width=0.125, layers=[1, 1, 1, 1], input_size=[32, 32], embedding_size=16).eval()
    save_checkpoint(folder / "model.pt", model)
    (outcome,) = convert(folder / "model.pt", ["onnx"])
    assert outcome.status == "ok", outcome.reason
    assert Path(str(outcome.file) + ".manifest.json").is_file()
    return Path(outcome.file)


def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    build = _start_wheel_build(tmp_path)
    try:  # the artifact is made by this (editable) interpreter while the wheel builds
        onnx = _tiny_onnx(tmp_path / "artifact")
    finally:
        wheel = _finish_wheel_build(*build)

    # the wheel carries the built-in profiles as package data
    names = zipfile.ZipFile(wheel).namelist()
    assert BUILTIN_PROFILES and "ort-cpu.toml" in BUILTIN_PROFILES
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("fcbench/backends/profiles/")) == BUILTIN_PROFILES
    assert not any(n.startswith(("tests/", "backends/")) for n in names)

    # a fresh venv; the wheel goes in before the dependencies become visible, so pip never sees
    # (let alone touches) the editable fcbench of this environment
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=dict(os.environ))
    vpy = venv / "bin" / "python"
    env = _clean_env(venv)
    _run([sys.executable, "-m", "pip", "--python", vpy, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", wheel], cwd=tmp_path, env=env)
    site = Path(_run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env).stdout.strip())
    assert (site / "fcbench" / "backends" / "profiles" / "ort-cpu.toml").is_file()
    deps = _dependency_paths()
    assert deps, sys.path
    (site / "zz_fcbench_test_deps.pth").write_text("\n".join(deps) + "\n")

    work = tmp_path / "elsewhere"  # the user's working folder: no ./backends, not the repo
    work.mkdir()
    assert not _under(work, REPO)

    # fcbench, its package data, its distribution and its entry points all come from the wheel
    probe = (
        "import json, fcbench, importlib.metadata as md\n"
        "from fcbench.backends import profiles\n"
        "dist = md.distribution('fcbench')\n"
        "eps = md.entry_points(group='fcbench.backends')\n"
        "print(json.dumps({'file': fcbench.__file__, 'dist': str(dist.locate_file('')),\n"
        "  'direct_url': dist.read_text('direct_url.json'),\n"
        "  'ep_dists': sorted({str(ep.dist.locate_file('')) for ep in eps}),\n"
        "  'ep_names': sorted(ep.name for ep in eps),\n"
        "  'script': [ep.value for ep in md.entry_points(group='console_scripts', name='fcbench')],\n"
        "  'profiles': {n: [s.origin, s.profile] for n, s in profiles().items()}}))\n"
    )
    info = json.loads(_run([vpy, "-c", probe], cwd=work, env=env).stdout)
    assert _under(info["file"], site) and not _under(info["file"], REPO), info["file"]
    assert Path(info["dist"]).resolve() == site.resolve(), info["dist"]
    assert info["direct_url"] is None or '"editable": true' not in info["direct_url"].replace(" ", "")
    assert [Path(d).resolve() for d in info["ep_dists"]] == [site.resolve()], info["ep_dists"]
    assert {"onnxruntime", "pytorch"} <= set(info["ep_names"])
    assert info["script"] == ["fcbench.cli:main"]
    assert sorted(f"{n}.toml" for n in info["profiles"]) == BUILTIN_PROFILES
    assert all(o == "builtin" and _under(p, site) for o, p in info["profiles"].values()), info["profiles"]

    # the installed console script: plugins listed and usable
    fcbench_exe = venv / "bin" / "fcbench"
    plugins = json.loads(_run([fcbench_exe, "plugins", "--kind", "backend", "--format", "json"],
                              cwd=work, env=env).stdout)
    by_name = {p["name"]: p for p in plugins}
    assert by_name["onnxruntime"]["available"] and by_name["pytorch"]["available"], by_name
    assert all(p["provider"] == "fcbench" for p in plugins)

    # one real bench cell through a packaged profile name
    r = _run([fcbench_exe, "bench", onnx, "--backend", "ort-cpu", "--runs", "3", "--min-seconds", "0",
              "--warmup", "1", "--threads", "1", "--format", "json", "--store", work / "results.sqlite"],
             cwd=work, env=env)
    (cell,) = json.loads(r.stdout)
    assert cell["status"] == "ok" and cell["backend"] == "ort-cpu", cell
    assert (work / "results.sqlite").is_file()
