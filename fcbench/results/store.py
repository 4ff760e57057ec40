"""The results store: one table of measurements, owned by this module (and :mod:`fcbench.results.sql`
for PostgreSQL) alone.

Every figure becomes a row the moment it exists (one transaction per row), so a crash
mid-run loses nothing already measured. The schema follows ARCHITECTURE.md; fields a
row does not use stay NULL. ``extra`` holds JSON for what does not fit a column yet
(placement, failure reasons, ...), so readers added later need no migration.

Two backends keep the same table and the same guarantees: an SQLite file (a path: the embedded
default, through the standard library's ``sqlite3``) and a PostgreSQL database (a
``postgresql://user@host:port/db`` URL, through SQLAlchemy Core and psycopg, see
:mod:`fcbench.results.sql`) that several CI runners and device hosts write at once.

The schema has a version (SQLite's ``user_version``; on PostgreSQL the row ``schema_version`` of
the table ``fcbench_meta``). Opening an older store migrates it in place, in one transaction,
through ``MIGRATIONS`` (version n -> n + 1, in order); a newer store is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
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
    """The column's type as SQLite spells it (a backend maps it to its own: REAL is DOUBLE PRECISION on
    PostgreSQL)."""
    if f.type in ("int | None",):
        return "INTEGER"
    if f.type in ("float | None",):
        return "REAL"
    return "TEXT"


_TEXT_COLUMNS = {f.name for f in fields(Row) if _sql_type(f) == "TEXT"}
# the numeric columns and the Python type each reads as (an export's text parses back with it); "id" is the
# store's own key
NUMERIC_COLUMNS: dict[str, type] = {"id": int, **{f.name: int if _sql_type(f) == "INTEGER" else float
                                                  for f in fields(Row) if _sql_type(f) != "TEXT"}}
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/(?P<rest>.*)$")  # also a URL that went through Path


def is_url(store: str | Path | None) -> bool:
    """Whether a ``--store`` value is a database URL (``postgresql://...``) rather than an SQLite file path.
    A URL that went through ``Path`` (which folds ``//`` into ``/``) still counts."""
    m = _URL.match(str(store or ""))
    return bool(m) and len(m["scheme"]) > 1  # a one-letter scheme is a Windows drive (C:/...)


def masked(store: str | Path | None) -> str:
    """``store`` as messages show it: a URL's password (``user:PASSWORD@``) as ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)[^/]*@", r"\1***@", str(store or ""))


def _url_text(store: str | Path) -> str:
    """The URL as given, with the ``//`` that ``Path`` folded away put back."""
    m = _URL.match(str(store))
    assert m is not None
    rest = m["rest"]
    if not rest.startswith("/"):
        rest = "/" + rest
    return f"{m['scheme']}:/{rest}"


def _sqlite_url_path(url: str) -> Path | None:
    """The file an ``sqlite:///path`` URL names (SQLAlchemy's spelling: ``sqlite:///rel.sqlite``,
    ``sqlite:////abs/path.sqlite``), else None."""
    m = re.match(r"^sqlite:///(?P<path>.+)$", url)
    return Path(m["path"]) if m else None


def local_dir(store: str | Path | None) -> Path:
    """The folder that keeps a run's local files (``logs/``, ``worker-logs/``): the SQLite store's folder,
    or ``results/`` in the working directory for a database URL."""
    if is_url(store):
        path = _sqlite_url_path(_url_text(store))  # type: ignore[arg-type]
        return path.parent if path else DEFAULT_STORE.parent
    return Path(store or DEFAULT_STORE).parent


def check_store(store: str | Path, option: str = "--store") -> str | Path:
    """A results store checked before a verb runs. A path: as :func:`fcbench.paths.store_file` (nothing is
    created). A URL: the server is reached, the schema version read (a newer one is refused) and the user's
    right to store rows checked, so an unreachable or unwritable database fails with one line before any work
    (the tables are made when the first rows come). Returns the path, or the URL as given."""
    from fcbench.paths import store_file

    if not is_url(store):
        return store_file(store, option)
    url = _url_text(store)
    path = _sqlite_url_path(url)
    if path is not None:
        return store_file(path, option)
    from fcbench.results.sql import open_database

    db = open_database(url, option)
    try:
        version = db.version()
        if version > SCHEMA_VERSION:
            raise _newer(db.where, version)
        why = db.cannot_write()
        if why:
            from fcbench.results.sql import _hint

            user = db.execute("SELECT current_user")[0][0]
            raise FcbenchError(f"results store {db.where}: user {user} cannot store rows there ({why}); "
                               f"{_hint(why, '')}")
    finally:
        db.close()
    return url


def _newer(where: str | Path, version: int) -> FcbenchError:
    return FcbenchError(f"results store {where} has schema version {version}, newer than this fcbench "
                        f"({SCHEMA_VERSION}); upgrade fcbench or use another --store")


class Database(Protocol):
    """What a backend gives :class:`Store`: SQL with ``:name`` parameters in, rows as tuples out.

    ``execute`` outside :meth:`exclusive` runs in a transaction of its own; inside it, in the exclusive one."""

    where: str  # the store as messages name it: the path, or the URL without its password
    errors: tuple[type[BaseException], ...]  # the driver's errors (a failed migration is reported, not raised)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]: ...

    def executemany(self, sql: str, params: list[dict[str, Any]]) -> None: ...

    def insert(self, sql: str, params: dict[str, Any]) -> int: ...

    def columns(self) -> set[str]: ...

    def has_table(self) -> bool: ...

    def version(self) -> int: ...

    def set_version(self, version: int) -> None: ...

    def exclusive(self) -> Any: ...  # a context manager: one transaction, one process at a time

    def sql_type(self, generic: str) -> str: ...

    def id_column(self) -> str: ...

    def close(self) -> None: ...


class _Sqlite:
    """The embedded backend: one SQLite file in WAL mode through :mod:`sqlite3`."""

    errors: tuple[type[BaseException], ...] = (sqlite3.DatabaseError,)

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        self.db = sqlite3.connect(str(path), timeout=30.0)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self.db.execute(sql, params or {}).fetchall()  # a SELECT outside a transaction opens none

    def executemany(self, sql: str, params: list[dict[str, Any]]) -> None:
        self.db.executemany(sql, params)

    def insert(self, sql: str, params: dict[str, Any]) -> int:
        with self.db:
            cur = self.db.execute(sql, params)
        return int(cur.lastrowid)

    def columns(self) -> set[str]:
        return {r[1] for r in self.db.execute("PRAGMA table_info(results)")}

    def has_table(self) -> bool:
        found = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'results'").fetchone()
        return found is not None

    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, version: int) -> None:
        self.db.execute(f"PRAGMA user_version={int(version)}")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")  # one writer: a second process opening the file waits, then finds it done
        try:
            yield
            self.db.commit()
        except BaseException:
            self.db.rollback()
            raise

    def sql_type(self, generic: str) -> str:
        return generic

    def id_column(self) -> str:
        return "id INTEGER PRIMARY KEY AUTOINCREMENT"

    def close(self) -> None:
        self.db.close()


def _ddl(db: Database) -> str:
    return (f"CREATE TABLE IF NOT EXISTS results ({db.id_column()}, "
            + ", ".join(f"{f.name} {db.sql_type(_sql_type(f))}" for f in fields(Row)) + ")")


# --- migrations: MIGRATIONS[n] takes a store from version n to n + 1, inside the caller's transaction, on
# either backend (SQL with :name parameters through ``Database.execute``; types as SQLite spells them, which
# ``_add_columns`` maps). Each names its columns literally: it must do the same thing however Row changes later.

def _add_columns(db: Database, columns: dict[str, tuple[str, Any]]) -> None:
    """Add each column (name: (SQL type, value for the rows already there)) the table lacks."""
    have = db.columns()
    for name, (sql_type, value) in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE results ADD COLUMN {name} {db.sql_type(sql_type)}")
            if value is not None:
                db.execute(f"UPDATE results SET {name} = :value", {"value": value})


def _v1_to_v2(db: Database) -> None:
    """Row identity columns; per-run timings leave ``extra`` for their own column; checkpoints are
    ``fcbench-ckpt`` in every row (quality rows said ``pytorch``)."""
    _add_columns(db, {"profile": ("TEXT", ""), "options_hash": ("TEXT", ""), "device_fingerprint": ("TEXT", ""),
                      "device_info": ("TEXT", "{}"), "samples_ms": ("TEXT", "[]")})
    moved = []
    for row_id, text in db.execute("SELECT id, extra FROM results WHERE extra LIKE '%samples_ms%' ORDER BY id"):
        try:
            extra = json.loads(text)
        except (TypeError, ValueError):
            continue  # not JSON: left as it is
        if isinstance(extra, dict) and isinstance(extra.get("samples_ms"), list):
            samples = extra.pop("samples_ms")
            moved.append({"samples": json.dumps(samples), "extra": json.dumps(extra, sort_keys=True), "id": row_id})
    if moved:
        db.executemany("UPDATE results SET samples_ms = :samples, extra = :extra WHERE id = :id", moved)
    db.execute("UPDATE results SET format = 'fcbench-ckpt' WHERE format = 'pytorch'")


MIGRATIONS: dict[int, Callable[[Database], None]] = {1: _v1_to_v2}


def _empty_value(f) -> Any:
    if f.name in _JSON_COLUMNS:
        return json.dumps(_JSON_COLUMNS[f.name]())
    return "" if _sql_type(f) == "TEXT" else None


class HasRows(Protocol):
    """A result that knows its rows (``Store.add`` writes them)."""

    def to_rows(self) -> Iterable[Row]: ...


_INSERT = f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})"


