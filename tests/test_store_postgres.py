"""The results store on a real PostgreSQL server (tests/pgserver.py starts one for the session): the same rows as
SQLite's, two writers at once, migration, the newer-schema refusal, credentials from the URL, PGPASSFILE and
libpq's environment, an unreachable server in one line, and verbs run through the CLI with ``--store URL``."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="SQLAlchemy is not installed (pip install 'fcbench[postgres]')")
pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'fcbench[postgres]')")

import pgserver  # noqa: E402
from conftest import REPO, TINY_DATA, TINY_R18, TINY_TRAIN  # noqa: E402

from fcbench.errors import FcbenchError  # noqa: E402
from fcbench.results import Row, RunContext, Store  # noqa: E402
from fcbench.results import store as store_module  # noqa: E402
from fcbench.results.store import COLUMNS, SCHEMA_VERSION  # noqa: E402

pg_server = pgserver.pg_server  # the session's server (a fixture)
FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store-v1.sqlite"


def _engine(url: str):
    import sqlalchemy as sa

    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                            poolclass=sa.pool.NullPool)


def _sql(url: str, sql: str, params=None) -> list[tuple]:
    """Run ``sql`` on the database past the Store (as another program would)."""
    import sqlalchemy as sa

    eng = _engine(url)
    try:
        with eng.begin() as conn:
            res = conn.execute(sa.text(sql), params or {})
            return [tuple(r) for r in res.fetchall()] if res.returns_rows else []
    finally:
        eng.dispose()


def _rows() -> list[Row]:
    """Rows of every kind, with the values a store must keep exactly: floats, None, JSON, unicode."""
    a, b = RunContext(recipe="quickstart"), RunContext()
    info = {"cpu": "Some CPU", "flags": ["avx2", "fma"], "cores": 2, "memory_gb": 7.5, "nested": {"x": [1, None]}}
    return [
        a.row("train", model="r18", lineage="train(arcface)", metric="loss", value=1.2345678901234567,
              extra={"epoch": 1, "lr": 0.1}),
        a.row("quality", model="r18", lineage="train(arcface)", artifact="runs/q/model.pt", format="fcbench-ckpt",
              backend="pytorch", variant="eager", metric="accuracy", value=0.9, dataset="synthetic:pairs",
              protocol="verification"),
        a.row("speed", model="r18", artifact="runs/q/model.onnx", format="onnx", backend="onnxruntime",
              variant="cpu", profile="ort-cpu", options_hash=store_module.options_hash({"threads": 2}),
              device_fingerprint="abc123", device_info=info, threads=2, batch=1, input_shape="1x3x32x32",
              warmup=3, runs=5, samples_ms=[1.5, 2.25, 1.75, 1e-9, 123456.789], mean_ms=26.0, std_ms=0.1,
              min_ms=1e-9, p50_ms=1.75, p90_ms=2.25, p99_ms=123456.789, init_ms=12.0, first_run_ms=3.0,
              peak_mem_mb=345.6, model_size_mb=0.5, gflops_per_s=12.5, peak_share=0.0625,
              extra={"placement": {"CPU": 12}, "note": "ünïcode ✓ 'quoted' %s %(x)s ?"}),
        b.row("speed", model="mbf", backend="openvino", variant="CPU", threads=1, batch=4, p50_ms=None,
              extra={"status": "failed", "reason": "it broke; 100% sure"}),
        b.row("compress", model="mbf", metric="parameters", value=12345, extra={}),
        b.row("quality", model="mbf", metric="eer", value=float("nan"), p90_ms=float("inf"), p99_ms=float("-inf"),
              extra={"why": float("nan")}),  # NaN reads back as None from both; infinities stay
    ]


def _comparable(rows: list[dict]) -> list[dict]:
    """Rows with each value and its Python type (1.0 and 1 differ here)."""
    return [{k: (v, type(v).__name__) for k, v in r.items()} for r in rows]


def test_rows_read_back_equal_to_sqlite(pg_server, tmp_path):
    url = pg_server.database()
    rows = _rows()
    with Store(url) as pg, Store(tmp_path / "s.sqlite") as lite:
        assert (pg.backend, lite.backend) == ("postgresql", "sqlite")
        assert pg.path == url.replace(f":{pg_server.password}@", ":***@")  # messages never show the password
        for row in rows:
            assert pg.add(row) == lite.add(row)
        assert _comparable(pg.query()) == _comparable(lite.query())
        got = pg.query()
        assert [r["kind"] for r in got] == ["train", "quality", "speed", "speed", "compress", "quality"]
        assert (got[5]["value"], got[5]["p90_ms"], got[5]["p99_ms"]) == (None, float("inf"), float("-inf"))
        assert got[2]["samples_ms"] == [1.5, 2.25, 1.75, 1e-9, 123456.789] and got[2]["device_info"]["nested"] == \
            {"x": [1, None]}
        assert got[0]["value"] == 1.2345678901234567  # DOUBLE PRECISION, not PostgreSQL's 4-byte REAL
        for filters in ({"kind": "speed"}, {"model": "mbf"}, {"metric": "accuracy"}, {"last_run": True},
                        {"limit": 2}, {"run_id": rows[0].run_id, "kind": "quality"}, {"model": "none"}):
            assert _comparable(pg.query(**filters)) == _comparable(lite.query(**filters)), filters
        for column in ("model", "kind", "backend", "threads", "batch", "p50_ms", "run_id"):
            assert pg.distinct(column) == lite.distinct(column), column
        assert pg.run_ids() == lite.run_ids() == [rows[0].run_id, rows[3].run_id]
        for filters in ({"model": "r81"}, {"kind": "sped"}, {"model": "mbf", "kind": "train"}):
            assert pg.why_empty(filters).replace(str(pg.path), "S") == lite.why_empty(filters).replace(
                str(lite.path), "S")

        class Result:
            def to_rows(self):
                return rows[:2]

        assert pg.add(Result()) == lite.add(Result()) == [7, 8]
    with Store(url.replace("postgresql://", "postgresql+psycopg://")) as again:  # another connection reads the same
        assert len(again.query()) == 8 and again.backend == "postgresql"
    with Store(Path(url)) as again:  # a URL that went through Path (which folds // into /) still names the server
        assert len(again.query()) == 8 and again.backend == "postgresql"
    with Store(f"sqlite:///{tmp_path / 's.sqlite'}") as lite:  # SQLAlchemy's spelling of the SQLite file
        assert lite.backend == "sqlite" and len(lite.query()) == 8


WRITER = textwrap.dedent("""
    import json, os, sys, time
    from fcbench.results import RunContext, Store
    store, name, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    ctx = RunContext()
    with Store(store) as s:
        open(os.path.join(folder, name + ".ready"), "w").close()
        while not os.path.exists(os.path.join(folder, "go")):
            time.sleep(0.001)
        t0 = time.perf_counter()
        ids = []
        for i in range(n):
            if i == n // 2:  # half written: wait for the other half-way too, so the two surely write at once
                open(os.path.join(folder, name + ".half"), "w").close()
                while len([f for f in os.listdir(folder) if f.endswith(".half")]) < 2:
                    time.sleep(0.001)
            ids.append(s.add(ctx.row("speed", run_id=name, model="w", p50_ms=float(i),
                                     extra={"writer": name, "seq": i})))
        took = time.perf_counter() - t0
    print(json.dumps({"ids": ids, "seconds": took}))
