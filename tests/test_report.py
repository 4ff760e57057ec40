"""`fcbench report`: one HTML file from real rows, opened in headless Chromium with the network off.

A tiny r18 is trained and converted (onnx, openvino) once; the CLI benches it on two backends and
evaluates it through both on synthetic pairs into one store; `fcbench report` writes the page and Chromium
loads it: no console errors, no request leaving the machine, every figure's SVG drawn, a screenshot with
ink. The Chromium check itself is shown to fail on a page with a console error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from chromium import inked_share, need_chromium, open_page
from conftest import converted_file

from fcbench.backends import get_backend
from fcbench.results.store import Row, Store

R18 = dict(model="r18", model_options={"width": 0.125, "layers": [1, 1, 1, 1], "input_size": [32, 32],
                                       "embedding_size": 16},
           data="synthetic:faces", data_options={"num_classes": 4, "samples_per_class": 4})
PAIRS = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=40", "--nfolds", "2", "--threads", "1"]
FAST_BENCH = ["--threads", "1", "--warmup", "2", "--runs", "20", "--min-seconds", "0.2"]


# hover the first point of the latency-accuracy figure (plotly's own hover) and read the label it shows
HOVER_FIRST_POINT = """(() => {
  const plot = document.querySelector('[data-figure="latency-accuracy"] .js-plotly-plot');
  Plotly.Fx.hover(plot, [{curveNumber: 0, pointNumber: 0}]);
  return Array.from(plot.querySelectorAll('.hoverlayer .hovertext')).map(e => e.textContent);
})()"""


def _need(plugin: str) -> None:
    ok, why = get_backend(plugin).available()
    if not ok:
        pytest.skip(f"runtime for backend '{plugin}' is not importable here: {why}")


def _run_cli(*args: object) -> int:
    """The console entry point in-process (for module fixtures, where the ``cli`` fixture is not available)."""
    from fcbench.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["fcbench", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding a real bench of a tiny r18 (onnx on ort-cpu and openvino-f32, openvino on openvino-f32)
    and its evaluation through ort-cpu and openvino-f32 on synthetic pairs."""
    from fcbench.conversion import convert
    from fcbench.training.config import TrainConfig
    from fcbench.training.loop import train

    _need("onnxruntime")
    _need("openvino")
    root = tmp_path_factory.mktemp("report")
    ckpt = Path(train(TrainConfig(**R18, epochs=1, batch_size=8, lr=0.01, out=str(root / "r18"))))
    outcomes = convert(ckpt, ["onnx", "openvino"], root / "r18")
    onnx, xml = converted_file(outcomes, "onnx"), converted_file(outcomes, "openvino")
    s = root / "s.sqlite"
    assert _run_cli("bench", onnx, xml, "--backend", "ort-cpu,openvino-f32", *FAST_BENCH, "--store", s) == 0
    assert _run_cli("eval", onnx, "--backend", "ort-cpu", *PAIRS, "--store", s) == 0
    assert _run_cli("eval", xml, "--backend", "openvino-f32", *PAIRS, "--store", s) == 0
    return s


