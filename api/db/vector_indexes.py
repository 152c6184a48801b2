"""The catalog's HNSW indexes, and setting them aside while a bulk load writes its vectors.

Every row written with its vectors costs one HNSW insert per vector index it lands in: the CLIP
index, the 1280-d MobileNetV2 index and its category's partial index. Measured on the 2-core
machine with a 100k catalog (``bench/vector_writes.py``, docs/benchmarks.md): 58-99 rows/s with
those indexes in place, ~2,300 rows/s without, while building all of them afresh takes ~110 s
for 100k rows. So a load that writes more than 7-11% of the catalog is faster with the indexes
dropped first and built once at the end; ``lookalike ingest`` does that (``deferred``) past 20%.

A bulk load holds a session advisory lock for as long as its indexes are away. If the process
dies, PostgreSQL releases the lock with its connection, and the next ``lookalike serve``,
``lookalike ingest`` or ``lookalike db upgrade`` builds the missing indexes (``restore_missing``).
Searches stay correct meanwhile: without an index PostgreSQL scans exactly, only slower.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from api.db.catalog import Catalog
from api.db.engine import Database

log = logging.getLogger(__name__)

LOCK_WAIT = "5s"
DEFER_LOCK_KEY = 0x4C4F4F4C
"""First half of the advisory lock a bulk load holds; the second is a hash of the table's name."""


def index_ddl(catalog: Catalog, column: str, *, concurrently: bool = False, rows: int = 0) -> str:
    """The one definition of a main HNSW index over ``rows`` rows (migration 0002 wrote the same at
    first install; the rows choose its graph's width, see ``Catalog.hnsw_graph``)."""
    name = catalog.image_index if column == "image_embedding" else catalog.fallback_index
    how = "CONCURRENTLY " if concurrently else ""
    opclass = catalog.clip_opclass if column == "image_embedding" else "vector_cosine_ops"
    return (
        f'CREATE INDEX {how}IF NOT EXISTS "{name}" ON {catalog.qualified} '
        f"USING hnsw ({column} {opclass}) {catalog.hnsw_options(rows)}".rstrip()
    )


class HnswIndex(NamedTuple):
    name: str
    valid: bool
    ddl: str
    column: str | None
    """The indexed column; None for an index on an expression."""
    options: tuple[str, ...] = ()
    """Its storage parameters as PostgreSQL keeps them (``m=16``, ``ef_construction=64``)."""
    rows: int = 0
    """Rows in the graph as PostgreSQL last counted them (at its build, or the last VACUUM)."""


def describe_hnsw_indexes(conn: Connection, catalog: Catalog) -> list[HnswIndex]:
    """Every HNSW index on the catalog table (main and per-category), as PostgreSQL reports it.

    The one catalog query behind :func:`hnsw_indexes` (bulk loads, prewarm, category indexes) and
    :func:`api.db.clip_column.clip_indexes` (storage conversion), which each need a different
    part of it. The column join is a LEFT JOIN so an index on an expression is still listed.
    """
    rows = conn.execute(
        text(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid), a.attname, "
            "coalesce(c.reloptions, '{}'), greatest(c.reltuples, 0)::bigint FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = CAST(:table AS regclass) AND am.amname = 'hnsw'"
        ),
        {"table": catalog.qualified},
    ).all()
    return [HnswIndex(*row[:4], tuple(row[4]), int(row[5])) for row in rows]


def table_rows(conn: Connection, catalog: Catalog) -> int:
    """The catalog table's rows: PostgreSQL's estimate, or a count where it has none yet (a table
    never vacuumed nor analysed, such as one a bulk load has just filled)."""
    estimate = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
        {"table": catalog.qualified},
    ).scalar_one()
    if estimate >= 0:
        return int(estimate)
    return int(conn.execute(text(f"SELECT count(*) FROM {catalog.qualified}")).scalar_one())


def hnsw_indexes(conn: Connection, catalog: Catalog) -> dict[str, bool]:
    """Every HNSW index on the catalog table (main and per-category): name -> valid."""
    return {index.name: index.valid for index in describe_hnsw_indexes(conn, catalog)}


@dataclass
class Deferral:
    """What a bulk load set aside and what it built again."""

    dropped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    build_s: float = 0.0


