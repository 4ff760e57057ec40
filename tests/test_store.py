from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fcbench.errors import FcbenchError
from fcbench.results import RunContext, Store
from fcbench.results import store as store_module
from fcbench.results.store import COLUMNS, SCHEMA_VERSION, options_hash


def test_rows_are_written_immediately_and_read_back(tmp_path):
    path = tmp_path / "s.sqlite"
    ctx = RunContext(recipe="r")
    store = Store(path)
    store.add(ctx.row("quality", model="r18", metric="accuracy", value=0.9, dataset="lfw", protocol="verification"))
    # a second connection sees the row before the writer closes: nothing waits for the end of a run
    with Store(path) as reader:
        rows = reader.query()
    assert len(rows) == 1
    assert rows[0]["metric"] == "accuracy" and rows[0]["value"] == pytest.approx(0.9)
    assert rows[0]["run_id"] == ctx.run_id and rows[0]["recipe"] == "r"
    assert rows[0]["fcbench_version"] and "torch" in rows[0]["runtime_versions"]
    store.add(ctx.row("speed", model="r18", p50_ms=3.5, extra={"samples": [1.0, 2.0]}))
    assert store.query(kind="speed")[0]["extra"] == {"samples": [1.0, 2.0]}
    assert [r["kind"] for r in store.query(last_run=True)] == ["quality", "speed"]
    store.close()


def test_results_command_formats(cli, tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        ctx = RunContext()
        s.add(ctx.row("quality", model="r18", metric="accuracy", value=0.75, dataset="d", protocol="verification"))
        s.add(ctx.row("quality", model="mbf", metric="accuracy", value=0.5, dataset="d", protocol="verification"))
    r = cli("results", "--store", path, "--format", "json", "--model", "mbf")
    assert r.code == 0
    rows = json.loads(r.out)
    assert [x["model"] for x in rows] == ["mbf"]
    r = cli("results", "--store", path, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(r.out)))
    assert {p["model"] for p in parsed} == {"r18", "mbf"} and "p50_ms" in parsed[0]
    r = cli("results", "--store", path, "--format", "markdown")
    assert r.out.startswith("| run_id |") and "0.75" in r.out
    r = cli("results", "--store", path)
    assert r.code == 0 and "r18" in r.out


def test_results_bad_input(cli, tmp_path):
    r = cli("results", "--store", tmp_path / "missing.sqlite")
    assert r.code == 2 and "does not exist" in r.err and len(r.err.strip().splitlines()) == 1
    bad = tmp_path / "bad.sqlite"
    bad.write_text("this is not a database" * 100)
    r = cli("results", "--store", bad)
    assert r.code == 2 and "cannot be opened as SQLite" in r.err
    r = cli("results", "--store", bad, "--format", "xml")
    assert r.code == 2 and "--format" in r.err