def test_report_of_real_runs_renders_in_chromium(store, cli, tmp_path):
    need_chromium()
    out = tmp_path / "page" / "report.html"
    r = cli("report", "--store", store, "--out", out, "--format", "json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    counts = rep["counts"]
    assert rep["path"] == str(out) and out.is_file()
    # three bench cells, each with the accuracy measured on the same artifact; the onnx on ort-cpu through
    # that very runtime
    assert counts["points"] == 3 and counts["with_accuracy"] == 3 and counts["devices"] == 1
    assert counts["pareto"] >= 1 and counts["rocs"] >= 2  # the two runtimes' ROCs (and their float parent's)
    assert counts["figures"] == 4  # one device: latency-accuracy and per backend; size-accuracy; ROC
    text = out.read_text(encoding="utf-8")
    assert "<script src=" not in text and "<link" not in text  # nothing fetched: plotly.js is inlined
    assert "train(arcface) → convert(onnx) → ort-cpu f32" in text  # lineage in the table
    page = open_page(out, selectors=(".fcbench-figure", ".fcbench-figure .main-svg", ".fcbench-figure .scatterlayer",
                                     "#cells-table tbody tr"), scripts={"hover": HOVER_FIRST_POINT})
    assert page.errors == [], page.errors
    assert page.remote_requests() == [], page.remote_requests()
    assert page.counts[".fcbench-figure"] == counts["figures"]
    assert page.counts[".fcbench-figure .scatterlayer"] == counts["figures"]  # every figure drew its traces
    assert page.counts[".fcbench-figure .main-svg"] >= counts["figures"]
    assert page.counts["#cells-table tbody tr"] == counts["cells"] == 5  # 3 bench cells + 2 evaluations
    assert "Pareto front" in page.dom and "100 % CPUExecutionProvider" in page.dom
    assert inked_share(page.screenshot) > 0.05
    (hover,) = page.values["hover"]  # hovering a point shows its lineage and where it ran
    assert hover.startswith("r18: train(arcface) → convert(") and " f32" in hover and "p50 " in hover, hover
    assert re.search(r"accuracy [01](\.\d+)? \((this runtime|same artifact)\)", hover), hover


def test_chromium_check_fails_on_console_errors_and_blank_pages(tmp_path):
    """The browser check can fail: a console.error, an uncaught exception and a blocked remote script are
    reported; a blank page has (almost) no ink."""
    need_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><p>x</p><script>console.error('deliberate');</script>"
                   "<script>undefinedFunction();</script>"
                   "<script src='https://cdn.example.invalid/plotly.js'></script></body></html>")
    page = open_page(bad, settle=0.3)
    assert any("deliberate" in e for e in page.console_errors), page.errors
    assert any("undefinedFunction" in e for e in page.console_errors), page.errors
    assert page.remote_requests() == ["https://cdn.example.invalid/plotly.js"]
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>")
    page = open_page(blank, settle=0.1)
    assert page.errors == [] and inked_share(page.screenshot) < 0.001


def test_eval_keeps_a_compact_roc_in_the_auc_row(store):
    with Store(store) as s:
        aucs = [r for r in s.query(kind="quality", metric="auc") if r["format"] != "fcbench-ckpt"]
    assert len(aucs) == 2
    for row in aucs:
        roc = row["extra"]["roc"]
        far, tar = roc["far"], roc["tar"]
        assert 2 <= len(far) == len(tar) <= 64
        assert far == sorted(far) and tar == sorted(tar)  # along the curve
        assert (far[0], tar[0]) == (0.0, 0.0) and (far[-1], tar[-1]) == (1.0, 1.0)