@contextmanager
def deferred(database: Database, catalog: Catalog) -> Iterator[Deferral]:
    """Drop the table's HNSW indexes for the block; build the two main ones again on the way out.

    They are built again even when the block raises. Category indexes are not rebuilt here:
    :func:`api.db.category_indexes.sync` builds the missing ones, and the caller runs it next.
    Drops and builds are ``CONCURRENTLY``: searches and product writes never wait for them.
    """
    deferral = Deferral()
    with database.autocommit() as conn:
        conn.execute(text("SELECT pg_advisory_lock(CAST(:k AS integer), hashtext(:t))"), _lock_args(catalog))
        try:
            for name in hnsw_indexes(conn, catalog):
                conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {catalog.in_schema(name)}")
                deferral.dropped.append(name)
            log.info("bulk load: %d HNSW indexes set aside until it ends", len(deferral.dropped))
            try:
                yield deferral
            finally:
                started = time.monotonic()
                deferral.rebuilt = _create_missing(conn, catalog)
                deferral.build_s = time.monotonic() - started
        finally:
            conn.execute(
                text("SELECT pg_advisory_unlock(CAST(:k AS integer), hashtext(:t))"), _lock_args(catalog)
            )


@contextmanager
def table_lock_if_free(conn: Connection, key: int, catalog: Catalog) -> Iterator[bool]:
    """The session advisory lock (``key``, a hash of the table) when nobody holds it: yields
    whether it was taken, and releases it on the way out. Index upkeep that several processes
    run (category indexes, graph rebuilds) leaves the work to a holder instead of queueing."""
    lock = {"k": key, "t": catalog.qualified}
    taken = bool(
        conn.execute(text("SELECT pg_try_advisory_lock(CAST(:k AS integer), hashtext(:t))"), lock).scalar()
    )
    try:
        yield taken
    finally:
        if taken:
            conn.execute(text("SELECT pg_advisory_unlock(CAST(:k AS integer), hashtext(:t))"), lock)


@contextmanager
def bounded_lock_wait(conn: Connection) -> Iterator[None]:
    """Statements in the block wait at most LOCK_WAIT for a lock (a session setting, reset after)."""
    conn.exec_driver_sql(f"SET lock_timeout = '{LOCK_WAIT}'")
    try:
        yield
    finally:
        conn.exec_driver_sql("RESET lock_timeout")


def restore_missing(database: Database, catalog: Catalog) -> list[str]:
    """Build the main HNSW indexes a dead bulk load left out; nothing while a live one holds them.

    Waits up to ``LOCK_WAIT`` for the lock: a load killed a moment ago may still hold it until
    PostgreSQL notices its connection is gone.
    """
    with database.autocommit() as conn:
        try:
            with bounded_lock_wait(conn):
                conn.execute(
                    text("SELECT pg_advisory_lock(CAST(:k AS integer), hashtext(:t))"), _lock_args(catalog)
                )
        except OperationalError:  # lock_timeout: a live bulk load holds the indexes
            return []
        try:
            return _create_missing(conn, catalog)
        finally:
            conn.execute(
                text("SELECT pg_advisory_unlock(CAST(:k AS integer), hashtext(:t))"), _lock_args(catalog)
            )


def _create_missing(conn: Connection, catalog: Catalog) -> list[str]:
    existing = hnsw_indexes(conn, catalog)
    rows: int | None = None  # the table's size picks the graphs' width; read once, only if needed
    built = []
    for column, name in (
        ("image_embedding", catalog.image_index),
        ("fallback_embedding", catalog.fallback_index),
    ):
        if existing.get(name):
            continue
        if name in existing:  # an interrupted CONCURRENTLY build leaves an invalid index behind
            conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {catalog.in_schema(name)}")
        log.info("building HNSW index %s (after a bulk load, or one that did not finish)", name)
        rows = table_rows(conn, catalog) if rows is None else rows
        conn.exec_driver_sql(index_ddl(catalog, column, concurrently=True, rows=rows))
        built.append(name)
    return built


def _lock_args(catalog: Catalog) -> dict[str, object]:
    return {"k": DEFER_LOCK_KEY, "t": catalog.qualified}
