"""The results store on PostgreSQL, through SQLAlchemy Core and psycopg 3 (``pip install 'fcbench[postgres]'``).

:class:`fcbench.results.store.Store` chooses this backend for a ``postgresql://`` (or ``postgresql+psycopg://``,
``postgres://``) URL and keeps everything else (rows, JSON columns, migrations) in one place; this module only
connects, runs SQL and keeps the schema version. Imported only for a URL, so an SQLite store never pays for
SQLAlchemy's import.

* Tables: ``results`` (the same columns as SQLite's, REAL as DOUBLE PRECISION, JSON columns as TEXT holding the
  same JSON, ``id`` an identity column) and ``fcbench_meta`` (``key``, ``value``) whose row ``schema_version`` is
  the schema version. A ``results`` table without ``fcbench_meta`` is somebody else's and is refused.
* Transactions: one per row written, every read one of its own (single statements in autocommit mode: no
  BEGIN/COMMIT round trips, and no connection sits idle in a transaction holding locks); the connection is
  pinged before each (a dropped one is replaced before the row is sent); creating or migrating the schema
  takes a transaction-scoped advisory lock, so two processes opening a new database at once create it once.
* Credentials: the URL's, else libpq's own (``PGPASSFILE``, ``~/.pgpass``, ``PGPASSWORD``, ``PGUSER``,
  ``PGHOST``, ``PGPORT`` ...); nothing is read from a file of this repository. Messages show the URL with its
  password masked.
* A connect timeout (``FCBENCH_PG_CONNECT_TIMEOUT`` seconds, default 5; ``?connect_timeout=`` in the URL or
  ``PGCONNECT_TIMEOUT`` win) makes an unreachable server one line, quickly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fcbench.errors import FcbenchError
from fcbench.results.store import masked as _masked

_LOCK_KEY = 0x6663_6265_6E63_68  # pg_advisory_xact_lock key of schema changes ('fcbench' in hex)
DEFAULT_CONNECT_TIMEOUT_S = 5
_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "TEXT": "TEXT"}
_INSTALL = "pip install 'fcbench[postgres]'"


def _reason(exc: BaseException) -> str:
    """What libpq said, on one line, without its 'connection to server at ... failed:' preamble."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    text = re.sub(r"^connection failed:\s*", "", text)
    text = re.sub(r"^connection to server (at|on) .*? failed:\s*", "", text)
    text = re.sub(r"^(FATAL|ERROR):\s+", "", text)
    return text.rstrip(".") or type(orig).__name__


def _hint(reason: str, database: str,
          otherwise: str = "is the server running there? check the URL's host and port") -> str:
    low = reason.lower()
    if "password" in low or "authentication" in low:
        return "give the password in the URL (postgresql://user:PASSWORD@host:port/db), a PGPASSFILE or PGPASSWORD"
    if "database" in low and "does not exist" in low:
        return f"create it (createdb {database}) or name another database in the URL"
    if "role" in low and "does not exist" in low:
        return "name an existing user in the URL (postgresql://USER@host:port/db) or PGUSER"
    if "permission denied for schema" in low or "permission denied for database" in low:
        return "grant the user CREATE on the database's schema (or let its owner open the store first)"
    if "permission denied" in low:
        return "grant the user SELECT and INSERT on the tables results and fcbench_meta (or use another user)"
    return otherwise


