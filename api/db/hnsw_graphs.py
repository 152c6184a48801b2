"""The build parameters of Lookalike's HNSW graphs, and rebuilding the graphs when they change.

``LOOKALIKE_HNSW_M`` and ``LOOKALIKE_HNSW_EF_CONSTRUCTION`` are how good a graph is: a walk of the
same width finds more of the true nearest rows in a better one (docs/benchmarks.md, issue 20 at
1M: ef_construction 128 added 0.10-0.16 recall on the grown 1M catalog, for 2.3x the build time).
With ef_construction unset, a graph's size chooses it (``Catalog.hnsw_graph``): a catalog that
grows past ``LARGE_GRAPH_ROWS`` has its graphs rebuilt wider, once.
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

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from api.db.catalog import LARGE_GRAPH_ROWS, PGVECTOR_GRAPH, Catalog
from api.db.category_indexes import NAME_SUFFIX
from api.db.engine import Database
from api.db.vector_indexes import (
    DEFER_LOCK_KEY,
    HnswIndex,
    bounded_lock_wait,
    describe_hnsw_indexes,
    table_lock_if_free,
    table_rows,
)

log = logging.getLogger(__name__)

_LEFTOVER = re.compile(r"_ccnew\d*$")
"""The suffix of the copy an interrupted ``REINDEX CONCURRENTLY`` leaves behind (invalid)."""


@dataclass
class GraphReport:
    rule: str
    """The (m, ef_construction) the graphs should have, in words (:func:`describe_rule`)."""
    rebuilt: dict[str, float] = field(default_factory=dict)
    """Index name -> seconds its rebuild took."""
    kept: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    """Rebuilds left for the next upkeep: a long transaction held the index past ``LOCK_WAIT``."""
    skipped: bool = False
    """A bulk load or another process's rebuild held the lock."""

    def render(self) -> str:
        if self.skipped:
            return "HNSW graphs: a bulk load or another process holds them (left to it)"
        lines = [f"HNSW graphs ({self.rule}): {len(self.rebuilt)} rebuilt, {len(self.kept)} kept"]
        lines += [f"  ~ {name} ({seconds:.1f} s)" for name, seconds in self.rebuilt.items()]
        lines += [f"  ! {name}: busy, left for the next upkeep" for name in self.deferred]
        return "\n".join(lines)


def graph_of(index: HnswIndex) -> tuple[int, int]:
    """(m, ef_construction) an index was built with, pgvector's defaults where it named none."""
    options = dict(option.partition("=")[::2] for option in index.options)
    return int(options.get("m", PGVECTOR_GRAPH[0])), int(options.get("ef_construction", PGVECTOR_GRAPH[1]))


def ours(catalog: Catalog, name: str) -> bool:
    """The two main indexes and the per-category ones; nothing the shop built."""
    return name in (catalog.image_index, catalog.fallback_index) or bool(NAME_SUFFIX.search(name))


def describe_rule(catalog: Catalog) -> str:
    m, ef_construction = catalog.hnsw_graph(0)
    if catalog.hnsw_ef_construction is not None:
        return f"m {m}, ef_construction {ef_construction}"
    wide = catalog.hnsw_graph(LARGE_GRAPH_ROWS)[1]
    return f"m {m}, ef_construction {ef_construction}, {wide} from {LARGE_GRAPH_ROWS:,} rows"


def _graph_rows(catalog: Catalog, index: HnswIndex, table: int) -> int:
    """What a graph's width is chosen by: the table's rows for the main graphs (the catalog they
    will hold once embedded), the graph's own for a category's."""
    return table if index.name in (catalog.image_index, catalog.fallback_index) else index.rows


def _stale(catalog: Catalog, index: HnswIndex, table: int) -> bool:
    return (
        index.valid
        and ours(catalog, index.name)
        and not catalog.hnsw_graph_is_current(graph_of(index), _graph_rows(catalog, index, table))
    )


def stale_graphs(conn: Connection, catalog: Catalog) -> list[str]:
    """Our valid HNSW indexes built with other parameters than the catalog's."""
    table = table_rows(conn, catalog)
    return [index.name for index in describe_hnsw_indexes(conn, catalog) if _stale(catalog, index, table)]


def sync(database: Database, catalog: Catalog) -> GraphReport:
    """Rebuild every graph of ours whose parameters differ from the catalog's; see the module doc."""
    report = GraphReport(describe_rule(catalog))
    with database.autocommit() as conn, table_lock_if_free(conn, DEFER_LOCK_KEY, catalog) as taken:
        if not taken:
            report.skipped = True
            return report
        table = table_rows(conn, catalog)
        for index in describe_hnsw_indexes(conn, catalog):
            if _leftover(catalog, index):
                conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {catalog.in_schema(index.name)}")
            elif _stale(catalog, index, table):
                graph = catalog.hnsw_graph(_graph_rows(catalog, index, table))
                _rebuild(conn, catalog, index.name, graph, report)
            elif index.valid and ours(catalog, index.name):
                report.kept.append(index.name)
    if report.rebuilt:
        log.info(report.render())
    return report


def _leftover(catalog: Catalog, index: HnswIndex) -> bool:
    """The invalid copy an interrupted rebuild of one of ours left behind."""
    base = _LEFTOVER.sub("", index.name)
    return not index.valid and base != index.name and ours(catalog, base)


def _rebuild(
    conn: Connection, catalog: Catalog, name: str, graph: tuple[int, int], report: GraphReport
) -> None:
    m, ef_construction = graph
    qualified = catalog.in_schema(name)
    # ALTER INDEX SET takes the index's strongest lock for a catalog update: wait LOCK_WAIT at
    # most (a long transaction must not queue every search behind this), retry next upkeep.
    try:
        with bounded_lock_wait(conn):
            conn.exec_driver_sql(
                f"ALTER INDEX {qualified} SET (m = {m}, ef_construction = {ef_construction})"
            )
    except OperationalError as exc:
        log.warning("HNSW graph %s: cannot set its parameters now (%s); next upkeep", name, exc.orig)
        report.deferred.append(name)
        return
    log.info(
        "rebuilding HNSW graph %s with m %d, ef_construction %d (concurrently)", name, m, ef_construction
    )
    started = time.monotonic()
    conn.exec_driver_sql(f"REINDEX INDEX CONCURRENTLY {qualified}")
    report.rebuilt[name] = round(time.monotonic() - started, 1)
