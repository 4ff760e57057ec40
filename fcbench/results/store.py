"""The results store: one SQLite table of measurements, owned by this module alone.

Every figure becomes a row the moment it exists (one transaction per row), so a crash
mid-run loses nothing already measured. The schema follows ARCHITECTURE.md; fields a
row does not use stay NULL. ``extra`` holds JSON for what does not fit a column yet
(per-run samples, placement, ...), so readers added later need no migration.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fcbench.errors import FcbenchError

DEFAULT_STORE = Path("results") / "fcbench.sqlite"
SCHEMA_VERSION = 1


@dataclass
class Row:
    """One measurement. ``kind`` is 'speed', 'quality' or 'train'."""

    kind: str
    run_id: str = ""
    time: str = ""
    git_rev: str = ""
    fcbench_version: str = ""
    runtime_versions: dict[str, str] = field(default_factory=dict)
    recipe: str = ""
    model: str = ""
    lineage: str = ""
    artifact: str = ""
    artifact_sha256: str = ""
    format: str = ""
    backend: str = ""
    variant: str = ""
    device: str = ""
    threads: int | None = None
    batch: int | None = None
    input_shape: str = ""
    # speed
    warmup: int | None = None
    runs: int | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    init_ms: float | None = None
    first_run_ms: float | None = None
    peak_mem_mb: float | None = None
    model_size_mb: float | None = None
    gflops_per_s: float | None = None
    peak_share: float | None = None
    # quality
    metric: str = ""
    value: float | None = None
    dataset: str = ""
    protocol: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


COLUMNS: list[str] = [f.name for f in fields(Row)]
_JSON_COLUMNS = {"runtime_versions", "extra"}


def _sql_type(f) -> str:
    if f.type in ("int | None",):
        return "INTEGER"
    if f.type in ("float | None",):
        return "REAL"
    return "TEXT"


_DDL = (
    "CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{f.name} {_sql_type(f)}" for f in fields(Row))
    + ")"
)


class Store:
    """SQLite results store. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise FcbenchError(
                    f"results store {self.path} has schema version {version}, newer than this fcbench "
                    f"({SCHEMA_VERSION}); upgrade fcbench or use another --store"
                )
            self._db.execute(_DDL)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise FcbenchError(
                f"results store {self.path} cannot be opened as SQLite ({exc}); "
                "point --store at another file"
            ) from exc

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def add(self, row: Row) -> int:
        """Write one row now (its own transaction) and return its id."""
        values = []
        for name in COLUMNS:
            v = getattr(row, name)
            values.append(json.dumps(v, sort_keys=True) if name in _JSON_COLUMNS else v)
        with self._db:
            cur = self._db.execute(
                f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                values,
            )
        return int(cur.lastrowid)

    def add_many(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.add(row)

    def query(
        self,
        *,
        run_id: str | None = None,
        kind: str | None = None,
        model: str | None = None,
        metric: str | None = None,
        last_run: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows as dicts, oldest first, filtered by the given fields."""
        where, args = [], []
        if last_run:
            latest = self._db.execute("SELECT run_id FROM results ORDER BY id DESC LIMIT 1").fetchone()
            if latest is None:
                return []
            run_id = latest[0]
        for col, val in (("run_id", run_id), ("kind", kind), ("model", model), ("metric", metric)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT id, " + ", ".join(COLUMNS) + " FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        rows = [self._decode(r) for r in self._db.execute(sql, args)]
        return rows[-limit:] if limit else rows

    def run_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT run_id FROM results GROUP BY run_id ORDER BY MIN(id)")]

    @staticmethod
    def _decode(raw: tuple) -> dict[str, Any]:
        out: dict[str, Any] = {"id": raw[0]}
        for name, v in zip(COLUMNS, raw[1:], strict=True):
            out[name] = json.loads(v) if name in _JSON_COLUMNS and v else v
        return out


@contextmanager
def open_store(path: str | Path | None) -> Iterator[Store]:
    store = Store(path or DEFAULT_STORE)
    try:
        yield store
    finally:
        store.close()
