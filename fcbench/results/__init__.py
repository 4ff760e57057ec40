"""Results store, run context and table rendering."""

from fcbench.results.context import RunContext
from fcbench.results.store import DEFAULT_STORE, Row, Store, open_store

__all__ = ["DEFAULT_STORE", "Row", "RunContext", "Store", "open_store"]