""")


def two_writers(store: str, folder: Path, n: int) -> dict:
    """Two processes add ``n`` rows each to ``store`` at the same moment; what each saw and the rows read back."""
    procs = {name: subprocess.Popen([sys.executable, "-c", WRITER, store, name, str(n), str(folder)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")}
    deadline = time.monotonic() + 120
    while not all((folder / f"{name}.ready").exists() for name in procs):
        for name, p in procs.items():
            assert p.poll() is None, f"writer {name} exited early: {p.stderr.read()}"
        assert time.monotonic() < deadline, "the writers did not open the store"
        time.sleep(0.01)
    t0 = time.perf_counter()
    (folder / "go").touch()
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        out[name] = json.loads(stdout)
    wall = time.perf_counter() - t0
    with Store(store) as s:
        rows = s.query(model="w")
    return {"writers": out, "rows": rows, "wall_s": wall}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_writers_at_once_lose_and_duplicate_nothing(pg_server, tmp_path, backend):
    n = 200
    store = pg_server.database() if backend == "postgresql" else str(tmp_path / "s.sqlite")
    got = two_writers(store, tmp_path, n)
    rows, writers = got["rows"], got["writers"]
    ids = [r["id"] for r in rows]
    assert len(rows) == 2 * n and len(set(ids)) == 2 * n  # nothing lost, nothing twice, ids unique
    assert sorted(writers["a"]["ids"] + writers["b"]["ids"]) == sorted(ids)  # each id its writer was given
    for name in ("a", "b"):
        mine = [r for r in rows if r["run_id"] == name]
        assert [r["extra"]["seq"] for r in mine] == list(range(n))  # in the order each wrote them
        assert [r["id"] for r in mine] == writers[name]["ids"]
    a, b = writers["a"]["ids"], writers["b"]["ids"]
    assert min(a) < max(b) and min(b) < max(a)  # each wrote its second half after the other's first
    print(f"{backend}: 2 writers x {n} rows, {len(rows)} read back, {len(set(ids))} unique ids; "
          f"a {writers['a']['seconds']:.2f} s, b {writers['b']['seconds']:.2f} s, wall {got['wall_s']:.2f} s")


def test_a_writer_killed_mid_run_keeps_every_row_it_added(pg_server):
    """SIGKILL right after the 25th add (no close, no exit handlers): the 25 rows are in the database, whole."""
    url = pg_server.database()
    script = textwrap.dedent("""
        import os, signal, sys
        from fcbench.results import RunContext, Store
        s = Store(sys.argv[1])
        ctx = RunContext()
        for i in range(25):
            s.add(ctx.row("speed", model="k", p50_ms=float(i), samples_ms=[float(i)] * 100, extra={"seq": i}))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    with Store(url) as s:
        rows = s.query(model="k")
    assert [r["extra"]["seq"] for r in rows] == list(range(25))
    assert all(r["samples_ms"] == [r["p50_ms"]] * 100 for r in rows)


