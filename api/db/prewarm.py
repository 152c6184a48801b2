"""Bring the catalog's HNSW graphs back into memory after a restart, before shoppers need them.

An HNSW search reads ~2,000 index pages scattered over the graph. Right after PostgreSQL starts
(the embedded one starts with Lookalike), none of them is in shared buffers, and on an idle
machine the kernel may have dropped them from its page cache too: the first searches then wait
on random disk reads, several times slower than the steady state (measured after a restart with
the page cache dropped: docs/benchmarks.md, "End to end over HTTP", "Third session"). Two steps,
both cheap and both harmless:

1. When the database's files are readable by this process (the embedded server's are), ask the
   kernel to read each HNSW index file ahead (``posix_fadvise(WILLNEED)``): one sequential read
   instead of thousands of random ones.
2. Run a few dozen nearest-neighbour searches for vectors already in the catalog, which pulls the
   pages real searches walk through into shared buffers.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, TextClause, text

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.vector_indexes import hnsw_indexes

log = logging.getLogger(__name__)

SEARCHES_PER_COLUMN = 48


@dataclass
class PrewarmReport:
    files_read_ahead: int = 0
    bytes_read_ahead: int = 0
    searches: int = 0
    seconds: float = 0.0

    def render(self) -> str:
        return (
            f"HNSW indexes prewarmed in {self.seconds:.1f} s: {self.files_read_ahead} files "
            f"({self.bytes_read_ahead / 2**20:.0f} MiB) read ahead, {self.searches} searches"
        )


def prewarm(database: Database, catalog: Catalog, searches: int = SEARCHES_PER_COLUMN) -> PrewarmReport:
    started = time.monotonic()
    report = PrewarmReport()
    with database.read() as conn:
        indexes = hnsw_indexes(conn, catalog)
        _read_ahead(conn, catalog, indexes, report)
        for column, index in (
            ("image_embedding", catalog.image_index),
            ("fallback_embedding", catalog.fallback_index),
        ):
            if indexes.get(index):  # no index (a bulk load has it aside): a search would scan the table
                report.searches += _search_with_stored_vectors(conn, catalog, column, searches)
    report.seconds = time.monotonic() - started
    return report


def _read_ahead(conn: Connection, catalog: Catalog, indexes: dict[str, bool], report: PrewarmReport) -> None:
    data_dir = Path(conn.execute(text("SELECT current_setting('data_directory')")).scalar_one())
    for name in indexes:
        relative = conn.execute(
            text("SELECT pg_relation_filepath(CAST(:index AS regclass))"),
            {"index": catalog.in_schema(name)},
        ).scalar()
        if relative is None:
            continue
        first = data_dir / relative
        for segment in [first, *sorted(first.parent.glob(first.name + ".[0-9]*"))]:  # 1 GB segments
            try:
                fd = os.open(segment, os.O_RDONLY)
            except OSError:  # a server on another machine, or files owned by another user
                return
            try:
                size = os.fstat(fd).st_size
                os.posix_fadvise(fd, 0, size, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)
            report.files_read_ahead += 1
            report.bytes_read_ahead += size


def warm_searches(catalog: Catalog, column: str) -> TextClause:
    """``:count`` nearest-neighbour searches in one statement, for vectors drawn at random from a
    sample of the table's pages (not the whole table: ``ORDER BY random()`` over it would read
    every row)."""
    table, key = catalog.qualified, f'"{catalog.key}"'
    return text(
        f"SELECT count(DISTINCT sample.k) FROM ("
        f"  SELECT {key} AS k, {column} AS v FROM {table} TABLESAMPLE SYSTEM (:percent)"
        f"  WHERE {column} IS NOT NULL ORDER BY random() LIMIT :count"
        f") sample, LATERAL (SELECT t.{key} FROM {table} t ORDER BY t.{column} <=> sample.v LIMIT 10) nearest"
    )


def sample_percent(conn: Connection, catalog: Catalog, count: int) -> float:
    """Enough pages for ~4x ``count`` rows and never fewer than 64 pages (or the whole table):
    SYSTEM sampling takes whole pages at random, and a handful of pages could hold no row at all."""
    rows, pages = conn.execute(
        text("SELECT reltuples, relpages FROM pg_class WHERE oid = CAST(:table AS regclass)"),
        {"table": catalog.qualified},
    ).one()
    share = max(4.0 * count / max(float(rows), 1.0), 64.0 / max(float(pages), 1.0))
    return min(100.0, max(0.01, 100.0 * share))


def _search_with_stored_vectors(conn: Connection, catalog: Catalog, column: str, count: int) -> int:
    params = {"percent": sample_percent(conn, catalog, count), "count": count}
    return int(conn.execute(warm_searches(catalog, column), params).scalar_one())
