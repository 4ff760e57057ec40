"""The results store: one SQLite table of measurements, owned by this module alone.

Every figure becomes a row the moment it exists (one transaction per row), so a crash
mid-run loses nothing already measured. The schema follows ARCHITECTURE.md; fields a
row does not use stay NULL. ``extra`` holds JSON for what does not fit a column yet
(placement, failure reasons, ...), so readers added later need no migration.

The schema has a version (SQLite's ``user_version``). Opening an older store migrates it
in place, in one transaction, through ``MIGRATIONS`` (version n -> n + 1, in order); a
newer store is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, overload

from fcbench.errors import FcbenchError

DEFAULT_STORE = Path("results") / "fcbench.sqlite"
SCHEMA_VERSION = 2


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
    profile: str = ""  # the backend profile asked for (openvino-f32); '' when given as plugin:variant
    options_hash: str = ""  # options_hash() of the runtime options in effect
    device: str = ""
    device_fingerprint: str = ""
    device_info: dict[str, Any] = field(default_factory=dict)  # CPU, flags, cores, memory, OS, runtime versions
    threads: int | None = None
    batch: int | None = None
    input_shape: str = ""
    # speed
    warmup: int | None = None
    runs: int | None = None
    samples_ms: list[float] = field(default_factory=list)  # every timed run, in order
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
KINDS = ("train", "quality", "speed", "compress")  # the kinds of row fcbench's verbs write
_FILTER_WORDS = {"run_id": "run", "kind": "kind", "model": "model", "metric": "metric"}
# JSON columns, each with the empty value a NULL reads as
_JSON_COLUMNS: dict[str, Callable[[], Any]] = {"runtime_versions": dict, "device_info": dict, "samples_ms": list,
                                               "extra": dict}


def options_hash(options: dict[str, Any]) -> str:
    """A short name for a set of runtime options: the first 12 hex digits of the sha256 of their
    canonical JSON (keys sorted at every level, no spaces), so equal options hash alike in any order."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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


# --- migrations: MIGRATIONS[n] takes a store from version n to n + 1, inside the caller's transaction.
# Each names its columns literally: it must do the same thing however Row changes later.

