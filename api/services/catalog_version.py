"""The catalog version that every cached result's key carries, without a query per cached hit.

Reading the counter (see migration 0004) was the one database round trip a cached repeat
paid, a sizeable share of its answer (docs/benchmarks.md, "End to end over HTTP", "Second
session"). It is now remembered for ``max_age_s`` (100 ms) and
forgotten after every commit made through this process's engine, so a write through the API,
the embedding worker or anything else sharing the engine is seen by the very next search.
A write from another process (the shop's own admin, another API replica) is seen within
``max_age_s``; a cached page is at most that much older than the catalog.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import event

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.products import catalog_version

MAX_AGE_S = 0.1


class CatalogVersion:
    def __init__(self, database: Database, catalog: Catalog, max_age_s: float = MAX_AGE_S) -> None:
        self.database = database
        self.catalog = catalog
        self.max_age_s = max_age_s
        self._known: tuple[int, float, int] | None = None  # (version, read at, commits seen then)
        self._commits = 0
        self._lock = threading.Lock()
        self._mark = f"lookalike_committed_{id(self)}"  # per instance: each one sees every commit
        # "commit" fires before the commit reaches the server; a connection back in the pool
        # ("checkin") has finished it. Counting at checkin means a version read while a commit
        # is in flight is never trusted past that commit.
        event.listen(database.engine, "commit", self._committing)
        event.listen(database.engine.pool, "checkin", self._checked_in)

    def current(self) -> int:
        known, commits = self._known, self._commits
        if known is not None and known[2] == commits and time.monotonic() - known[1] < self.max_age_s:
            return known[0]
        with self.database.read() as conn:
            version = catalog_version(conn, self.catalog)
        # A commit that lands while we read makes the answer uncertain: remember it only if none did.
        self._known = (version, time.monotonic(), commits)
        return version

    def _committing(self, conn: Any) -> None:
        conn.info[self._mark] = True

    def _checked_in(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(self._mark, False):
            with self._lock:
                self._commits += 1
