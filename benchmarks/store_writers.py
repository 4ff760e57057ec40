"""Several processes writing into one results store at once: PostgreSQL (a real server, started as the tests
start it, from ``tests/pgserver.py``) and an SQLite file side by side.

Each writer process opens ``fcbench.Store`` (a URL or the file), waits for a common start signal, then adds
``--rows`` speed rows one by one (one transaction each, as a bench run does) and reports the ids it was given
and the time each ``add`` took. The script then reads the store back and prints, per backend: rows written and
read, ids unique, rows lost or written twice (matched by writer and sequence number), the wall time, rows/s and
the median and p90 of one ``add``. Both make each commit durable (PostgreSQL with fsync on, its default;
SQLite in WAL mode, synchronous FULL, Python's default). Not a test: run it on a quiet machine; ``--writers``
and ``--rows`` scale it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WRITER = """
import json, os, sys, time
from fcbench.results import RunContext, Store
store, name, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = RunContext()
with Store(store) as s:
    open(os.path.join(folder, name + ".ready"), "w").close()
    while not os.path.exists(os.path.join(folder, "go")):
        time.sleep(0.001)
    ids, took = [], []
    for i in range(n):
        t = time.perf_counter()
        ids.append(s.add(ctx.row("speed", run_id=name, model="w", p50_ms=float(i), samples_ms=[1.0] * 50,
                                 extra={"writer": name, "seq": i})))
        took.append(time.perf_counter() - t)
print(json.dumps({"ids": ids, "took": took}))
"""


def run(store: str, writers: int, rows: int, folder: Path) -> dict:
    folder.mkdir(parents=True)
    names = [f"w{i}" for i in range(writers)]
    procs = {n: subprocess.Popen([sys.executable, "-c", WRITER, store, n, str(rows), str(folder)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in names}
    while not all((folder / f"{n}.ready").exists() for n in names):
        for n, p in procs.items():
            if p.poll() is not None:
                raise SystemExit(f"writer {n} exited: {p.stderr.read()}")
        time.sleep(0.01)
    t0 = time.perf_counter()
    (folder / "go").touch()
    out = {}
    for n, p in procs.items():
        stdout, stderr = p.communicate()
        if p.returncode:
            raise SystemExit(f"writer {n} failed: {stderr}")
        out[n] = json.loads(stdout)
    wall = time.perf_counter() - t0
    from fcbench.results import Store

    with Store(store) as s:
        back = s.query(model="w")
    ids = [r["id"] for r in back]
    seen = [(r["extra"]["writer"], r["extra"]["seq"]) for r in back]
    expected = {(n, i) for n in names for i in range(rows)}
    took = sorted(t for o in out.values() for t in o["took"])
    return {"written": writers * rows, "read": len(back), "unique_ids": len(set(ids)),
            "lost": len(expected - set(seen)), "twice": len(seen) - len(set(seen)),
            "ids_as_given": sorted(ids) == sorted(i for o in out.values() for i in o["ids"]),
            "wall_s": wall, "rows_per_s": writers * rows / wall,
            "add_p50_ms": 1000 * statistics.median(took), "add_p90_ms": 1000 * took[int(0.9 * (len(took) - 1))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--rows", type=int, default=1000, help="rows per writer")
    args = p.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    import pgserver

    print("$", " ".join([Path(sys.executable).name, *sys.argv]))
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    root = Path(tempfile.mkdtemp(prefix="fcbench-writers-"))
    server = pgserver.start_pg(fsync=True)  # durable commits, as SQLite's
    try:
        version = server.psql("SHOW server_version").strip().split()[0]
        results = {f"PostgreSQL {version}": run(server.database(), args.writers, args.rows, root / "pg"),
                   "SQLite (WAL)": run(str(root / "s.sqlite"), args.writers, args.rows, root / "lite")}
    finally:
        server.stop()
    print(f"{args.writers} writers x {args.rows} rows, one transaction per row")
    print(f"{'store':<18} {'written':>7} {'read':>6} {'unique ids':>10} {'lost':>5} {'twice':>5} {'wall s':>7} "
          f"{'rows/s':>7} {'add p50 ms':>10} {'add p90 ms':>10}")
    for name, r in results.items():
        print(f"{name:<18} {r['written']:>7} {r['read']:>6} {r['unique_ids']:>10} {r['lost']:>5} {r['twice']:>5} "
              f"{r['wall_s']:>7.2f} {r['rows_per_s']:>7.0f} {r['add_p50_ms']:>10.2f} {r['add_p90_ms']:>10.2f}"
              + ("" if r["ids_as_given"] else "  (ids differ from those the writers were given!)"))
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