class Postgres:
    """A PostgreSQL database for a Store (see the module's docstring): one pooled connection, pinged before each
    use, so a connection the server dropped between two rows (a restart, an idle timeout) is replaced before
    the next row is sent, never after (a row is never sent twice)."""

    def __init__(self, url: str, option: str = "--store") -> None:
        try:
            import sqlalchemy as sa
            from sqlalchemy import exc as sa_exc
            from sqlalchemy.engine import make_url
            from sqlalchemy.pool import QueuePool
        except ImportError:
            raise FcbenchError(f"results store {_masked(url)}: a PostgreSQL store needs SQLAlchemy and psycopg, "
                               f"which are not installed; {_INSTALL}") from None
        self._sa = sa
        self.errors: tuple[type[BaseException], ...] = (sa_exc.DBAPIError,)
        try:
            given = make_url(url)
        except (sa_exc.ArgumentError, ValueError) as exc:
            raise FcbenchError(f"results store {_masked(url)}: not a database URL ({exc}); "
                               f"{option} takes postgresql://user@host:port/database or an SQLite file path") from None
        self.where = given.render_as_string(hide_password=True)
        driver = given.drivername
        if driver in ("postgresql", "postgres"):
            given = given.set(drivername="postgresql+psycopg")
        elif not driver.startswith("postgresql+"):
            raise FcbenchError(f"results store {self.where}: '{driver}' databases are not supported; {option} takes "
                               "postgresql://user@host:port/database or an SQLite file path")
        query = dict(given.query)
        self.host = str(query.get("host") or given.host or os.environ.get("PGHOST") or "localhost")
        self.port = str(given.port or query.get("port") or os.environ.get("PGPORT") or 5432)
        self.database = given.database or os.environ.get("PGDATABASE") or given.username or "postgres"
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in query and not os.environ.get("PGCONNECT_TIMEOUT"):
            wait = os.environ.get("FCBENCH_PG_CONNECT_TIMEOUT") or str(DEFAULT_CONNECT_TIMEOUT_S)
            if not wait.isdigit():
                raise FcbenchError(f"FCBENCH_PG_CONNECT_TIMEOUT is '{wait}'; set it to whole seconds, e.g. 5")
            connect_args["connect_timeout"] = int(wait)
        if "application_name" not in query:
            connect_args["application_name"] = "fcbench"
        try:
            self.engine = sa.create_engine(given, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=0,
                                           pool_pre_ping=True, connect_args=connect_args)
        except (ImportError, sa_exc.NoSuchModuleError) as exc:
            fix = _INSTALL if given.drivername == "postgresql+psycopg" else \
                "write postgresql:// (psycopg 3, which fcbench[postgres] installs) or install that driver"
            raise FcbenchError(f"results store {self.where}: cannot load the driver '{given.drivername}' "
                               f"({exc}); {fix}") from None
        self._conn: Any = None  # the connection of the exclusive transaction, while one is open
        try:
            self.engine.connect().close()  # reached now, so a wrong URL fails before any work
        except sa_exc.DBAPIError as exc:
            self.engine.dispose()
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> FcbenchError:
        reason = _reason(exc)
        at = f"socket {self.host} port {self.port}" if self.host.startswith("/") else f"{self.host}:{self.port}"
        return FcbenchError(f"results store {self.where}: cannot connect to PostgreSQL at {at} ({reason}); "
                            f"{_hint(reason, self.database)}")

    def _run(self, conn: Any, sql: str, params: Any) -> list[tuple]:
        result = conn.execute(self._sa.text(sql), params)
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

    def _alone(self, sql: str, params: Any) -> list[tuple]:
        """``sql`` in the exclusive transaction when one is open, else as a transaction of its own: one statement
        in autocommit mode is one transaction, without the round trips of BEGIN and COMMIT."""
        if self._conn is not None:
            return self._run(self._conn, sql, params)
        try:
            with self.engine.connect() as conn:
                return self._run(conn.execution_options(isolation_level="AUTOCOMMIT"), sql, params)
        except self.errors as exc:
            from sqlalchemy import exc as sa_exc

            reason = _reason(exc)
            if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated:
                raise FcbenchError(f"results store {self.where}: lost the connection to PostgreSQL at "
                                   f"{self.host}:{self.port} ({reason}); rows written before are kept, run again "
                                   "when the server is back") from None
            raise FcbenchError(f"results store {self.where}: PostgreSQL at {self.host}:{self.port} refused it "
                               f"({reason}); {_hint(reason, self.database, 'see the server log')}") from None

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        return self._alone(sql, params or {})

    def executemany(self, sql: str, params: list[dict[str, Any]]) -> None:
        assert self._conn is not None, "executemany runs in the exclusive transaction only (a migration)"
        self._alone(sql, params)

    def insert(self, sql: str, params: dict[str, Any]) -> int:
        return int(self._alone(sql + " RETURNING id", params)[0][0])

    def _has(self, table: str) -> bool:
        found = self.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                             "AND table_name = :t", {"t": table})
        return bool(found)

    def has_table(self) -> bool:
        return self._has("results")

    def columns(self) -> set[str]:
        return {r[0] for r in self.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_schema = current_schema() AND table_name = 'results'")}

    def version(self) -> int:
        # both tables in one statement (one snapshot): another process may commit them between two statements
        (results, meta), = self.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND "
            "table_name = 'results'), EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_name = 'fcbench_meta')")
        if not meta:
            if results:
                raise FcbenchError(f"results store {self.where}: the database has a table 'results' that fcbench "
                                   "did not write (no fcbench_meta table); use another database, or a schema of "
                                   "its own (?options=-csearch_path%3DNAME in the URL)")
            return 0
        found = self.execute("SELECT value FROM fcbench_meta WHERE key = 'schema_version'")
        return int(found[0][0]) if found else 0

    def cannot_write(self) -> str:
        """Why this user could not store rows here ('' when it can): INSERT on ``results``, or CREATE in the
        schema when the tables are not made yet."""
        (table, create, insert), = self.execute(
            "SELECT to_regclass(quote_ident(current_schema()) || '.results') IS NOT NULL, "
            "has_schema_privilege(current_schema(), 'CREATE'), "
            "CASE WHEN to_regclass(quote_ident(current_schema()) || '.results') IS NULL THEN NULL "
            "ELSE has_table_privilege(quote_ident(current_schema()) || '.results', 'INSERT') END")
        if table and not insert:
            return "permission denied for table results"
        if not table and not create:
            return "permission denied for schema " + str(self.execute("SELECT current_schema()")[0][0])
        return ""

    def set_version(self, version: int) -> None:
        self.execute("CREATE TABLE IF NOT EXISTS fcbench_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.execute("INSERT INTO fcbench_meta (key, value) VALUES ('schema_version', :v) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", {"v": str(int(version))})

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One transaction (DDL included: PostgreSQL's is transactional) holding the schema lock."""
        with self.engine.begin() as conn:
            self._conn = conn
            try:
                self._run(conn, "SELECT pg_advisory_xact_lock(:k)", {"k": _LOCK_KEY})
                yield
            finally:
                self._conn = None

    def sql_type(self, generic: str) -> str:
        return _TYPES[generic]

    def id_column(self) -> str:
        return "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str, option: str = "--store") -> Postgres:
    """Connect to the database ``url`` names; one line (FcbenchError) when that fails."""
    return Postgres(url, option)