OPENER = textwrap.dedent("""
    import os, sys, time
    from fcbench.results import RunContext, Store
    store, go, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    import sqlalchemy.dialects.postgresql.psycopg, psycopg  # imported before the start, as a host's would be
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    with Store(store) as s:
        s.add(RunContext().row("quality", metric="accuracy", value=0.5))
""")


def test_processes_opening_a_new_database_at_once_create_it_once(pg_server, tmp_path):
    """Four hosts start on an empty database at the same moment: the schema is made once (under the advisory
    lock), none of them mistakes the half-made one for another program's, every row lands."""
    for attempt in range(3):
        url = pg_server.database()
        go = tmp_path / f"go{attempt}"
        ready = [tmp_path / f"ready{attempt}-{i}" for i in range(4)]
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, url, str(go), str(r)], stderr=subprocess.PIPE,
                                  text=True) for r in ready]
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        assert _sql(url, "SELECT count(*) FROM results") == [(4,)]
        assert _sql(url, "SELECT key, value FROM fcbench_meta") == [("schema_version", str(SCHEMA_VERSION))]


def _v1_on_postgres(url: str) -> None:
    """The committed schema-1 SQLite store, table and rows as they are, copied into the database at ``url``
    with ``fcbench_meta`` saying version 1: a store an older fcbench wrote on PostgreSQL."""
    db = sqlite3.connect(f"file:{FIXTURE_V1}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = [(r[1], r[2]) for r in db.execute("PRAGMA table_info(results)") if r[1] != "id"]
        rows = db.execute(f"SELECT id, {', '.join(c for c, _ in columns)} FROM results ORDER BY id").fetchall()
    finally:
        db.close()
    types = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "TEXT": "TEXT"}
    names = ["id", *[c for c, _ in columns]]
    stmts = [
        "CREATE TABLE results (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        + ", ".join(f"{c} {types[t]}" for c, t in columns) + ")",
        "CREATE TABLE fcbench_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO fcbench_meta VALUES ('schema_version', '1')",
    ]
    import sqlalchemy as sa

    eng = _engine(url)
    try:
        with eng.begin() as conn:
            for s in stmts:
                conn.execute(sa.text(s))
            conn.execute(sa.text(f"INSERT INTO results ({', '.join(names)}) VALUES "
                                 f"({', '.join(':' + c for c in names)})"),
                         [dict(zip(names, r, strict=True)) for r in rows])
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('results', 'id'), (SELECT max(id) FROM "
                                 "results))"))
    finally:
        eng.dispose()


