"""The build parameters of Lookalike's HNSW graphs, and rebuilding the graphs when they change.

``LOOKALIKE_HNSW_M`` and ``LOOKALIKE_HNSW_EF_CONSTRUCTION`` are how good a graph is: a walk of the
same width finds more of the true nearest rows in a better one (docs/benchmarks.md, issue 20 at
1M: ef_construction 128 added 0.10-0.16 recall on the grown 1M catalog, for 2.3x the build time).
New graphs are built with them (``Catalog.hnsw_options``); an existing one keeps the parameters it
was built with until :func:`sync` rebuilds it: ``ALTER INDEX ... SET`` records the new ones, then
``REINDEX INDEX CONCURRENTLY`` builds a new graph beside the old one and swaps them, so searches
and writes go on throughout (the old graph serves until the swap). Only Lookalike's own indexes
are touched (the two main ones and the per-category ones), never an index the shop made.

A rebuild holds the bulk-load lock (:mod:`api.db.vector_indexes`): it never runs beside a bulk
load that has set the indexes aside, nor twice at once across processes (a process that finds the
lock taken leaves the work to the holder). The background worker's index upkeep runs it, and
``lookalike db rebuild-graphs`` runs it at once.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from api.db.catalog import PGVECTOR_GRAPH, Catalog
from api.db.category_indexes import NAME_SUFFIX
from api.db.engine import Database
from api.db.vector_indexes import DEFER_LOCK_KEY, LOCK_WAIT, HnswIndex, describe_hnsw_indexes

log = logging.getLogger(__name__)

_LEFTOVER = re.compile(r"_ccnew\d*$")
"""The suffix of the copy an interrupted ``REINDEX CONCURRENTLY`` leaves behind (invalid)."""


@dataclass
class GraphReport:
    rebuilt: dict[str, float] = field(default_factory=dict)
    """Index name -> seconds its rebuild took."""
    kept: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    """Rebuilds left for the next upkeep: a long transaction held the index past ``LOCK_WAIT``."""
    skipped: bool = False
    """A bulk load or another process's rebuild held the lock."""

    def render(self, graph: tuple[int, int]) -> str:
        if self.skipped:
            return "HNSW graphs: a bulk load or another process holds them (left to it)"
        wanted = f"m {graph[0]}, ef_construction {graph[1]}"
        lines = [f"HNSW graphs ({wanted}): {len(self.rebuilt)} rebuilt, {len(self.kept)} kept"]
        lines += [f"  ~ {name} ({seconds:.1f} s)" for name, seconds in self.rebuilt.items()]
        lines += [f"  ! {name}: busy, left for the next upkeep" for name in self.deferred]
        return "\n".join(lines)


def graph_of(index: HnswIndex) -> tuple[int, int]:
    """(m, ef_construction) an index was built with, pgvector's defaults where it named none."""
    options = dict(zip(("m", "ef_construction"), PGVECTOR_GRAPH, strict=True))
    for option in index.options:
        name, _, value = option.partition("=")
        if name in options and value.isdigit():
            options[name] = int(value)
    return options["m"], options["ef_construction"]


def ours(catalog: Catalog, name: str) -> bool:
    """The two main indexes and the per-category ones; nothing the shop built."""
    return name in (catalog.image_index, catalog.fallback_index) or bool(NAME_SUFFIX.search(name))


def stale_graphs(conn: Connection, catalog: Catalog) -> list[str]:
    """Our valid HNSW indexes built with other parameters than the catalog's (health, upkeep)."""
    return [
        index.name
        for index in describe_hnsw_indexes(conn, catalog)
        if index.valid and ours(catalog, index.name) and graph_of(index) != catalog.hnsw_graph
    ]


def sync(database: Database, catalog: Catalog) -> GraphReport:
    """Rebuild every graph of ours whose parameters differ from the catalog's; see the module doc."""
    report = GraphReport()
    lock = {"k": DEFER_LOCK_KEY, "t": catalog.qualified}
    with database.autocommit() as conn:
        if not conn.execute(
            text("SELECT pg_try_advisory_lock(CAST(:k AS integer), hashtext(:t))"), lock
        ).scalar():
            report.skipped = True
            return report
        try:
            _drop_leftovers(conn, catalog)
            stale = set(stale_graphs(conn, catalog))
            for index in describe_hnsw_indexes(conn, catalog):
                if index.name in stale:
                    _rebuild(conn, catalog, index.name, report)
                elif index.valid and ours(catalog, index.name):
                    report.kept.append(index.name)
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(CAST(:k AS integer), hashtext(:t))"), lock)
    if report.rebuilt:
        log.info(report.render(catalog.hnsw_graph))
    return report


def _drop_leftovers(conn: Connection, catalog: Catalog) -> None:
    for index in describe_hnsw_indexes(conn, catalog):
        base = _LEFTOVER.sub("", index.name)
        if not index.valid and base != index.name and ours(catalog, base):
            conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {catalog.in_schema(index.name)}")


def _rebuild(conn: Connection, catalog: Catalog, name: str, report: GraphReport) -> None:
    m, ef_construction = catalog.hnsw_graph
    qualified = catalog.in_schema(name)
    # ALTER INDEX SET takes the index's strongest lock for a catalog update: wait LOCK_WAIT at
    # most (a long transaction must not queue every search behind this), retry next upkeep.
    conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_WAIT}'")
    try:
        conn.exec_driver_sql(f"ALTER INDEX {qualified} SET (m = {m}, ef_construction = {ef_construction})")
    except OperationalError as exc:
        log.warning("HNSW graph %s: cannot set its parameters now (%s); next upkeep", name, exc.orig)
        report.deferred.append(name)
        return
    finally:
        conn.exec_driver_sql("RESET lock_timeout")
    log.info(
        "rebuilding HNSW graph %s with m %d, ef_construction %d (concurrently)", name, m, ef_construction
    )
    started = time.monotonic()
    conn.exec_driver_sql(f"REINDEX INDEX CONCURRENTLY {qualified}")
    report.rebuilt[name] = round(time.monotonic() - started, 1)