def test_report_of_one_run_and_last(store, cli, tmp_path):
    with Store(store) as s:
        runs = s.run_ids()
    r = cli("report", "--store", store, "--run", "last", "--out", tmp_path / "a.html", "--format", "json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["runs"] == [runs[-1]] and rep["counts"]["speed_rows"] == 0 and rep["counts"]["rocs"] >= 1
    r = cli("report", "--store", store, "--run", f"{runs[-2]},last~2", "--out", tmp_path / "b.html",
            "--format", "json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert rep["runs"] == [runs[-3], runs[-2]] and rep["counts"]["points"] == 3


def _speed(name: str, p50: float, sha: str) -> Row:
    samples = [p50 * f for f in (0.9, 0.95, 1.0, 1.0, 1.05, 1.2)]
    return Row("speed", run_id="bench", model="r18", lineage=f"train(arcface) > {name}", artifact=f"m/{name}.onnx",
               artifact_sha256=sha, format="onnx", backend="onnxruntime", variant="cpu", profile="ort-cpu",
               device="local", device_fingerprint="abc", device_info={"cpu": "Test CPU", "arch": "x86_64"},
               threads=1, batch=1, p50_ms=p50, p90_ms=p50 * 1.1, samples_ms=samples, model_size_mb=1.0,
               extra={"status": "ok", "placement": "100 % CPUExecutionProvider", "precision": "f32"})


def _quality(name: str, value: float, sha: str) -> Row:
    return Row("quality", run_id="eval", model="r18", lineage=f"train(arcface) > {name}", artifact=f"m/{name}.onnx",
               artifact_sha256=sha, format="onnx", backend="onnxruntime", variant="cpu", metric="accuracy",
               value=value, dataset="pairs", protocol="verification")


def test_pareto_front_and_lineage_join(cli, tmp_path):
    """Three cells: fast and rough, slow and accurate, slow and rough (dominated): the front is the first two;
    a fourth cell without an eval row is listed with no accuracy, and joined by lineage when only its float
    model was evaluated."""
    s = tmp_path / "s.sqlite"
    with Store(s) as st:
        for name, p50, acc in (("fast", 1.0, 0.80), ("accurate", 3.0, 0.95), ("dominated", 4.0, 0.85)):
            st.add(_speed(name, p50, name))
            st.add(_quality(name, acc, name))
        st.add(_speed("unrated", 2.0, "unrated"))
        lineage_only = _speed("copy", 5.0, "copy-sha")
        st.add(lineage_only)
        q = _quality("copy", 0.5, "other-sha")
        q.artifact = "elsewhere/copy.onnx"
        st.add(q)
    out = tmp_path / "r.html"
    r = cli("report", "--store", s, "--out", out, "--format", "json")
    assert r.code == 0, r.err
    counts = json.loads(r.out)["counts"]
    assert counts["points"] == 5 and counts["with_accuracy"] == 4 and counts["pareto"] == 2
    text = out.read_text(encoding="utf-8")
    starred = [tr.split("</tr>")[0] for tr in text.split('<tr class="pareto">')[1:]]
    assert len(starred) == 2
    assert "train(arcface) → fast → ort-cpu f32" in starred[0]
    assert "train(arcface) → accurate → ort-cpu f32" in starred[1]
    assert all(tr.startswith("<td>★ r18</td>") for tr in starred)
    assert "same model and lineage" in text and "this runtime" in text
    import fcbench  # the same page from the Python API

    res = fcbench.run_report(fcbench.ReportConfig(store=str(s), out=str(tmp_path / "api.html")))
    assert res.path == str(tmp_path / "api.html") and res.counts["pareto"] == 2 and res.counts["figures"] == 3  # no ROC


def test_report_bad_input(cli, tmp_path):
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    r = cli("report", "--store", empty, "--out", tmp_path / "r.html")
    assert r.code == 2 and "is empty" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = cli("report", "--store", tmp_path / "missing.sqlite")
    assert r.code == 2 and "does not exist" in r.err and not (tmp_path / "missing.sqlite").exists()
    s = tmp_path / "s.sqlite"
    with Store(s) as st:
        st.add(_speed("fast", 1.0, "fast"))
    r = cli("report", "--store", s, "--run", "bnech", "--out", tmp_path / "r.html")
    assert r.code == 2 and "'bnech' is no run in" in r.err and "did you mean 'bench'" in r.err
    r = cli("report", "--store", s, "--run", "last~3", "--out", tmp_path / "r.html")
    assert r.code == 2 and "holds 1 run" in r.err
    trained = tmp_path / "trained.sqlite"
    with Store(trained) as st:
        st.add(Row("train", run_id="t", model="r18", metric="loss", value=1.0))
    r = cli("report", "--store", trained, "--out", tmp_path / "r.html")
    assert r.code == 2 and "nothing to report" in r.err and "run bench or eval first" in r.err
    r = cli("report", "--store", s, "--out", tmp_path)
    assert r.code == 2 and "--out" in r.err and "is a directory" in r.err
    r = cli("report", "--store", s, "--compare", "bench", "--out", tmp_path / "r.html")
    assert r.code == 2 and "--compare takes two runs" in r.err
    for err in (r.err,):
        assert "Traceback" not in err


def test_report_shows_compare_verdicts(store, cli, tmp_path):
    """--compare BASE,NEW puts compare's verdicts in the page: a bench run against itself is never slower or
    faster (one run a side: 'same' or 'unknown', with how many runs would decide), one verdict per cell.
    Where fcbench compare is not installed, the section says so and the report is still written."""
    with Store(store) as s:
        bench = s.run_ids()[0]
    out = tmp_path / "c.html"
    r = cli("report", "--store", store, "--compare", f"{bench},{bench}", "--out", out, "--format", "json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    text = out.read_text(encoding="utf-8")
    try:
        import fcbench.compare  # noqa: F401
    except ImportError:
        assert rep["compare"] == "compare unavailable" and "fcbench compare is not part of this installation" in text
        return
    assert rep["compare"] == "verdicts" and 'id="compare-table"' in text
    assert text.count('<td class="verdict-') == 3  # the three bench cells
    assert text.count('class="verdict-same"') + text.count('class="verdict-unknown"') == 3
