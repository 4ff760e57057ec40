"""Loading BASE and NEW: a CSV or JSON export (``fcbench results --format csv|json``), a results store
(a path, or any URL :class:`fcbench.results.store.Store` accepts), or a run id in the store (``last``,
``last~1``, an id)."""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcbench.compare.match import IDENTITY
from fcbench.errors import FcbenchError
from fcbench.results.store import _JSON_COLUMNS as _JSON
from fcbench.results.store import NUMERIC_COLUMNS
from fcbench.results.store import is_url as _is_url

# what a CSV or JSON export must have for its rows to be compared
REQUIRED = (*IDENTITY, "device_fingerprint")
FIGURES = ("samples_ms", "p50_ms", "value")  # at least one


@dataclass
class Source:
    spec: str  # as given
    label: str  # what tables call it
    rows: list[dict[str, Any]] = field(default_factory=list)
    store: str | None = None  # the store the rows came from (history reads it), None for a file
    run_id: str | None = None


def _json_value(text: str, name: str, where: str) -> Any:
    if text in ("", None):
        return _JSON[name]()
    try:
        return json.loads(text)
    except ValueError:
        try:
            return ast.literal_eval(text)  # a list written with Python's repr
        except (ValueError, SyntaxError):
            raise FcbenchError(f"{where}: column {name} holds {text[:40]!r}, not JSON; export the rows again with "
                               "fcbench results --format csv") from None


def _typed(row: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(row)
    for name in _JSON:
        if name in out and isinstance(out[name], str):
            out[name] = _json_value(out[name], name, where)
    for name, kind in NUMERIC_COLUMNS.items():  # every numeric column of the store, as the store types it
        v = out.get(name)
        if isinstance(v, str):
            v = v.strip()
            try:
                out[name] = None if v == "" else kind(float(v))
            except ValueError:
                raise FcbenchError(f"{where}: column {name} holds {v[:40]!r}, not a number") from None
    return out


def _check_columns(columns: list[str], path: Path, what: str) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if not any(c in columns for c in FIGURES):
        missing.append(" or ".join(FIGURES))
    if missing:
        raise FcbenchError(f"compare: {path} is not an fcbench results export ({what} lacks {', '.join(missing)}); "
                           f"write one with fcbench results --format {path.suffix.lstrip('.').lower()} > {path.name}")


def read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            _check_columns(columns, path, "its header" if columns else "it is empty: it")
            return [_typed(r, f"compare: {path} line {i}") for i, r in enumerate(reader, start=2)]
    except UnicodeDecodeError as exc:
        raise FcbenchError(f"compare: {path} is not a text CSV ({exc.reason}); give an fcbench results export") \
            from None
    except csv.Error as exc:
        raise FcbenchError(f"compare: {path} cannot be read as CSV ({exc}); give an fcbench results export") from None


def read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise FcbenchError(f"compare: {path} is not JSON ({str(exc).splitlines()[0]}); give an export of fcbench "
                           "results --format json") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise FcbenchError(f"compare: {path} is not a list of result rows; give an export of fcbench results "
                           "--format json")
    columns = list(dict.fromkeys(k for r in data for k in r))
    if data:
        _check_columns(columns, path, "its rows")
    return [_typed(r, f"compare: {path} row {i}") for i, r in enumerate(data, start=1)]


def default_store(store: str | None) -> str:
    from fcbench.results.store import DEFAULT_STORE

    return str(store or DEFAULT_STORE)


def open_store(ref: str, which: str) -> Any:
    """``Store(ref)`` for a URL or an existing file (never creating one)."""
    from fcbench.results.store import Store

    if not _is_url(ref):
        p = Path(ref)
        if not p.exists():
            raise FcbenchError(f"compare: {which}: results store {ref} does not exist; run fcbench bench --store "
                               f"{ref} first, or give a CSV export")
        if p.is_dir():
            raise FcbenchError(f"compare: {which}: {ref} is a folder; give a CSV/JSON export, a store file or a run "
                               "id")
    return Store(ref)


def load(spec: str, store: str | None, which: str) -> Source:
    """BASE or NEW (``which``) as rows."""
    if not spec:
        raise FcbenchError(f"compare: give {which}: a CSV/JSON export, a results store, or a run id (last, last~1)")
    path = Path(spec)
    suffix = path.suffix.lower()
    if not _is_url(spec) and suffix in (".csv", ".json"):
        if not path.is_file():
            raise FcbenchError(f"compare: {which} {spec} does not exist{' (it is a folder)' if path.is_dir() else ''}; "
                               f"write it with fcbench results --format {suffix[1:]} > {spec}")
        rows = read_csv(path) if suffix == ".csv" else read_json(path)
        return Source(spec, path.name, rows)
    if _is_url(spec) or path.exists():
        with open_store(spec, which) as s:
            return Source(spec, str(s.path), s.query(), store=spec)  # s.path: a URL without its password
    ref = default_store(store)
    if not _is_url(ref) and not Path(ref).is_file():
        raise FcbenchError(f"compare: {which} '{spec}' is no file, and the store {ref} where run ids are looked up "
                           "does not exist; give a CSV/JSON export or a store, or --store the one holding the run")
    with open_store(ref, which) as s:
        run = s.resolve_run(spec, f"compare: {which}", "file, URL or run id")
        return Source(spec, f"run {run}", s.query(run_id=run), store=ref, run_id=run)
