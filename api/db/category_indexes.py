"""Partial HNSW indexes, one per large category: a category filter becomes an unfiltered walk.

A filter that keeps a few percent of the rows makes the main index's iterative scan reject
~(1 - share) / share candidates for every row it returns; on 1M x 512 with a category
holding 5% of the rows that walk cost 4.5 ms in the server (7.5 ms per query from Python).
The same query served by ``CREATE INDEX ... WHERE category = 'c03'`` (50k rows, built in
11 s) took 1.4 ms (3.5 ms from Python) at recall 0.99. PostgreSQL picks the partial index
by itself when a query's ``category IN (:one)`` implies its predicate (plans are kept
custom, see :mod:`api.db.search`), so nothing else in the search path changes.

Costs, and why this is bounded: every row also lands in its category's graph (inserts do
twice the HNSW work, the index storage doubles) and the planner checks every partial
predicate at plan time. So only categories of at least ``min_rows`` rows and at most
``max_share`` of the catalog get one (the main index serves big shares well), largest
first, at most ``max_indexes`` of them. Index names are derived from a hash of the category,
so :func:`sync` can tell its own indexes apart from the shop's and drop the ones whose
category no longer qualifies. Builds are ``CONCURRENTLY``: writes never wait for them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.vector_indexes import hnsw_indexes, table_lock_if_free
from api.settings import Settings

log = logging.getLogger(__name__)
_changes = 0

NAME_SUFFIX = re.compile(r"_cat_[0-9a-f]{12}_hnsw$")
SYNC_LOCK_KEY = 0x4C4F4F43
"""First half of the advisory lock one sync holds (second: a hash of the table); "LOOC"."""


@dataclass(frozen=True)
class CategoryIndexPolicy:
    min_rows: int = 1_000
    max_share: float = 0.3
    max_indexes: int = 64

    @classmethod
    def from_settings(cls, settings: Settings) -> CategoryIndexPolicy:
        return cls(
            settings.category_index_min_rows, settings.category_index_max_share, settings.category_index_max
        )


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: bool = False
    """Another process held the maintenance lock; it does the work."""

    def render(self) -> str:
        if self.skipped:
            return "category indexes: another process is maintaining them (left to it)"
        parts = [f"{len(self.created)} created", f"{len(self.dropped)} dropped", f"{len(self.kept)} kept"]
        lines = [f"category indexes: {', '.join(parts)}"]
        lines += [f"  + {c}" for c in self.created] + [f"  - {c}" for c in self.dropped]
        return "\n".join(lines)


def index_name(catalog: Catalog, category: str) -> str:
    """``<table>_cat_<12 hex of sha256(category)>_hnsw``, with the table part cut to fit 63 bytes."""
    digest = hashlib.sha256(category.encode()).hexdigest()[:12]
    suffix = f"_cat_{digest}_hnsw"
    return catalog.table.encode()[: 63 - len(suffix)].decode(errors="ignore") + suffix


def wanted_categories(conn: Connection, catalog: Catalog, policy: CategoryIndexPolicy) -> dict[str, int]:
    """Categories that qualify -> their embedded rows, largest first (none when the category is an
    expression into another table: a partial index can only name the row's own columns)."""
    column = catalog.column_of("category")
    if column is None:
        return {}
    t = catalog.qualified
    rows = conn.execute(
        text(
            f'SELECT "{column}"::text AS category, count(*) AS n, sum(count(*)) OVER () AS total FROM {t} '
            f'WHERE "{column}" IS NOT NULL AND image_embedding IS NOT NULL '
            "GROUP BY 1 ORDER BY n DESC, 1"
        )
    ).all()
    chosen = [(c, n) for c, n, total in rows if n >= policy.min_rows and n <= policy.max_share * float(total)]
    return dict(chosen[: policy.max_indexes])


def existing_indexes(conn: Connection, catalog: Catalog) -> dict[str, bool]:
    """Our partial indexes on the catalog table: name -> valid (a failed CONCURRENTLY build is not)."""
    return {name: valid for name, valid in hnsw_indexes(conn, catalog).items() if NAME_SUFFIX.search(name)}


def sync(database: Database, catalog: Catalog, policy: CategoryIndexPolicy) -> SyncReport:
    """Create the missing indexes, rebuild invalid ones, drop those whose category left the policy."""
    report = SyncReport()
    # Several API processes (serve --workers, several hosts) each run this after their embedding
    # rounds: one at a time, and a process that finds it taken leaves it to the holder rather than
    # queueing a second pass over the same indexes.
    with database.autocommit() as conn, table_lock_if_free(conn, SYNC_LOCK_KEY, catalog) as taken:
        if not taken:
            log.info("category indexes: another process is maintaining them; skipped")
            report.skipped = True
            return report
        _sync_locked(conn, catalog, policy, report)
    if report.created or report.dropped:
        global _changes
        # This process's searches re-read their plan inputs (api.db.search); others within its TTL.
        _changes += 1
    return report


def changes() -> int:
    """How many syncs in this process created or dropped an index: plan caches keyed on the
    indexes (api.db.search) start afresh when it moves."""
    return _changes


def _sync_locked(conn: Connection, catalog: Catalog, policy: CategoryIndexPolicy, report: SyncReport) -> None:
    sizes = wanted_categories(conn, catalog, policy)
    wanted = {index_name(catalog, c): c for c in sizes}
    existing = existing_indexes(conn, catalog)
    for name, valid in existing.items():
        if name not in wanted or not valid:
            conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {catalog.in_schema(name)}")
            if name not in wanted:
                report.dropped.append(name)
    for name, category in wanted.items():
        if existing.get(name):
            report.kept.append(category)
            continue
        literal = conn.execute(text("SELECT quote_literal(CAST(:c AS text))"), {"c": category}).scalar_one()
        log.info("building the HNSW index for category %r (%s)", category, name)
        conn.exec_driver_sql(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON {catalog.qualified} '
            f"USING hnsw (image_embedding {catalog.clip_opclass}) {catalog.hnsw_options(sizes[category])} "
            f'WHERE "{catalog.column_of("category")}" = {literal}'.replace("%", "%%")
        )
        report.created.append(category)


_PREDICATE_LITERAL = re.compile(r"= '((?:[^']|'')*)'::text\)?$")


def category_of_index(conn: Connection, catalog: Catalog) -> frozenset[str]:
    """Categories served by one of our valid partial indexes, read back from each index's predicate
    (names hold only a hash) and kept only when the name is the one :func:`index_name` gives."""
    rows = conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
            "WHERE i.indrelid = CAST(:table AS regclass) AND a.amname = 'hnsw' AND i.indisvalid "
            "AND i.indpred IS NOT NULL"
        ),
        {"table": catalog.qualified},
    ).all()
    categories = set()
    for name, predicate in rows:
        match = _PREDICATE_LITERAL.search(predicate or "")
        if match and NAME_SUFFIX.search(name):
            category = match.group(1).replace("''", "'")
            if index_name(catalog, category) == name:
                categories.add(category)
    return frozenset(categories)