class Store:
    """The results store: an SQLite file (a path; the default) or a PostgreSQL database (a
    ``postgresql://user@host:port/db`` URL). Use as a context manager or call ``close()``.

    ``path`` names the store in messages: the file's path, or the URL without its password;
    ``backend`` is ``'sqlite'`` or ``'postgresql'``."""

    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        from fcbench.paths import store_file

        url_path = _sqlite_url_path(_url_text(path)) if is_url(path) else None
        if is_url(path) and url_path is None:
            from fcbench.results.sql import open_database

            self._db: Database = open_database(_url_text(path))
            self.path: Path | str = self._db.where
            self.backend = "postgresql"
            try:
                self._upgrade()
            except self._db.errors as exc:  # making or migrating the tables (a user without the right)
                from fcbench.results.sql import _hint, _reason

                self._db.close()
                why = _reason(exc)
                raise FcbenchError(f"results store {self.path}: cannot make or upgrade its tables ({why}); "
                                   f"{_hint(why, '', 'see the server log')}") from None
            except BaseException:
                self._db.close()
                raise
            return
        self.backend = "sqlite"
        # a directory or a file of another kind: one line, before SQLite's
        self.path = path = store_file(url_path if url_path is not None else path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = db = _Sqlite(path)
        except sqlite3.DatabaseError as exc:
            raise self._not_sqlite(exc) from exc
        try:
            self._open_sqlite(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._not_sqlite(exc) from exc
        except BaseException:
            db.close()
            raise

    def _open_sqlite(self, db: Any, patience: float = 30.0) -> None:
        """WAL mode and the tables. Two processes opening a new store at once can get "database is locked" at
        once, without SQLite's busy handler waiting (it refuses a lock upgrade that could deadlock): try again
        for up to ``patience`` seconds."""
        deadline = time.monotonic() + patience
        delay = 0.01
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                self._upgrade()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                with suppress(sqlite3.Error):
                    db.db.rollback()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _not_sqlite(self, exc: Exception) -> FcbenchError:
        return FcbenchError(f"results store {self.path} cannot be opened as SQLite ({exc}); "
                            "point --store at another file")

    def _version(self) -> int:
        version = self._db.version()
        if version > SCHEMA_VERSION:
            raise _newer(self.path, version)
        return version

    def _upgrade(self) -> None:
        """Create the table in a new store; migrate an older store in place, all in one transaction
        (a failure leaves it as it was); leave a current one untouched."""
        db = self._db
        if self._version() == SCHEMA_VERSION and db.has_table():
            return
        with db.exclusive():  # a second process opening the store waits, then finds it done
            version = self._version()  # again, under the lock
            if not db.has_table():
                db.execute(_ddl(db))
            elif version < SCHEMA_VERSION:
                for v in range(max(version, 1), SCHEMA_VERSION):  # 0 with a table: written before versions
                    try:
                        MIGRATIONS[v](db)
                    except db.errors as exc:
                        from fcbench.errors import first_line

                        raise FcbenchError(f"results store {self.path}: migrating schema version {v} to {v + 1} "
                                           f"failed ({first_line(getattr(exc, 'orig', None) or exc)}); the "
                                           f"{'file' if self.backend == 'sqlite' else 'database'} is unchanged"
                                           ) from exc
                # stores from before versions were stamped may lack columns of any version
                _add_columns(db, {f.name: (_sql_type(f), _empty_value(f)) for f in fields(Row)})
            db.set_version(SCHEMA_VERSION)

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
        values = {}
        for name in COLUMNS:
            v = getattr(row, name)
            if name in _JSON_COLUMNS:
                v = json.dumps(v, sort_keys=True)
            elif isinstance(v, float) and math.isnan(v):
                v = None  # what SQLite makes of NaN; PostgreSQL would keep it, and the stores must read alike
            values[name] = v
        return self._db.insert(_INSERT, values)

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
        where, args = [], {}
        if last_run:
            latest = self._db.execute("SELECT run_id FROM results ORDER BY id DESC LIMIT 1")
            if not latest:
                return []
            run_id = latest[0][0]
        for col, val in (("run_id", run_id), ("kind", kind), ("model", model), ("metric", metric)):
            if val is not None:
                where.append(f"{col} = :{col}")
                args[col] = val
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
        empty = f" AND {column} != ''" if column in _TEXT_COLUMNS else ""
        sql = f"SELECT {column} FROM results WHERE {column} IS NOT NULL{empty} GROUP BY {column} ORDER BY MIN(id)"
        return [str(r[0]) for r in self._db.execute(sql)]

    def why_empty(self, filters: dict[str, str | None]) -> str:
        """One line saying why ``query(**filters)`` found nothing: the store is empty, a value no row has
        (with the closest one and those the store holds), or values that exist but never together."""
        from fcbench.errors import suggest

        if not self._db.execute("SELECT 1 FROM results LIMIT 1"):
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

    def resolve_run(self, spec: str, what: str = "run", noun: str = "run") -> str:
        """The run id ``spec`` names: ``last``, ``last~N`` (N runs before the last) or an id the store holds;
        otherwise FcbenchError naming the store, with the closest id and the newest ones (``what`` names the
        caller's argument, e.g. ``compare: BASE``; ``noun`` what else ``spec`` could have been)."""
        from fcbench.errors import suggest

        have = self.run_ids()
        m = re.fullmatch(r"last(?:~(.*))?", spec.strip())
        if m:
            tail = m.group(1)
            if tail is not None and not tail.isdigit():
                raise FcbenchError(f"{what} '{spec}': write last~N with N a whole number, e.g. last~1")
            back = int(tail or 0)
            if back >= len(have):
                raise FcbenchError(f"{what} '{spec}': the store {self.path} holds {len(have)} run(s); "
                                   + (f"last~{len(have) - 1} is the oldest" if have else "bench or eval into it first"))
            return have[-1 - back]
        if spec not in have:
            shown = ", ".join(have[-5:]) or "none"
            raise FcbenchError(f"{what} '{spec}' is no {noun} in {self.path}{suggest(spec, have)}; its newest runs: "
                               f"{shown} (or last, last~1)")
        return spec

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