def _pg_columns(url: str) -> list[str]:
    return [r[0] for r in _sql(url, "SELECT column_name FROM information_schema.columns WHERE table_name = "
                                    "'results' AND table_schema = current_schema() ORDER BY ordinal_position")]


def test_v1_table_on_postgresql_is_migrated_like_the_sqlite_one(pg_server, tmp_path):
    url = pg_server.database()
    _v1_on_postgres(url)
    assert "samples_ms" not in _pg_columns(url)
    lite_path = tmp_path / "v1.sqlite"
    lite_path.write_bytes(FIXTURE_V1.read_bytes())
    with Store(url) as pg, Store(lite_path) as lite:
        migrated = pg.query()
        assert _comparable(migrated) == _comparable(lite.query())
    assert _sql(url, "SELECT value FROM fcbench_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert set(COLUMNS) <= set(_pg_columns(url))
    speed = [r for r in migrated if r["kind"] == "speed"]
    assert len(migrated) == 11 and len(speed) == 2
    assert all(len(r["samples_ms"]) == 5 and "samples_ms" not in r["extra"] for r in speed)
    assert "pytorch" not in {r["format"] for r in migrated}
    with Store(url) as pg:  # a second open migrates nothing; new rows follow the old ids
        assert pg.query() == migrated
        assert pg.add(RunContext().row("quality", metric="accuracy", value=0.5)) == max(r["id"] for r in migrated) + 1


def test_failed_migration_on_postgresql_leaves_the_database_as_it_was(pg_server, monkeypatch):
    url = pg_server.database()
    _v1_on_postgres(url)
    before = (_pg_columns(url), _sql(url, "SELECT * FROM results ORDER BY id"))

    def half_done(db):
        store_module._v1_to_v2(db)  # columns added, rows rewritten ...
        db.execute("SELECT 1 / 0")  # ... then the server fails the transaction

    monkeypatch.setitem(store_module.MIGRATIONS, 1, half_done)
    with pytest.raises(FcbenchError, match=r"migrating schema version 1 to 2 failed \(division by zero\); the "
                                           r"database is unchanged"):
        Store(url)
    assert (_pg_columns(url), _sql(url, "SELECT * FROM results ORDER BY id")) == before
    assert _sql(url, "SELECT value FROM fcbench_meta") == [("1",)]


def test_newer_schema_is_refused_naming_both_versions(pg_server, cli, tmp_path):
    url = pg_server.database()
    with Store(url) as s:
        s.add(RunContext().row("quality", metric="accuracy", value=0.5))
    _sql(url, "UPDATE fcbench_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(FcbenchError, match=r"schema version 99, newer than this fcbench \(2\)"):
        Store(url)
    r = cli("results", "--store", url)
    assert r.code == 2 and "99" in r.err and "(2)" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert pg_server.password not in r.err and "***" in r.err
    # a verb that measures refuses before any work
    r = cli("bench", tmp_path / "missing.onnx", "--store", url)
    assert r.code == 2 and "schema version 99" in r.err, r.err
    assert _sql(url, "SELECT value FROM fcbench_meta") == [("99",)]  # left alone


def test_a_results_table_fcbench_did_not_write_is_refused(pg_server, cli):
    url = pg_server.database()
    _sql(url, "CREATE TABLE results (id SERIAL PRIMARY KEY, score INTEGER)")
    r = cli("results", "--store", url)
    assert r.code == 2 and "table 'results' that fcbench did not write" in r.err, r.err
    assert _pg_columns(url) == ["id", "score"]  # untouched
    # what the line advises: a schema of fcbench's own in that database
    _sql(url, "CREATE SCHEMA bench")
    mine = url + "?options=-csearch_path%3Dbench"
    r = cli("results", "--store", mine)
    assert r.code == 2 and "is empty" in r.err, r.err
    with Store(mine) as s:
        s.add(RunContext().row("quality", metric="accuracy", value=0.5))
    assert _sql(url, "SELECT count(*) FROM bench.results") == [(1,)] and _pg_columns(url) == ["id", "score"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


def test_unreachable_server_is_one_line_naming_host_and_port(cli, tmp_path):
    port = _closed_port()
    url = f"postgresql://someone:secret@127.0.0.1:{port}/db"
    t0 = time.perf_counter()
    r = cli("results", "--store", url)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in r.err and "refused" in r.err, r.err
    assert "secret" not in r.err and "Traceback" not in r.err
    assert time.perf_counter() - t0 < 10
    # a verb that writes rows fails before its work, the same way
    r = cli("bench", tmp_path / "model.onnx", "--store", url)
    assert r.code == 2 and f"127.0.0.1:{port}" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not (tmp_path / "results").exists() and not Path("postgresql:").exists()
    r = cli("results", "--store", "mysql://u@127.0.0.1/db")
    assert r.code == 2 and "'mysql' databases are not supported" in r.err, r.err


def test_a_server_that_never_answers_times_out_in_one_line(cli):
    """A port that accepts the connection and says nothing (a hung server): the connect timeout ends it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])  # keep it open and silent
                except OSError:
                    pass

        t = threading.Thread(target=accept, daemon=True)
        t.start()
        try:
            t0 = time.perf_counter()
            r = cli("results", "--store", f"postgresql://u@127.0.0.1:{port}/db?connect_timeout=2")
            took = time.perf_counter() - t0
        finally:
            stop.set()
            t.join()
            for c in held:
                c.close()
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"127.0.0.1:{port}" in r.err and "timeout" in r.err, r.err
    assert took < 15


def test_credentials_from_pgpassfile_and_the_environment(pg_server, cli, monkeypatch, tmp_path):
    url = pg_server.database(password=False)
    for var in ("PGPASSWORD", "PGPASSFILE", "PGUSER", "PGHOST", "PGPORT", "PGDATABASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pgpass of the machine's
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    r = cli("results", "--store", url)
    assert r.code == 2 and "password" in r.err and "PGPASSFILE" in r.err and len(r.err.strip().splitlines()) == 1
    # the password from a PGPASSFILE, made by the test server in its temp dir
    assert not pg_server.passfile.resolve().is_relative_to(REPO)
    monkeypatch.setenv("PGPASSFILE", str(pg_server.passfile))
    with Store(url) as s:
        s.add(RunContext().row("quality", model="m", metric="accuracy", value=0.5))
    r = cli("results", "--store", url, "--format", "json")
    assert r.code == 0, r.err
    assert [x["model"] for x in json.loads(r.out)] == ["m"]
    # everything from libpq's environment: postgresql:// names nothing
    monkeypatch.delenv("PGPASSFILE")
    database = url.rsplit("/", 1)[1]
    for var, value in (("PGHOST", "127.0.0.1"), ("PGPORT", str(pg_server.port)), ("PGUSER", pgserver.USER),
                       ("PGDATABASE", database), ("PGPASSWORD", pg_server.password)):
        monkeypatch.setenv(var, value)
    r = cli("results", "--store", "postgresql://", "--format", "json")
    assert r.code == 0, r.err
    assert [x["model"] for x in json.loads(r.out)] == ["m"]
    # the password is in no file of the repository
    tracked = subprocess.run(["git", "grep", "-l", "-F", pg_server.password], cwd=REPO, capture_output=True,
                             text=True)
    assert tracked.stdout == ""


def test_verbs_through_the_cli_write_to_postgresql(pg_server, cli, in_tmp):
    """train and eval with --store URL write their rows into the database as they would into SQLite; results
    reads them back; the run's log stays in results/logs; the password shows nowhere."""
    url = pg_server.database()
    tiny = ["--model", "r18", *[x for k, v in TINY_R18["model_options"].items()
                                for x in ("-o", f"{k}={json.dumps(v, separators=(',', ':'))}")]]
    data = ["--data", TINY_DATA["data"], *[x for k, v in TINY_DATA["data_options"].items()
                                           for x in ("--data-opt", f"{k}={v}")]]
    r = cli("train", *tiny, *data, "--epochs", "1", "--batch-size", "16", "--lr", "0.01", "--threads", "1",
            "--out", "run", "--store", url)
    assert r.code == 0, r.err
    ckpt = in_tmp / "run" / "model.pt"
    pairs = ["--data", "synthetic:pairs", "--data-opt", "num_pairs=40", "--nfolds", "2", "--threads", "1",
             "--format", "json"]
    r = cli("eval", ckpt, *pairs, "--store", url)
    assert r.code == 0, r.err
    on_pg = json.loads(r.out)["metrics"]
    r = cli("eval", ckpt, *pairs, "--store", "s.sqlite")
    assert r.code == 0, r.err
    assert json.loads(r.out)["metrics"] == on_pg  # the same figures, whichever store
    r = cli("results", "--store", url, "--format", "json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    assert {x["kind"] for x in rows} == {"train", "quality"}
    quality = {x["metric"]: x["value"] for x in rows if x["kind"] == "quality"}
    assert quality["accuracy"] == pytest.approx(on_pg["accuracy"])
    with Store("s.sqlite") as lite:
        lite_quality = {x["metric"]: x["value"] for x in lite.query(kind="quality")}
    assert lite_quality == quality
    r = cli("results", "--store", url)  # the table's title names the store without its password
    assert r.code == 0 and pg_server.password not in r.out + r.err
    # a log (kept when something was written to it) goes to results/logs, not to a folder named after the URL
    assert sorted(p.name for p in in_tmp.iterdir() if not p.name.startswith("s.sqlite")) in (["run"], ["results",
                                                                                                     "run"])
    logs = list(in_tmp.rglob("*.log"))
    assert all(p.parent == in_tmp / "results" / "logs" for p in logs), logs
    assert all(pg_server.password not in p.read_text(errors="replace") for p in logs)



def test_a_recipe_stores_into_postgresql(pg_server, cli, in_tmp):
    """A recipe's ``store:`` takes a URL too: its steps write there, its results step reads there; an unreachable
    one fails ``run --check`` naming host and port."""
    url = pg_server.database()
    recipe = in_tmp / "r.yaml"
    body = """
name: shared
vars: {out: runs/shared}
defaults: {store: '%s'}
steps:
%s  - eval: {checkpoint: '${out}/model.pt', data: synthetic:pairs, data_options: {num_pairs: 40}, nfolds: 2}
  - results: {format: csv}
"""
    recipe.write_text(body % (url, TINY_TRAIN))
    r = cli("run", recipe)
    assert r.code == 0, r.err
    assert "accuracy" in r.out and pg_server.password not in r.out + r.err
    with Store(url) as s:
        rows = s.query()
    assert {x["kind"] for x in rows} == {"train", "quality"} and {x["recipe"] for x in rows} == {"shared"}
    port = _closed_port()
    recipe.write_text(body % (f"postgresql://u@127.0.0.1:{port}/db", TINY_TRAIN))
    r = cli("run", recipe, "--check")
    assert r.code == 2 and f"127.0.0.1:{port}" in r.err and len(r.err.strip().splitlines()) == 1, r.err


def test_a_connection_dropped_between_rows_is_replaced_and_an_outage_is_one_line(pg_server):
    """The server drops the store's connection (a restart, an idle timeout): the next row goes through a new one.
    The server is down when a row comes: one line, and the rows written before are kept."""
    url = pg_server.database()
    ctx = RunContext()
    with Store(url) as s:
        s.add(ctx.row("speed", model="m", p50_ms=1.0))
        killed = _sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                           "'fcbench' AND datname = current_database()")
        assert killed == [(True,)]
        s.add(ctx.row("speed", model="m", p50_ms=2.0))
        assert [r["p50_ms"] for r in s.query()] == [1.0, 2.0]  # nothing lost, nothing twice

    own = pgserver.start_pg()  # a server of its own to stop
    try:
        url = own.database()
        with Store(url) as s:
            s.add(ctx.row("speed", model="m", p50_ms=1.0))
            own.halt()
            with pytest.raises(FcbenchError, match=rf"lost the connection to PostgreSQL at 127\.0\.0\.1:{own.port} "
                                                   r".*rows written before are kept") as err:
                s.add(ctx.row("speed", model="m", p50_ms=2.0))
            assert "\n" not in str(err.value) and own.password not in str(err.value)
            own.start()
            s.add(ctx.row("speed", model="m", p50_ms=3.0))  # the same Store goes on once the server is back
        with Store(url) as s:
            assert [r["p50_ms"] for r in s.query()] == [1.0, 3.0]
    finally:
        own.stop()


def test_a_read_only_user_reads_and_is_told_before_any_work(pg_server, cli, tmp_path):
    """A dashboard's or a compare job's user with SELECT only: results works; a verb that would store rows fails
    before its work, in one line saying what to grant; on a database without the tables, it cannot make them."""
    import secrets

    url = pg_server.database()
    with Store(url) as s:
        s.add(RunContext().row("quality", model="m", metric="accuracy", value=0.5))
    role, password = f"reader_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    _sql(url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    _sql(url, f"GRANT SELECT ON results, fcbench_meta TO {role}")
    reader = url.replace(f"{pgserver.USER}:{pg_server.password}@", f"{role}:{password}@")
    r = cli("results", "--store", reader, "--format", "json")
    assert r.code == 0, r.err
    assert [x["model"] for x in json.loads(r.out)] == ["m"]
    r = cli("bench", tmp_path / "model.onnx", "--store", reader)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert f"user {role} cannot store rows there (permission denied for table results); grant" in r.err, r.err
    with pytest.raises(FcbenchError, match="permission denied for table results"):
        with Store(reader) as s:
            s.add(RunContext().row("quality", model="m", metric="accuracy", value=0.6))
    empty = pg_server.database().replace(f"{pgserver.USER}:{pg_server.password}@", f"{role}:{password}@")
    r = cli("results", "--store", empty)
    assert r.code == 2 and "cannot make or upgrade its tables (permission denied for schema public)" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and password not in r.err


def test_report_of_a_postgresql_store_equals_the_sqlite_one(pg_server, cli, tmp_path):
    """fcbench report reads a PostgreSQL store as it reads a file: the same rows give the same page contents,
    and the page names the store without its password."""
    url = pg_server.database()
    lite = tmp_path / "s.sqlite"
    rows = []
    for name, p50, acc in (("fast", 1.0, 0.80), ("accurate", 3.0, 0.95), ("dominated", 4.0, 0.85)):
        common = dict(model="r18", lineage=f"train(arcface) > {name}", artifact=f"m/{name}.onnx",
                      artifact_sha256=name, format="onnx", backend="onnxruntime", variant="cpu")
        rows.append(Row("speed", run_id="bench", **common, profile="ort-cpu", device="local",
                        device_fingerprint="abc", device_info={"cpu": "Test CPU", "arch": "x86_64"}, threads=1,
                        batch=1, p50_ms=p50, p90_ms=p50 * 1.1, samples_ms=[p50 * f for f in (0.9, 1.0, 1.0, 1.2)],
                        model_size_mb=1.0, extra={"status": "ok", "precision": "f32"}))
        rows.append(Row("quality", run_id="eval", **common, metric="accuracy", value=acc, dataset="pairs",
                        protocol="verification"))
    for store in (url, lite):
        with Store(store) as s:
            s.add_many(rows)
    pages = {}
    for name, store in (("pg", url), ("lite", lite)):
        r = cli("report", "--store", store, "--out", tmp_path / f"{name}.html", "--format", "json")
        assert r.code == 0, r.err
        pages[name] = json.loads(r.out)
        assert pg_server.password not in r.out + r.err
    assert pages["pg"]["counts"] == pages["lite"]["counts"] and pages["pg"]["counts"]["pareto"] == 2
    html = (tmp_path / "pg.html").read_text(encoding="utf-8")
    assert pg_server.password not in html and "***@127.0.0.1" in html


def _latencies(ms: float, seed: int, n: int = 300) -> list[float]:
    """``n`` latencies around ``ms`` with a right tail, as a CPU gives them."""
    import random

    rng = random.Random(seed)
    return [ms * (1 + rng.gammavariate(2.0, 0.025)) for _ in range(n)]


def _speed_row(run: str, samples: list[float]) -> Row:
    return Row(kind="speed", run_id=run, model="r18", lineage="train(arcface) > convert(onnx)",
               artifact="m/model.onnx", format="onnx", backend="onnxruntime", variant="cpu", profile="ort-cpu",
               options_hash="0123456789ab", device="local", device_fingerprint="f" * 16,
               device_info={"cpu": "AMD EPYC"}, threads=2, batch=1, input_shape="1x3x32x32", samples_ms=samples,
               runs=len(samples), p50_ms=sorted(samples)[len(samples) // 2], extra={"status": "ok"})


def test_compare_an_sqlite_baseline_against_a_postgresql_run(pg_server, cli, tmp_path):
    """The issue's case: a baseline kept in an SQLite file (or its CSV export) against a run in the shared
    PostgreSQL store, in both directions; a genuine 2x slowdown is caught, the same latencies are not."""
    baseline = tmp_path / "baseline.sqlite"
    with Store(baseline) as s:
        s.add(_speed_row("base", _latencies(5.0, seed=1)))
    url = pg_server.database()
    with Store(url) as s:
        s.add(_speed_row("same", _latencies(5.0, seed=2)))
    r = cli("compare", baseline, "last", "--store", url, "--format", "json")
    assert r.code == 0, r.err
    assert [row["verdict"] for row in json.loads(r.out)["rows"]] == ["same"]
    with Store(url) as s:
        s.add(_speed_row("slow", _latencies(10.0, seed=3)))
    r = cli("compare", baseline, "last", "--store", url, "--format", "json")
    assert r.code == 1, r.err
    assert [row["verdict"] for row in json.loads(r.out)["rows"]] == ["slower"]
    r = cli("compare", "last~1", "last", "--store", url, "--history", "2", "--format", "json")  # runs of the store
    assert r.code == 1, r.err
    assert [row["verdict"] for row in json.loads(r.out)["rows"]] == ["slower"]
    slow_only = pg_server.database()
    with Store(slow_only) as s:
        s.add(_speed_row("slow", _latencies(10.0, seed=3)))
    r = cli("compare", baseline, slow_only, "--format", "markdown")  # a whole PostgreSQL store as NEW
    assert r.code == 1, r.err
    assert "slower" in r.out and pg_server.password not in r.out + r.err, r.out + r.err
    # a CSV export of the PostgreSQL store as the baseline, an SQLite run as NEW
    r = cli("results", "--store", url, "--run", "same", "--format", "csv")
    assert r.code == 0, r.err
    (tmp_path / "pg.csv").write_text(r.out)
    r = cli("compare", tmp_path / "pg.csv", baseline, "--format", "json")
    assert r.code == 0, r.err
    assert [row["verdict"] for row in json.loads(r.out)["rows"]] == ["same"]
    assert pg_server.password not in r.out + r.err
