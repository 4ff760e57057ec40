"""Where named profiles are found: $FCBENCH_BACKENDS, then ./backends, then the built-in ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fcbench
from fcbench import profiles as profile_files
from fcbench.backends import describe_profiles, profiles, resolve
from fcbench.errors import FcbenchError

BUILTIN = Path(fcbench.__file__).parent / "backends" / "profiles"


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory and no $FCBENCH_BACKENDS / $FCBENCH_DEVICES."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FCBENCH_BACKENDS", raising=False)
    monkeypatch.delenv("FCBENCH_DEVICES", raising=False)
    return tmp_path


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_builtin_profiles_come_from_the_package(cwd):
    found = profiles()
    assert {"ort-cpu", "openvino-f32", "tflite-xnnpack"} <= set(found)
    spec = found["ort-cpu"]
    assert spec.origin == "builtin" and Path(spec.profile) == BUILTIN / "ort-cpu.toml"
    assert (spec.plugin, spec.variant) == ("onnxruntime", "cpu")
    assert sorted(p.stem for p in BUILTIN.glob("*.toml")) == sorted(found)


def test_a_profile_in_cwd_backends_is_found(cwd):
    path = _write(cwd / "backends", "foo", 'plugin = "onnxruntime"\nvariant = "cpu"\n[options]\nthreads_hint = 1\n')
    spec = resolve("foo")
    assert (spec.label, spec.plugin, spec.variant, spec.origin) == ("foo", "onnxruntime", "cpu", "cwd")
    assert spec.options == {"threads_hint": 1} and Path(spec.profile) == path
    assert "ort-cpu" in profiles()  # the built-in ones are still there


def test_a_cwd_override_of_a_builtin_name_wins(cwd):
    path = _write(cwd / "backends", "ort-cpu",
                  'plugin = "onnxruntime"\nvariant = "cpu"\n[options]\ngraph_optimization = "basic"\n')
    spec = resolve("ort-cpu")
    assert spec.origin == "cwd" and spec.options == {"graph_optimization": "basic"} and Path(spec.profile) == path
    row = next(r for r in describe_profiles() if r["name"] == "ort-cpu")
    assert row["origin"] == "cwd" and [Path(p) for p in row["overrides"]] == [BUILTIN / "ort-cpu.toml"]
    assert next(r for r in describe_profiles() if r["name"] == "ort-xnnpack")["overrides"] == []


def test_env_folder_wins_over_cwd_and_builtin(cwd, monkeypatch):
    env = cwd / "elsewhere"
    _write(cwd / "backends", "foo", 'plugin = "onnxruntime"\nvariant = "cpu"\n')
    _write(cwd / "backends", "ort-cpu", 'plugin = "onnxruntime"\nvariant = "cpu"\n')
    _write(env, "foo", 'plugin = "pytorch"\n')
    _write(env, "ort-cpu", 'plugin = "onnxruntime"\nvariant = "cpu"\n[options]\ngraph_optimization = "disable"\n')
    monkeypatch.setenv("FCBENCH_BACKENDS", str(env))
    found = profiles()
    assert (found["foo"].plugin, found["foo"].origin) == ("pytorch", "env")
    assert found["ort-cpu"].origin == "env" and found["ort-cpu"].options == {"graph_optimization": "disable"}
    shadows = profile_files.find("backends")["ort-cpu"].shadows
    assert [Path(p) for p in shadows] == [cwd / "backends" / "ort-cpu.toml", BUILTIN / "ort-cpu.toml"]
    assert resolve("foo").label == "foo" and resolve("foo").plugin == "pytorch"


def test_missing_env_folder_is_ignored_and_named_in_unknown_backend(cwd, monkeypatch):
    monkeypatch.setenv("FCBENCH_BACKENDS", str(cwd / "nope"))
    assert profiles()["ort-cpu"].origin == "builtin"
    with pytest.raises(FcbenchError, match=r"\$FCBENCH_BACKENDS \(.*nope\), \./backends, built-in"):
        resolve("ort-cpuu")


def test_bad_profiles_name_the_file(cwd):
    path = _write(cwd / "backends", "broken", "plugin = \n")
    with pytest.raises(FcbenchError, match=re.escape(f"backend profile {path}: not valid TOML")):
        profiles()
    path.write_text('variant = "cpu"\n')
    with pytest.raises(FcbenchError, match=re.escape(f"backend profile {path}: missing key 'plugin'")):
        profiles()


def test_device_profiles_use_the_same_lookup(cwd, monkeypatch):
    builtin = profile_files.find("devices")
    assert {"localhost", "poco-x3", "rpi4"} <= set(builtin) and {f.origin for f in builtin.values()} == {"builtin"}
    _write(cwd / "devices", "pixel", 'driver = "adb"\n')
    _write(cwd / "devices", "poco-x3", 'driver = "adb"\nserial = "mine"\n')
    _write(cwd / "env-devices", "pixel", 'driver = "ssh"\n')
    found = profile_files.find("devices")
    assert found["pixel"].origin == "cwd" and found["pixel"].read() == {"driver": "adb"}
    assert found["poco-x3"].origin == "cwd" and found["poco-x3"].shadows  # the working dir's file wins
    assert found["rpi4"].origin == "builtin"
    monkeypatch.setenv("FCBENCH_DEVICES", str(cwd / "env-devices"))
    found = profile_files.find("devices")
    assert found["pixel"].origin == "env" and found["pixel"].read() == {"driver": "ssh"}
    assert "backends" not in {f.kind for f in found.values()}
    with pytest.raises(FcbenchError, match="unknown profile kind"):
        profile_files.find("device")
