from __future__ import annotations

import csv
import io
import json

import pytest

from fcbench.errors import FcbenchError
from fcbench.results import RunContext, Store


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

    from fcbench.results.render import pivot_quality, render

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
