"""A checked artifact is the artifact that runs: bench, eval, inspect and the bench worker verify an
artifact (and its companion files) against the sha256 its manifest records, refuse manifests that name
files outside the artifact's folder, and warn about a manifest whose parity check failed; convert writes
artifact and manifest so that a failure or a crash leaves both or neither, and refuses output paths it
cannot write before converting anything. Real tiny models, real runtimes, through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import converted_file

from fcbench import artifact
from fcbench.artifact import manifest_path, read_manifest, sha256_file
from fcbench.conversion import exporter_class
from fcbench.results.store import Store

FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0", "--threads", "1"]
TINY = dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                        "embedding_size": 16},
            data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4})


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The sha256 cache goes to this test's folder."""
    monkeypatch.delenv("FCBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny r18 checkpoint and its ONNX (and OpenVINO, where its converter is installed) conversions."""
    pytest.importorskip("onnxruntime")
    from fcbench.conversion import convert
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    root = tmp_path_factory.mktemp("integrity")
    ckpt = train(TrainConfig(**TINY, epochs=1, max_steps=1, batch_size=8, lr=0.01, out=str(root / "r18")))
    formats = ["onnx"] + (["openvino"] if exporter_class("openvino").available()[0] else [])
    return Path(ckpt), convert(ckpt, formats)


def _copy(src: Path, folder: Path) -> Path:
    """The artifact, its companion files and its manifest, copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in [src.name, *read_manifest(src).extra.get("companion_files", []), manifest_path(src).name]:
        shutil.copy(src.parent / name, folder / name)
    return folder / src.name


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("fcbench: error: "), err
    return lines[0]


def _rows(store: Path) -> list:
    if not store.exists():
        return []
    with Store(store) as s:
        return s.query(kind="speed")


# --- consumers verify --------------------------------------------------------------------------

def test_a_tampered_onnx_is_refused_naming_both_hashes_and_stores_no_row(made, cli, tmp_path):
    _, outcomes = made
    onnx = _copy(converted_file(outcomes, "onnx"), tmp_path / "a")
    store = tmp_path / "s.sqlite"
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", store)
    assert r.code == 0, r.err  # untouched: benched
    assert len(_rows(store)) == 1
    recorded = read_manifest(onnx).sha256
    _flip_last_byte(onnx)
    actual = sha256_file(onnx)
    for verb in (["bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", store],
                 ["bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--in-process", "--store", store],
                 ["inspect", onnx, "--backend", "onnxruntime:cpu"],
                 ["eval", onnx, "--data", "synthetic:pairs", "--data-opt", "num_pairs=8", "--store", store]):
        r = cli(*verb)
        line = _one_line(r.err)
        assert r.code == 2 and recorded in line and actual in line and onnx.name in line, (verb, r.err)
    assert len(_rows(store)) == 1  # nothing stored for the tampered file
    with Store(store) as s:
        assert s.query(kind="quality") == []


def test_a_changed_file_with_the_same_size_and_mtime_is_caught_through_the_cache(made, cli, tmp_path, monkeypatch):
    """The cache spares re-hashing an unchanged file; a rewrite that keeps size and mtime still changes
    ctime (and may change the inode), so it is hashed again and refused."""
    _, outcomes = made
    onnx = _copy(converted_file(outcomes, "onnx"), tmp_path / "a")
    monkeypatch.setattr(artifact, "_RACY_NS", 0)  # cache even a file written a moment ago
    calls = []
    real = artifact.sha256_file
    monkeypatch.setattr(artifact, "sha256_file", lambda p, *a: calls.append(Path(p).name) or real(p, *a))
    for _ in range(2):
        r = cli("inspect", onnx, "--backend", "onnxruntime:cpu")
        assert r.code == 0, r.err
    assert calls == [onnx.name]  # hashed once, then read from the cache
    cache = json.loads((tmp_path / "cache" / "fcbench" / "sha256.json").read_text())
    assert cache[str(onnx.resolve())]["sha256"] == read_manifest(onnx).sha256
    st = onnx.stat()
    _flip_last_byte(onnx)
    os.utime(onnx, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    r = cli("inspect", onnx, "--backend", "onnxruntime:cpu")
    assert r.code == 2 and read_manifest(onnx).sha256 in _one_line(r.err)


def test_a_tampered_openvino_bin_is_refused(made, cli, tmp_path):
    _, outcomes = made
    if not exporter_class("openvino").available()[0]:
        pytest.skip(f"openvino exporter is not installed here: {exporter_class('openvino').available()[1]}")
    xml = _copy(converted_file(outcomes, "openvino"), tmp_path / "ov")
    manifest = read_manifest(xml)
    assert manifest.extra["companion_files"] == ["model.bin"]
    assert manifest.extra["companion_sha256"]["model.bin"] == sha256_file(xml.with_suffix(".bin"))
    _flip_last_byte(xml.with_suffix(".bin"))
    store = tmp_path / "s.sqlite"
    r = cli("bench", xml, "--backend", "openvino:CPU", *FAST, "--store", store)
    line = _one_line(r.err)
    assert r.code == 2 and "model.bin" in line and manifest.extra["companion_sha256"]["model.bin"] in line
    assert sha256_file(xml.with_suffix(".bin")) in line and _rows(store) == []
    xml.with_suffix(".bin").unlink()
    r = cli("bench", xml, "--backend", "openvino:CPU", *FAST, "--store", store)
    assert r.code == 2 and "model.bin" in _one_line(r.err) and "missing" in r.err


@pytest.mark.parametrize("field, value", [
    ("companion_files", ["../../etc/passwd"]),
    ("companion_files", ["/etc/passwd"]),
    ("companion_files", "model.bin"),
    ("file", "../../etc/passwd"),
    ("sha256", 42),
])
def test_a_manifest_naming_files_outside_its_folder_is_refused(made, cli, tmp_path, field, value):
    _, outcomes = made
    onnx = _copy(converted_file(outcomes, "onnx"), tmp_path / "a")
    data = json.loads(manifest_path(onnx).read_text())
    if field == "companion_files":
        data["extra"]["companion_files"] = value
    else:
        data[field] = value
    manifest_path(onnx).write_text(json.dumps(data))
    store = tmp_path / "s.sqlite"
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", store)
    line = _one_line(r.err)
    assert r.code == 2 and manifest_path(onnx).name in line, r.err
    assert _rows(store) == []


def test_a_link_out_of_the_folder_is_refused(made, cli, tmp_path):
    _, outcomes = made
    onnx = _copy(converted_file(outcomes, "onnx"), tmp_path / "a")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    (onnx.parent / "weights.bin").symlink_to(secret)
    data = json.loads(manifest_path(onnx).read_text())
    data["extra"]["companion_files"] = ["weights.bin"]
    manifest_path(onnx).write_text(json.dumps(data))
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "weights.bin" in _one_line(r.err)


def test_the_worker_checks_the_copy_it_was_sent(made, tmp_path):
    from fcbench.benchmark.job import BenchJob
    from fcbench.worker import execute

    _, outcomes = made
    onnx = _copy(converted_file(outcomes, "onnx"), tmp_path / "job")
    job = BenchJob(artifact=onnx.name, manifest=read_manifest(onnx).to_dict(), plugin="onnxruntime", variant="cpu",
                   threads=1, warmup=1, runs=3, min_seconds=0.0, label="x")
    assert execute(job, onnx.parent)["status"] == "ok"
    _flip_last_byte(onnx)
    raw = execute(job, onnx.parent)
    assert raw["status"] == "failed" and read_manifest(onnx).sha256 in raw["reason"], raw


def test_a_file_without_a_manifest_still_loads_with_what_was_assumed(made, cli, tmp_path):
    _, outcomes = made
    bare = tmp_path / "mine.onnx"
    shutil.copy(converted_file(outcomes, "onnx"), bare)
    r = cli("bench", bare, "--backend", "onnxruntime:cpu", *FAST, "--infer-manifest", "--store", tmp_path / "s.sqlite")
    assert r.code == 0 and "assumed" in r.err, r.err


# --- failed parity ------------------------------------------------------------------------------

def test_a_manifest_whose_parity_failed_is_benched_with_a_warning_in_the_table_and_the_row(made, cli, tmp_path,
                                                                                           monkeypatch):
    """A real parity failure: convert with a cosine threshold no output can meet."""
    import fcbench.conversion as conversion

    ckpt, _ = made
    parity = conversion.parity
    monkeypatch.setattr(conversion, "parity", lambda ref, out, min_cosine, max_rel: parity(ref, out, 1.5, max_rel))
    r = cli("convert", ckpt, "--to", "onnx", "--out", tmp_path / "c", "--format", "json")
    assert r.code == 1 and json.loads(r.out)[0]["status"] == "parity-failed", r.out
    onnx = tmp_path / "c" / "model.onnx"
    assert read_manifest(onnx).extra["parity"]["ok"] is False
    store = tmp_path / "s.sqlite"
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", store)
    assert r.code == 0, r.err
    assert "ok (!)" in r.out and "warning: parity check" in r.out, r.out  # the reason column wraps
    assert "warning: model.onnx: parity check failed" in r.err
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--format", "json", "--store", store)
    (cell,) = json.loads(r.out)
    assert cell["status"] == "ok" and "parity check failed" in cell["warning"]
    rows = _rows(store)
    assert len(rows) == 2 and all("parity check failed" in row["extra"]["warning"] for row in rows)
    r = cli("bench", converted_file(made[1], "onnx"), "--backend", "onnxruntime:cpu", *FAST, "--format", "json",
            "--store", store)
    assert r.code == 0 and json.loads(r.out)[0]["warning"] is None and "warning" not in _rows(store)[-1]["extra"]


# --- convert writes both or neither ---------------------------------------------------------------

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".fcbench"))


def test_convert_into_an_out_that_is_a_file_or_unwritable_is_one_line(made, cli, tmp_path):
    ckpt, _ = made
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    r = cli("convert", ckpt, "--to", "onnx", "--out", a_file)
    assert r.code == 2 and "is a file, not a folder" in _one_line(r.err) and a_file.read_text() == "x"
    r = cli("convert", ckpt, "--to", "onnx", "--out", a_file / "sub")
    assert r.code == 2 and "cannot create the folder" in _one_line(r.err)
    if os.geteuid() == 0:  # root writes through permission bits: /proc is a folder nobody can create files in
        locked = Path("/proc")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
    try:
        r = cli("convert", ckpt, "--to", "onnx", "--out", locked)
        assert r.code == 2 and "cannot write there" in _one_line(r.err), r.err
    finally:
        if locked != Path("/proc"):
            locked.chmod(0o700)
    # a manifest path (or the artifact's) that is a folder
    out = tmp_path / "o"
    (out / "model.onnx.manifest.json").mkdir(parents=True)
    r = cli("convert", ckpt, "--to", "onnx", "--out", out)
    assert r.code == 2 and "model.onnx.manifest.json" in _one_line(r.err) and "is a folder" in r.err
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx.manifest.json"]
    assert _leftovers(tmp_path) == [] and _leftovers(ckpt.parent) == []


def test_convert_to_no_format_exits_2(made, cli, tmp_path):
    ckpt, _ = made
    before = sorted(p.name for p in ckpt.parent.iterdir())
    for to in ("", ",", " "):
        r = cli("convert", ckpt, "--to", to)
        assert r.code == 2 and "no format" in _one_line(r.err), (to, r.err)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == before


def test_convert_where_every_format_was_skipped_exits_2(made, cli, tmp_path, monkeypatch):
    """A runtime absent here (its exporter reports unavailable): asked for only that format, convert did
    nothing, so it exits 2 naming why; nothing is written."""
    from fcbench.conversion import exporter_class

    ckpt, _ = made
    monkeypatch.setattr(exporter_class("onnx"), "available", classmethod(lambda cls: (False, "onnx not installed")))
    r = cli("convert", ckpt, "--to", "onnx", "--out", tmp_path / "none")
    last = r.err.strip().splitlines()[-1]
    assert r.code == 2 and last.startswith("fcbench: error: convert: nothing converted"), r.err
    assert "onnx not installed" in last
    assert not (tmp_path / "none" / "model.onnx").exists()


def test_an_export_that_fails_half_way_leaves_the_earlier_conversion_as_it_was(made, cli, tmp_path, monkeypatch):
    """The exporter writes half a file and fails: the earlier, valid conversion in the folder is untouched
    and still benches; nothing of the failed one is left."""
    ckpt, _ = made
    out = tmp_path / "o"
    r = cli("convert", ckpt, "--to", "onnx", "--out", out)
    assert r.code == 0, r.err
    onnx = out / "model.onnx"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cls = exporter_class("onnx")
    original = cls.export

    def half_then_fail(self, model, example, target, options):
        Path(target).write_bytes(b"\x08\x07half a model")
        raise RuntimeError("disk full")

    monkeypatch.setattr(cls, "export", half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        from fcbench.conversion import convert

        convert(ckpt, ["onnx"], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _leftovers(out) == []
    monkeypatch.setattr(cls, "export", original)
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err


def test_a_crash_between_artifact_and_manifest_leaves_no_manifest_vouching(made, cli, tmp_path, monkeypatch):
    """Re-converting over an earlier conversion and dying after the new artifact is in place but before its
    manifest: the old manifest was removed first, so the new file is 'no manifest', never vouched for by
    the old one."""
    from fcbench.conversion import convert

    ckpt, _ = made
    out = tmp_path / "o"
    (o,) = convert(ckpt, ["onnx"], out, options={"onnx": {"opset": 17}})
    old_sha = read_manifest(o.file).sha256
    real = os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith(".manifest.json"):
            raise KeyboardInterrupt  # the process is stopped here
        return real(src, dst)

    monkeypatch.setattr(artifact.os, "replace", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        convert(ckpt, ["onnx"], out, options={"onnx": {"opset": 18}})
    monkeypatch.setattr(artifact.os, "replace", real)
    onnx = out / "model.onnx"
    assert sha256_file(onnx) != old_sha  # the new file is in place...
    assert not manifest_path(onnx).exists() and _leftovers(out) == []  # ...with no manifest
    r = cli("bench", onnx, "--backend", "onnxruntime:cpu", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 2 and "no manifest" in _one_line(r.err)


KILLED = """
import os, signal, sys
from pathlib import Path
from fcbench.conversion import convert, exporter_class
cls = exporter_class("onnx")
def half_then_killed(self, model, example, target, options):
    Path(target).write_bytes(b"\\x08\\x07half a model")
    os.kill(os.getpid(), signal.SIGKILL)
cls.export = half_then_killed
convert(sys.argv[1], ["onnx"], sys.argv[2])
"""


def test_a_conversion_killed_mid_export_leaves_the_earlier_one_valid(made, cli, tmp_path):
    ckpt, _ = made
    out = tmp_path / "o"
    r = cli("convert", ckpt, "--to", "onnx", "--out", out)
    assert r.code == 0, r.err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    p = subprocess.run([sys.executable, "-c", KILLED, str(ckpt), str(out)], capture_output=True, text=True,
                       env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=300)
    assert p.returncode == -9, p.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".fcbench-stage-")} == before
    r = cli("bench", out / "model.onnx", "--backend", "onnxruntime:cpu", *FAST, "--store", tmp_path / "s.sqlite")
    assert r.code == 0, r.err


def test_a_checkpoint_changed_after_training_is_refused_naming_both_hashes(made, cli, tmp_path):
    """A .pt is an artifact too: eval, convert and compress refuse one whose bytes are not the ones its
    manifest vouches for (here: another run's checkpoint copied over it)."""
    import shutil

    from fcbench.artifact import sha256_file
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    ckpt, _ = made
    other = train(TrainConfig(**TINY, epochs=1, max_steps=1, batch_size=8, lr=0.01, seed=7, out=str(tmp_path / "b")))
    folder = tmp_path / "t"
    folder.mkdir()
    shutil.copy(ckpt, folder / "model.pt")
    shutil.copy(ckpt.with_name("model.pt.manifest.json"), folder / "model.pt.manifest.json")
    shutil.copy(other, folder / "model.pt")
    want, got = sha256_file(ckpt), sha256_file(folder / "model.pt")
    assert want != got
    for args in (("eval", folder / "model.pt", "--store", tmp_path / "s.sqlite"),
                 ("convert", folder / "model.pt", "--to", "onnx", "--out", tmp_path / "c")):
        r = cli(*args)
        line = _one_line(r.err)
        assert r.code == 2 and want[:12] in line and got[:12] in line, (args, r.err)
    assert not (tmp_path / "s.sqlite").exists() and not (tmp_path / "c").exists()