def test_store_rejects_non_sqlite(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(FcbenchError, match="cannot be opened as SQLite"):
        Store(bad)


def test_table_shows_constant_columns_once_and_pivots_quality():
    from rich.console import Console

    from fcbench.render.rows import pivot_quality, render

    rows = [{"kind": "quality", "model": "r18", "lineage": lin, "artifact": f"{lin}.pt", "backend": "pytorch",
             "variant": "eager", "dataset": "pairs", "metric": m, "value": v}
            for lin in ("init", "train") for m, v in (("accuracy", 0.6 if lin == "init" else 0.9),
                                                      ("best_threshold", 0.5))]
    console = Console(width=200, record=True)
    console.print(render(rows, "table", title="t"))
    text = console.export_text()
    assert "model=r18" in text and "| r18" not in text  # constant column shown once, in the title
    pivot = pivot_quality(rows)
    assert [(p["lineage"], p["accuracy"]) for p in pivot] == [("init", 0.6), ("train", 0.9)]
    assert all("best_threshold" not in p for p in pivot)


def test_piped_table_is_printed_whole(tmp_path):
    """Piped into a CI log or a file with no $COLUMNS, a wide table is not cut to 80 columns."""
    import os
    import subprocess
    import sys

    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        ctx = RunContext()
        for i, backend in enumerate(("onnxruntime", "openvino", "tflite"), start=1):
            s.add(ctx.row("speed", model="r18", backend=backend, variant="cpu",
                          artifact=f"runs/quickstart/model{i}.onnx",
                          mean_ms=12.3456 * i, std_ms=0.4567 * i, min_ms=11.234 * i, p50_ms=12.3456 * i,
                          p90_ms=13.4567 * i, p99_ms=14.5678 * i, init_ms=123.45 * i, first_run_ms=23.456 * i,
                          peak_mem_mb=345.6 * i, model_size_mb=96.2 * i, gflops_per_s=400.1 / i, peak_share=0.98 / i))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    p = subprocess.run([sys.executable, "-m", "fcbench.cli", "results", "--store", str(path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout, p.stdout
    assert "runs/quickstart/model3.onnx" in p.stdout and "init_ms" in p.stdout, p.stdout


# --- schema version 2: the migration of a store written by the previous release, row identity columns

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store-v1.sqlite"


def _raw(path: Path) -> tuple[int, list[dict[str, Any]], list[str]]:
    """user_version, rows and column names as SQLite has them, read past the Store."""
    db = sqlite3.connect(str(path))
    try:
        db.row_factory = sqlite3.Row
        version = db.execute("PRAGMA user_version").fetchone()[0]
        rows = [dict(r) for r in db.execute("SELECT * FROM results ORDER BY id")]
        columns = [r["name"] for r in db.execute("PRAGMA table_info(results)")]
    finally:
        db.close()
    return version, rows, columns


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def v1_copy(tmp_path) -> Path:
    """A copy of the committed schema-1 store (the fixture itself is never opened by a Store)."""
    copy = tmp_path / "v1.sqlite"
    shutil.copyfile(FIXTURE_V1, copy)
    return copy


def test_v1_store_is_migrated_in_place(v1_copy, cli, monkeypatch):
    version, before, columns = _raw(v1_copy)
    # what the fixture is: a store of the previous release, samples in extra, checkpoints called 'pytorch'
    assert version == 1 and "samples_ms" not in columns and "device_info" not in columns
    old_speed = {r["id"]: json.loads(r["extra"]) for r in before if r["kind"] == "speed"}
    assert len(old_speed) == 2 and all(len(e["samples_ms"]) == 5 for e in old_speed.values())
    assert {r["kind"] for r in before} == {"train", "quality", "speed"}
    assert any(r["format"] == "pytorch" for r in before)

    with Store(v1_copy) as s:
        rows = s.query()
    version, after, columns = _raw(v1_copy)
    assert version == SCHEMA_VERSION == 2
    assert set(COLUMNS) <= set(columns)
    assert len(rows) == len(after) == len(before) == 11
    assert [r["id"] for r in rows] == [r["id"] for r in before]
    by_id = {r["id"]: r for r in rows}
    for row_id, extra in old_speed.items():
        row = by_id[row_id]
        assert row["samples_ms"] == extra.pop("samples_ms")
        assert row["extra"] == extra  # everything else in extra stays
    for r in rows:
        assert "samples_ms" not in r["extra"]
        assert isinstance(r["samples_ms"], list) and isinstance(r["device_info"], dict)
        assert r["profile"] == r["options_hash"] == r["device_fingerprint"] == ""
        if r["kind"] != "speed":
            assert r["samples_ms"] == []
    assert "pytorch" not in {r["format"] for r in rows}
    assert {r["format"] for r in rows if r["kind"] == "quality"} == {"fcbench-ckpt"}
    # every other value came through as it was
    untouched = set(columns) - {"format", "extra", "profile", "options_hash", "device_fingerprint", "device_info",
                                "samples_ms"}
    assert [{c: r[c] for c in untouched} for r in after] == [{c: r[c] for c in untouched} for r in before]

    # a second open changes nothing and runs no migration
    sha = _sha(v1_copy)
    monkeypatch.setitem(store_module.MIGRATIONS, 1, lambda db: pytest.fail("migrated a second time"))
    with Store(v1_copy) as s:
        assert s.query() == rows
    assert _sha(v1_copy) == sha

    r = cli("results", "--store", v1_copy, "--format", "json")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert len(shown) == 11 and [x["samples_ms"] for x in shown if x["kind"] == "speed"] == \
        [by_id[i]["samples_ms"] for i in sorted(old_speed)]


def test_unstamped_store_with_results_table_is_migrated(v1_copy):
    """Version 0 with a results table: a store from before versions were stamped."""
    db = sqlite3.connect(str(v1_copy))
    db.execute("PRAGMA user_version=0")
    db.commit()
    db.close()
    with Store(v1_copy) as s:
        speed = s.query(kind="speed")
    assert _raw(v1_copy)[0] == 2
    assert len(speed) == 2 and all(len(r["samples_ms"]) == 5 and "samples_ms" not in r["extra"] for r in speed)


def test_failed_migration_leaves_the_store_as_it_was(v1_copy, monkeypatch):
    def half_done(db):
        store_module._v1_to_v2(db)
        raise sqlite3.OperationalError("disk I/O error")

    before = _raw(v1_copy)
    monkeypatch.setitem(store_module.MIGRATIONS, 1, half_done)
    with pytest.raises(FcbenchError, match="migrating schema version 1 to 2 failed"):
        Store(v1_copy)
    version, rows, columns = after = _raw(v1_copy)
    assert version == 1 and "samples_ms" not in columns and any(r["format"] == "pytorch" for r in rows)
    assert after == before


def test_newer_store_is_refused_naming_both_versions(tmp_path, cli):
    path = tmp_path / "new.sqlite"
    with Store(path) as s:
        s.add(RunContext().row("quality", metric="accuracy", value=0.5))
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA user_version=99")
    db.commit()
    db.close()
    with pytest.raises(FcbenchError, match=r"schema version 99, newer than this fcbench \(2\)"):
        Store(path)
    r = cli("results", "--store", path)
    assert r.code == 2 and "99" in r.err and "(2)" in r.err and len(r.err.strip().splitlines()) == 1
    assert _raw(path)[0] == 99  # left alone


def test_migrations_cover_every_older_version():
    assert sorted(store_module.MIGRATIONS) == list(range(1, SCHEMA_VERSION))


def test_new_store_round_trips_identity_columns(tmp_path):
    path = tmp_path / "s.sqlite"
    info = {"cpu": "Some CPU", "flags": ["avx2", "fma"], "cores": 2, "memory_gb": 8.0, "os": "Linux",
            "runtimes": {"onnxruntime": "1.0"}}
    with Store(path) as s:
        row_id = s.add(RunContext().row("speed", backend="openvino", variant="cpu", profile="openvino-f32",
                                        options_hash=options_hash({"a": 1}), device_fingerprint="abc123",
                                        device_info=info, samples_ms=[1.5, 2.25, 1.75], p50_ms=1.75))
        quality = s.add(RunContext().row("quality", metric="accuracy", value=0.5))
        rows = {r["id"]: r for r in s.query()}
    assert _raw(path)[0] == 2
    r = rows[row_id]
    assert r["samples_ms"] == [1.5, 2.25, 1.75] and r["device_info"] == info
    assert (r["profile"], r["options_hash"], r["device_fingerprint"]) == ("openvino-f32", options_hash({"a": 1}),
                                                                         "abc123")
    assert rows[quality]["samples_ms"] == []
    here = RunContext()  # a row measured here carries this machine's info and fingerprint
    assert rows[quality]["device_info"] == here.device_info and here.device_info["cpu"]
    assert rows[quality]["device_fingerprint"] == here.device_fingerprint and rows[quality]["device"] == "local"


def test_options_hash_is_short_and_canonical():
    h = options_hash({"b": 2, "a": {"y": 1, "x": [1, 2]}})
    assert len(h) == 12 and all(c in "0123456789abcdef" for c in h)
    assert h == options_hash({"a": {"x": [1, 2], "y": 1}, "b": 2})  # key order does not matter
    assert h != options_hash({"b": 2, "a": {"y": 1, "x": [2, 1]}})
    assert options_hash({}) != options_hash({"threads": 1})
    canonical = json.dumps({"a": {"x": [1, 2], "y": 1}, "b": 2}, sort_keys=True, separators=(",", ":"))
    assert h == hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_add_takes_a_result_with_to_rows(tmp_path):
    ctx = RunContext()

    class Result:
        def to_rows(self):
            yield ctx.row("quality", metric="accuracy", value=0.9)
            yield ctx.row("quality", metric="eer", value=0.1)

    with Store(tmp_path / "s.sqlite") as s:
        ids = s.add(Result())
        one = s.add(ctx.row("speed", p50_ms=1.0))
        rows = s.query()
        assert isinstance(one, int) and isinstance(ids, list) and len(ids) == 2
        assert [r["id"] for r in rows] == [*ids, one]
        assert [(r["metric"], r["value"]) for r in rows[:2]] == [("accuracy", 0.9), ("eer", 0.1)]

        class Pairs:  # the metric results' to_rows() gives (name, value) pairs, not rows
            def to_rows(self):
                return [("accuracy", 0.9)]

        with pytest.raises(TypeError, match="not a Row"):
            s.add(Pairs())
        with pytest.raises(TypeError, match="to_rows"):
            s.add({"kind": "speed"})
        assert len(s.query()) == 3