def _add_columns(db: sqlite3.Connection, columns: dict[str, tuple[str, Any]]) -> None:
    """Add each column (name: (SQL type, value for the rows already there)) the table lacks."""
    have = {r[1] for r in db.execute("PRAGMA table_info(results)")}
    for name, (sql_type, value) in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE results ADD COLUMN {name} {sql_type}")
            if value is not None:
                db.execute(f"UPDATE results SET {name} = ?", (value,))


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Row identity columns; per-run timings leave ``extra`` for their own column; checkpoints are
    ``fcbench-ckpt`` in every row (quality rows said ``pytorch``)."""
    _add_columns(db, {"profile": ("TEXT", ""), "options_hash": ("TEXT", ""), "device_fingerprint": ("TEXT", ""),
                      "device_info": ("TEXT", "{}"), "samples_ms": ("TEXT", "[]")})
    moved = []
    for row_id, text in db.execute("SELECT id, extra FROM results WHERE extra LIKE '%samples_ms%'").fetchall():
        try:
            extra = json.loads(text)
        except (TypeError, ValueError):
            continue  # not JSON: left as it is
        if isinstance(extra, dict) and isinstance(extra.get("samples_ms"), list):
            samples = extra.pop("samples_ms")
            moved.append((json.dumps(samples), json.dumps(extra, sort_keys=True), row_id))
    db.executemany("UPDATE results SET samples_ms = ?, extra = ? WHERE id = ?", moved)
    db.execute("UPDATE results SET format = 'fcbench-ckpt' WHERE format = 'pytorch'")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}


def _empty_value(f) -> Any:
    if f.name in _JSON_COLUMNS:
        return json.dumps(_JSON_COLUMNS[f.name]())
    return "" if _sql_type(f) == "TEXT" else None


class HasRows(Protocol):
    """A result that knows its rows (``Store.add`` writes them)."""

    def to_rows(self) -> Iterable[Row]: ...


class Store:
    """SQLite results store. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        from fcbench.paths import store_file

        self.path = store_file(path)  # a directory or a file of another kind: one line, before SQLite's
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0)
        except sqlite3.DatabaseError as exc:
            raise self._not_sqlite(exc) from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._upgrade()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._not_sqlite(exc) from exc
        except BaseException:
            self._db.close()
            raise

    def _not_sqlite(self, exc: Exception) -> FcbenchError:
        return FcbenchError(f"results store {self.path} cannot be opened as SQLite ({exc}); "
                            "point --store at another file")

    def _version(self) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise FcbenchError(
                f"results store {self.path} has schema version {version}, newer than this fcbench "
                f"({SCHEMA_VERSION}); upgrade fcbench or use another --store"
            )
        return version

    def _has_table(self) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'results'").fetchone()
        return found is not None

    def _upgrade(self) -> None:
        """Create the table in a new file; migrate an older store in place, all in one transaction
        (a failure leaves it as it was); leave a current one untouched."""
        if self._version() == SCHEMA_VERSION and self._has_table():
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one writer: a second process opening the file waits, then finds it done
        try:
            version = self._version()  # again, under the lock
            if not self._has_table():
                db.execute(_DDL)
            elif version < SCHEMA_VERSION:
                for v in range(max(version, 1), SCHEMA_VERSION):  # 0 with a table: written before versions
                    try:
                        MIGRATIONS[v](db)
                    except sqlite3.DatabaseError as exc:
                        raise FcbenchError(f"results store {self.path}: migrating schema version {v} to {v + 1} "
                                           f"failed ({exc}); the file is unchanged") from exc
                # files from before versions were stamped may lack columns of any version
                _add_columns(db, {f.name: (_sql_type(f), _empty_value(f)) for f in fields(Row)})
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @overload
    def add(self, item: Row) -> int: ...

    @overload
    def add(self, item: HasRows) -> list[int]: ...

    def add(self, item: Row | HasRows) -> int | list[int]:
        """Write one row now (its own transaction) and return its id. Given a result with a
        ``to_rows()`` method, write each of its rows so, as they come, and return their ids."""
        if isinstance(item, Row):
            return self._insert(item)
        to_rows = getattr(item, "to_rows", None)
        if not callable(to_rows):
            raise TypeError(f"Store.add takes a Row or a result with to_rows(), not {type(item).__name__}")
        ids = []
        for row in to_rows():
            if not isinstance(row, Row):
                raise TypeError(f"{type(item).__name__}.to_rows() gave a {type(row).__name__}, not a Row")
            ids.append(self._insert(row))
        return ids

    def _insert(self, row: Row) -> int:
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
        """Rows as dicts, oldest first, filtered by the given fields. JSON columns come decoded
        (``samples_ms`` a list, ``device_info`` a dict)."""
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

    def distinct(self, column: str) -> list[str]:
        """The distinct non-empty values of ``column`` (a Row field), in the order they first appear."""
        if column not in COLUMNS:
            raise ValueError(f"no column {column!r}")
        sql = f"SELECT {column} FROM results WHERE {column} IS NOT NULL AND {column} != '' GROUP BY {column} " \
              "ORDER BY MIN(id)"
        return [str(r[0]) for r in self._db.execute(sql)]

    def why_empty(self, filters: dict[str, str | None]) -> str:
        """One line saying why ``query(**filters)`` found nothing: the store is empty, a value no row has
        (with the closest one and those the store holds), or values that exist but never together."""
        from fcbench.errors import suggest

        if self._db.execute("SELECT 1 FROM results LIMIT 1").fetchone() is None:
            return (f"results store {self.path} is empty (no rows yet); run train, eval, bench or compress with "
                    f"--store {self.path} first")
        given = {col: val for col, val in filters.items() if val is not None}
        for col, val in given.items():
            have = self.distinct(col)
            if val not in have:
                word = _FILTER_WORDS.get(col, col)
                known = have + [k for k in KINDS if col == "kind" and k not in have]
                shown = ", ".join(have[-20:]) + (f" (and {len(have) - 20} older)" if len(have) > 20 else "")
                return (f"no rows with {word} '{val}' in {self.path}{suggest(val, known)}; {word}s in the store: "
                        f"{shown or 'none'}")
        both = ", ".join(f"{_FILTER_WORDS.get(c, c)} '{v}'" for c, v in given.items())
        return f"no rows in {self.path} have {both} together; drop a filter to see what each matches"

    def run_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT run_id FROM results GROUP BY run_id ORDER BY MIN(id)")]

    @staticmethod
    def _decode(raw: tuple) -> dict[str, Any]:
        out: dict[str, Any] = {"id": raw[0]}
        for name, v in zip(COLUMNS, raw[1:], strict=True):
            if name in _JSON_COLUMNS:
                out[name] = json.loads(v) if v else _JSON_COLUMNS[name]()
            else:
                out[name] = v
        return out


@contextmanager
def open_store(path: str | Path | None) -> Iterator[Store]:
    store = Store(path or DEFAULT_STORE)
    try:
        yield store
    finally:
        store.close()
