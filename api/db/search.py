"""The one search function: every ranked query the product runs is built here.

Vector queries are a single statement, ``ORDER BY <column> <=> :query LIMIT/OFFSET`` over the
catalog table with the filters in WHERE, so PostgreSQL walks the HNSW index. pgvector's
strict-order iterative scan (set for this transaction only) keeps pages full under selective
filters, in true distance order. Full-text queries (the fallback for text when CLIP is down)
rank by ``ts_rank_cd`` over the generated ``search_tsv`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Float, Select, and_, func, select, text
from sqlalchemy.dialects.postgresql import JSONB

from api.db.catalog import Catalog, Listing
from api.db.query_vector import query_vector

# Upper bound on tuples an iterative scan may visit before giving up on filling a page; large
# enough for a filter that keeps ~0.5% of a million rows, small enough to bound the worst case.
MAX_SCAN_TUPLES = 200_000
MAX_EF_SEARCH = 1000
# 40 (pgvector's default) gave recall@10 0.973 on 1M x 512; 60 gives 0.982 for ~0.5 ms more.
MIN_EF_SEARCH = 60


class VectorColumn(StrEnum):
    CLIP = "image_embedding"
    FALLBACK = "fallback_embedding"


@dataclass(frozen=True)
class Filters:
    categories: tuple[str, ...] = ()
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    top_k: int = 12
    offset: int = 0
    score_threshold: float | None = None


@dataclass(frozen=True)
class VectorQuery:
    column: VectorColumn
    vector: np.ndarray
    model_id: str | None = None
    """Only rows embedded by this model: after a model switch, old vectors live in another space."""
    exclude_sku: str | None = None
    """"More like this" leaves the product itself out of its own results."""


@dataclass(frozen=True)
class TextQuery:
    text: str


@dataclass(frozen=True)
class Hit(Listing):
    score: float
    """Cosine similarity (1 - distance) for vector queries; normalised ts_rank_cd for text."""


def search(
    conn: Connection, catalog: Catalog, query: VectorQuery | TextQuery, filters: Filters, page: Page
) -> list[Hit]:
    """Run one ranked search and return the page of hits, best first."""
    rows = conn.execute(_prepare(conn, catalog, query, filters, page)).mappings().all()
    hits = [Hit(**row) for row in rows]
    if page.score_threshold is not None:
        # Rows come best first, so the threshold only ever trims the tail of the page.
        hits = [hit for hit in hits if hit.score >= page.score_threshold]
    return hits


def explain(
    conn: Connection, catalog: Catalog, query: VectorQuery | TextQuery, filters: Filters, page: Page
) -> str:
    """The plan PostgreSQL picks for exactly the statement :func:`search` runs (tests, debugging)."""
    compiled = _prepare(conn, catalog, query, filters, page).compile(
        dialect=conn.dialect, compile_kwargs={"render_postcompile": True}
    )
    processors = compiled._bind_processors  # the same conversions execute() applies (vectors → text)
    params = {k: processors[k](v) if k in processors else v for k, v in compiled.params.items()}
    rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), params).all()
    return "\n".join(row[0] for row in rows)


def _prepare(
    conn: Connection, catalog: Catalog, query: VectorQuery | TextQuery, filters: Filters, page: Page
) -> Select[Any]:
    if isinstance(query, TextQuery):
        return text_statement(catalog, query, filters, page)
    # Transaction-local: a pooled connection must not carry these into the next request.
    # relaxed_order: the index hands rows over roughly by distance and keeps walking until the
    # filter has passed enough of them; vector_statement re-sorts that page exactly. On 1M x 512
    # with a filter keeping 5% of rows it found 0.985 of the true top 10 where strict_order,
    # which drops candidates that arrive out of order, found 0.966, in the same time.
    # enable_sort = off: the planner under-costs "fetch every filtered row, sort by exact
    # distance" (it ignores de-TOASTing 2 KB vectors) and picks it for filters keeping a few
    # thousand rows, where it measured 2x slower than the HNSW walk. The ORDER BY can then
    # only come from the vector index, with the iterative scan filling the page.
    # force_custom_plan: psycopg prepares a statement after 5 runs, and a generic plan (made
    # without the category's value) could never pick a per-category partial index
    # (api.db.category_indexes); planning this statement costs ~0.1 ms.
    ef_search = min(max(MIN_EF_SEARCH, page.top_k + page.offset), MAX_EF_SEARCH)
    conn.exec_driver_sql(
        f"SET LOCAL hnsw.ef_search = {ef_search}; "
        "SET LOCAL hnsw.iterative_scan = relaxed_order; "
        f"SET LOCAL hnsw.max_scan_tuples = {MAX_SCAN_TUPLES}; "
        "SET LOCAL enable_sort = off; "
        "SET LOCAL plan_cache_mode = force_custom_plan"
    )
    return vector_statement(catalog, query, filters, page)


def _filter_clauses(catalog: Catalog, filters: Filters) -> list[ColumnElement[bool]]:
    t = catalog.sa_table
    clauses: list[ColumnElement[bool]] = []
    if filters.categories:
        clauses.append(t.c.category.in_(filters.categories))
    if filters.price_min is not None:
        clauses.append(t.c.price >= filters.price_min)
    if filters.price_max is not None:
        clauses.append(t.c.price <= filters.price_max)
    if filters.attributes:
        # @> containment: served by the jsonb_path_ops GIN index when the planner wants it.
        clauses.append(t.c.attributes.op("@>")(func.cast(filters.attributes, JSONB)))
    return clauses


def vector_statement(catalog: Catalog, query: VectorQuery, filters: Filters, page: Page) -> Select[Any]:
    """The nearest ``offset + top_k`` rows by the HNSW index, then that page in exact distance order.

    The inner ``ORDER BY column <=> :query LIMIT n`` is the only shape the index can serve;
    the relaxed iterative scan may hand rows over slightly out of order, so the materialised
    CTE (kept as its own plan step: an inlined one would merge the two sorts away) is sorted
    again on the distance it already computed -- n rows, microseconds.
    """
    t = catalog.sa_table
    column = t.c[query.column.value]
    distance = column.op("<=>", return_type=Float)(query_vector(query.vector, column.type))
    where = [column.is_not(None), *_filter_clauses(catalog, filters)]
    if query.model_id is not None:
        model_column = t.c.image_model if query.column is VectorColumn.CLIP else t.c.fallback_model
        where.append(model_column == query.model_id)
    if query.exclude_sku is not None:
        where.append(t.c.sku != query.exclude_sku)
    nearest = (
        select(*catalog.listing_columns(), distance.label("distance"))
        .where(and_(*where))
        .order_by(distance)
        .limit(page.top_k + page.offset)
        .cte("nearest")
        .prefix_with("MATERIALIZED")
    )
    listing = [nearest.c[c.key] for c in catalog.listing_columns()]
    return (
        select(*listing, (1 - nearest.c.distance).label("score"))
        .order_by(nearest.c.distance, nearest.c.id)
        .limit(page.top_k)
        .offset(page.offset)
    )


def text_statement(catalog: Catalog, query: TextQuery, filters: Filters, page: Page) -> Select[Any]:
    t = catalog.sa_table
    tsquery = func.websearch_to_tsquery(text("'english'::regconfig"), query.text)
    # Normalisation 32 maps rank to rank/(rank+1): a 0..1 score comparable across queries.
    rank = func.ts_rank_cd(t.c.search_tsv, tsquery, 32)
    return (
        select(*catalog.listing_columns(), rank.label("score"))
        .where(and_(t.c.search_tsv.op("@@")(tsquery), *_filter_clauses(catalog, filters)))
        .order_by(rank.desc(), t.c.id)
        .limit(page.top_k)
        .offset(page.offset)
    )


def stored_vector(
    conn: Connection, catalog: Catalog, sku: str
) -> tuple[np.ndarray | None, np.ndarray | None, str | None] | None:
    """A product's stored (CLIP vector, fallback vector, CLIP model id), or None for an unknown sku."""
    t = catalog.sa_table
    row = conn.execute(
        select(t.c.image_embedding, t.c.fallback_embedding, t.c.image_model).where(t.c.sku == sku)
    ).first()
    if row is None:
        return None
    return row[0], row[1], row[2]
