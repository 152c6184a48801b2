"""The one search function: every ranked query the product runs is built here.

Vector queries are a single statement, ``ORDER BY <column> <=> :query LIMIT n`` over the
catalog table with the filters in WHERE, so PostgreSQL walks the HNSW index (or a category's
own partial index, see :mod:`api.db.category_indexes`). pgvector's relaxed-order iterative
scan (set for this transaction only) keeps pages full under selective filters, and the page
is re-sorted into true distance order. Full-text queries (the fallback for text when CLIP is
down) rank by ``ts_rank_cd`` over the generated ``search_tsv`` column.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any

import numpy as np
from cachetools import TTLCache
from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB

from api.db import category_indexes
from api.db.binary_vector import BinaryVector, query_vector_param
from api.db.catalog import Catalog, Listing
from api.db.category_indexes import category_of_index

# Upper bound on tuples an iterative scan may visit before giving up on filling a page; large
# enough for a filter that keeps ~0.5% of a million rows, small enough to bound the worst case.
MAX_SCAN_TUPLES = 200_000
MAX_EF_SEARCH = 1000
# recall@10 on 1M x 512 (docs/benchmarks.md): 40 (pgvector's default) 0.968-0.973; 60 0.980-0.982
# depending on the build; 64 0.982 for ~0.3 ms more, a margin over the 0.98 target.
MIN_EF_SEARCH = 64


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
    group: str | None = None
    """SQL naming each row's product (``LOOKALIKE_FIELD_GROUP``): one hit per group when set."""


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
    variants: int | None = None
    """With grouping: how many rows of this hit's group matched (the hit is the best of them)."""


def search(
    conn: Connection, catalog: Catalog, query: VectorQuery | TextQuery, filters: Filters, page: Page
) -> list[Hit]:
    """Run one ranked search and return the page of hits, best first."""
    if page.group is not None:
        rows = _grouped_rows(conn, catalog, query, filters, page)
    else:
        rows = conn.execute(_prepare(conn, catalog, query, filters, page)).mappings().all()
    hits = [Hit(**{k: v for k, v in row.items() if k != "candidates"}) for row in rows]
    if page.score_threshold is not None:
        # Rows come best first, so the threshold only ever trims the tail of the page.
        hits = [hit for hit in hits if hit.score >= page.score_threshold]
    return hits


def explain(
    conn: Connection, catalog: Catalog, query: VectorQuery | TextQuery, filters: Filters, page: Page
) -> str:
    """The plan PostgreSQL picks for exactly the statement :func:`search` runs (tests, debugging)."""
    sql, params = driver_sql(conn, _prepare(conn, catalog, query, filters, page))
    rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
    return "\n".join(row[0] for row in rows)


def driver_sql(conn: Connection, statement: Select[Any]) -> tuple[str, dict[str, Any]]:
    """``statement`` as the driver receives it: IN lists expanded, values converted as execute() does."""
    compiled = statement.compile(dialect=conn.dialect)
    state = compiled.construct_expanded_state()
    processors = {**compiled._bind_processors, **state.processors}
    return state.statement, {
        k: processors[k](v) if k in processors else v for k, v in state.parameters.items()
    }


GROUP_WINDOW_FACTOR = 4
"""Grouped vector pages read this many times the rows they show first, and 4x more each retry."""
MAX_GROUP_WINDOW = 10_000
"""The deepest a grouped page looks: a catalog whose top 10,000 rows hold too few groups to fill
the page returns a short one rather than walk the whole index."""


def _grouped_rows(
    conn: Connection, catalog: Catalog, query: VectorQuery | TextQuery, filters: Filters, page: Page
) -> list[Any]:
    """One row per group, best first, the page full whenever the catalog has enough groups.

    Vector search reads a window of the nearest rows, keeps each group's best and counts the
    group's rows in the window; when the window held too few groups to fill the page it is read
    again, wider. Each group's best row sits at the same place in every window that reaches it,
    so page 2 continues page 1 without repeating a group.
    """
    if isinstance(query, TextQuery):  # every match is ranked anyway: one pass
        return list(conn.execute(grouped_text_statement(catalog, query, filters, page)).mappings().all())
    window = (page.top_k + page.offset) * GROUP_WINDOW_FACTOR
    while True:
        statement = _prepare(conn, catalog, query, filters, page, window=window)
        rows = list(conn.execute(statement).mappings().all())
        exhausted = bool(rows) and rows[0]["candidates"] < window
        if len(rows) >= page.top_k or exhausted or window >= MAX_GROUP_WINDOW:
            return rows
        window = min(window * GROUP_WINDOW_FACTOR, MAX_GROUP_WINDOW)


def _prepare(
    conn: Connection,
    catalog: Catalog,
    query: VectorQuery | TextQuery,
    filters: Filters,
    page: Page,
    *,
    window: int | None = None,
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
    # force_custom_plan, for category filters only: psycopg prepares a statement after 5 runs,
    # and a generic plan (made without the category's value) could never pick a per-category
    # partial index (api.db.category_indexes). Other searches keep the cached generic plan:
    # planning next to a dozen partial indexes costs ~0.3-1 ms.
    # Issue 20: the run-time settings (hnsw.*) travel inside the statement (_scan_settings), so
    # an unfiltered search sends no SET LOCAL round trip of its own; the plan-time ones only
    # matter when a filter could make the planner prefer a sort, and are sent only then.
    ef_search = min(max(MIN_EF_SEARCH, window or page.top_k + page.offset), MAX_EF_SEARCH)
    filtered = _filtered(catalog, filters)
    if window is not None and page.group is not None:
        if filtered:
            _plan_time_settings(conn, filters)
        return grouped_vector_statement(catalog, query, filters, page, window).where(
            _scan_settings(ef_search)
        )
    if not filtered:
        return vector_statement(catalog, query, filters, page).where(_scan_settings(ef_search))
    plan, branches = _plan_and_branches(conn, catalog, query, filters, page)
    if plan is Plan.EXACT:
        # No vector index is involved: no scan settings, and no plan-time ones (the sort the
        # exact path needs is the only way to order its rows), so no SET LOCAL round trip.
        return exact_statement(catalog, query, filters, page)
    _plan_time_settings(conn, filters)
    walked = dataclasses.replace(catalog, visible_where=None)  # what the walked index holds
    walk_ef = filtered_ef_search(ef_search, estimated_rows(conn, walked, query.column, Filters()))
    walk_limit = walk_pool(
        estimated_rows(conn, catalog, query.column, filters),
        estimated_rows(conn, walked, query.column, Filters(categories=filters.categories if branches else ())),
        walk_ef,
        page.top_k + page.offset,
    )
    statement = bounded_statement(catalog, query, filters, page, branches, walk_limit)
    return statement.where(_scan_settings(walk_ef, SCAN_BUDGET))


def filtered_ef_search(ef_search: int, catalog_rows: float) -> int:
    """The ef_search of a filtered walk: the page's, at least FILTERED_EF_SEARCH, growing with the
    catalog (ROWS_PER_FILTERED_EF), never past MAX_EF_SEARCH."""
    return int(min(MAX_EF_SEARCH, max(ef_search, FILTERED_EF_SEARCH, catalog_rows // ROWS_PER_FILTERED_EF)))


def walk_pool(kept: float, indexed: float, ef_search: int, n: int) -> int:
    """Rows a filtered walk collects before its page of ``n`` is cut from them.

    A walk reaches the rows a filter keeps through whatever edges lead into their region, so when
    they lie far from the query the first ones it meets are not surely the nearest; collecting more
    lets it close in before the page is taken. As many as one ef_search-wide batch of the walked
    index would pass if the filter were unrelated to the vectors (``ef_search * kept / indexed``,
    at most WALK_POOL): an ordinary filter finds them in the batches it walks anyway, a far one
    keeps walking inside its region. An index its filter keeps whole (a category's own, nothing
    else asked) hands its rows over in order: just the page.
    """
    if kept >= indexed:
        return n
    return max(n, min(WALK_POOL, math.ceil(ef_search * kept / max(indexed, 1.0))))


def _filtered(catalog: Catalog, filters: Filters) -> bool:
    return _Shape.of(filters) != _Shape(False, False, False, False) or catalog.visible() is not None


def _plan_time_settings(conn: Connection, filters: Filters) -> None:
    # hnsw.ef_search = 1 for planning only (the statement sets the real one for its run, see
    # _scan_settings): pgvector costs an HNSW scan's start-up as the whole index times about
    # ef_search / tuples, capped at 1, so at a high ef_search a category's partial index costs
    # as much as walking all of it and the planner takes the main index instead. At 1 the cost
    # follows each index's size, and the partial index wins wherever its predicate applies.
    conn.exec_driver_sql(
        "SET LOCAL enable_sort = off; SET LOCAL hnsw.ef_search = 1"
        + ("; SET LOCAL plan_cache_mode = force_custom_plan" if filters.categories else "")
    )


# --- Issue 20 item 1: the plan of a filtered vector search, chosen per query ---------------------


class Plan(StrEnum):
    """How a filtered vector search finds its rows (an unfiltered one always walks the main index)."""

    INDEX = "index"
    """The main HNSW index's iterative scan, bounded by SCAN_BUDGET, exact over the filtered rows
    when the budget ran out before the page was full."""
    CATEGORY_INDEX = "category_index"
    """One branch per requested category: its own partial HNSW index, or exact for a small category
    without one; pages merged (same bound and fallback)."""
    EXACT = "exact"
    """Exact distance over the rows the filter keeps, no vector index: the filter keeps few."""


EXACT_MAX_ROWS = 2_000
"""Never rank more kept rows than this exactly (every kept row's distance, then a top-n sort)."""
EXACT_COST_RATIO = 0.5
"""A visited index tuple's cost over an exactly ranked row's (which de-TOASTs a 2 KB vector), for
:func:`_few`: exact below ~700 kept rows of 100k, ~2,200 of 1M for a page of 10."""
FILTERED_EF_SEARCH = 200
"""The smallest ef_search of a filtered walk (main or category index). A filter leaves holes in
the graph's neighbourhoods, so a walk needs a wider candidate list than a plain page for the same
recall (docs/benchmarks.md, issue 20: recall and p99 at 64, 128 and 200)."""
ROWS_PER_FILTERED_EF = 500
"""Catalog rows per unit of a filtered walk's ef_search above FILTERED_EF_SEARCH: a bigger graph
needs a wider walk for the same recall (200 at 100k, the 1,000 ceiling from 500k; docs/benchmarks.md,
issue 20 at 1M)."""
WALK_POOL = 100
"""The most rows :func:`walk_pool` has a filtered walk collect: each costs a heap fetch, and a
selective filter makes the walk visit ``indexed / kept`` tuples per row (docs/benchmarks.md,
issue 20: recall and time by pool size)."""
SCAN_BUDGET = 20_000
"""Index tuples a filtered walk may visit (``hnsw.max_scan_tuples``). A photo of a dress filtered
to shoes walks through every dress before the first shoe; past this many tuples the statement
ranks the filtered rows exactly instead, which is bounded by the filter, not by the graph."""
ESTIMATE_TTL_S = 300.0
"""How long a filter's row estimate is reused; ANALYZE moves it slowly, and a wrong one only costs
time (every plan returns the same full, ordered page)."""
INDEXED_TTL_S = 30.0
"""How long the list of categories with their own index is reused (the background sync builds them)."""
_ESTIMATES_MAX = 4096

_cache_lock = threading.Lock()  # cachetools' caches are not thread-safe (a get may expire entries)
_estimates: TTLCache[tuple[Any, ...], float] = TTLCache(maxsize=_ESTIMATES_MAX, ttl=ESTIMATE_TTL_S)
_seen_index_changes = 0
_indexed: TTLCache[tuple[Any, Catalog], frozenset[str]] = TTLCache(maxsize=64, ttl=INDEXED_TTL_S)


def choose_plan(conn: Connection, catalog: Catalog, query: VectorQuery, filters: Filters, page: Page) -> Plan:
    """The plan for one filtered vector search, from what the filter keeps.

    Few kept rows: exact. Every requested category has its own index or keeps few rows: one branch
    per category (its index, or exact). Otherwise the main index. Both index plans carry the exact
    fallback, so an estimate only ever decides speed, never the page.
    """
    return _plan_and_branches(conn, catalog, query, filters, page)[0]


def _plan_and_branches(
    conn: Connection, catalog: Catalog, query: VectorQuery, filters: Filters, page: Page
) -> tuple[Plan, tuple[bool, ...]]:
    """:func:`choose_plan` with the category branches it found on the way (empty unless the plan
    is CATEGORY_INDEX), so a search does not work them out a second time."""
    if not _filtered(catalog, filters):
        return Plan.INDEX, ()
    if _few(conn, catalog, query.column, filters, page):
        return Plan.EXACT, ()
    branches = category_branches(conn, catalog, query, filters, page)
    if branches is not None:
        return Plan.CATEGORY_INDEX, branches
    return Plan.INDEX, ()


def _few(conn: Connection, catalog: Catalog, column: VectorColumn, filters: Filters, page: Page) -> bool:
    """Whether ranking the kept rows exactly beats walking an index for them.

    An uncorrelated filter keeping ``kept`` of ``total`` rows makes a walk visit about
    ``n * total / kept`` tuples for ``n`` rows; the exact path reads all ``kept`` (each a de-TOASTed
    vector, several times a visited tuple's cost): exact wins while ``kept^2`` stays under about
    ``n * total * EXACT_COST_RATIO``, and never past EXACT_MAX_ROWS (a walk has no such ceiling).
    """
    kept = estimated_rows(conn, catalog, column, filters)
    n = page.top_k + page.offset
    if kept <= n:
        return True
    if kept > EXACT_MAX_ROWS:
        return False
    total = estimated_rows(conn, catalog, column, Filters())
    return kept * kept <= n * total * EXACT_COST_RATIO


def category_branches(
    conn: Connection, catalog: Catalog, query: VectorQuery, filters: Filters, page: Page
) -> tuple[bool, ...] | None:
    """Per requested category, whether its branch is exact (True) or walks its own index (False);
    None when a category has neither its own index nor few enough rows to rank exactly."""
    if query.column is not VectorColumn.CLIP or not filters.categories:
        return None
    indexed = indexed_categories(conn, catalog)
    branches = []
    exact_rows = 0.0
    for category in filters.categories:
        if category in indexed:
            branches.append(False)
            continue
        # The alternative is the main index, which must walk past every row closer than the
        # category's (a dress before the first hat): exact is the bounded one, while it is small.
        exact_rows += estimated_rows(
            conn, catalog, query.column, dataclasses.replace(filters, categories=(category,))
        )
        if exact_rows > EXACT_MAX_ROWS:
            return None
        branches.append(True)
    return tuple(branches)


def estimated_rows(conn: Connection, catalog: Catalog, column: VectorColumn, filters: Filters) -> float:
    """PostgreSQL's own estimate of the rows a filter keeps (its statistics: MCVs, histograms),
    one ``EXPLAIN`` per distinct filter, reused for ESTIMATE_TTL_S."""
    _forget_if_indexes_changed()
    key = (
        conn.engine.url,
        catalog,
        column,
        filters.categories,
        filters.price_min,
        filters.price_max,
        json.dumps(filters.attributes, sort_keys=True, default=str),
    )
    with _cache_lock:
        cached = _estimates.get(key)
    if cached is not None:
        return cached
    t = catalog.sa_table
    where = [t.c[column.value].is_not(None), *_filter_clauses(catalog, _Shape.of(filters))]
    statement = select(literal_column("1")).select_from(t).where(*where).params(_filter_values(filters))
    sql, params = driver_sql(conn, statement)
    top = conn.exec_driver_sql("EXPLAIN " + sql, params).scalar()  # the plan's top line
    match = re.search(r"rows=(\d+)", top)
    rows = float(match.group(1)) if match else float("inf")
    with _cache_lock:
        _estimates[key] = rows
    return rows


def indexed_categories(conn: Connection, catalog: Catalog) -> frozenset[str]:
    """Categories whose partial index exists and is valid (:mod:`api.db.category_indexes`)."""
    _forget_if_indexes_changed()
    key = (conn.engine.url, catalog)
    with _cache_lock:
        cached = _indexed.get(key)
    if cached is not None:
        return cached
    categories = category_of_index(conn, catalog)
    with _cache_lock:
        _indexed[key] = categories
    return categories


def forget_plan_caches() -> None:
    """Drop cached estimates and index lists (after a bulk load or an index build, and in tests)."""
    global _seen_index_changes
    with _cache_lock:
        _estimates.clear()
        _indexed.clear()
        _seen_index_changes = category_indexes.changes()


def _forget_if_indexes_changed() -> None:
    if _seen_index_changes != category_indexes.changes():
        forget_plan_caches()


def exact_statement(catalog: Catalog, query: VectorQuery, filters: Filters, page: Page) -> Select[Any]:
    """The page by exact distance over the filtered rows: ``ORDER BY`` an expression no vector
    index can serve (``distance + 0``), so the planner reaches the rows through the filter's own
    indexes (btree, GIN) or a scan, and sorts the top n."""
    template = _exact_template(
        catalog, query.column, _Shape.of(filters), query.model_id is not None, query.exclude_sku is not None
    )
    return template.params(_query_values(query, filters, page, page.top_k + page.offset))


@lru_cache(maxsize=256)
def _exact_template(
    catalog: Catalog, column_name: VectorColumn, shape: _Shape, by_model: bool, excluding: bool
) -> Select[Any]:
    nearest = _nearest(catalog, column_name, shape, by_model, excluding, exact=True)
    return _page_of(catalog, _materialized(nearest, "nearest"))


def _nearest(
    catalog: Catalog,
    column_name: VectorColumn,
    shape: _Shape,
    by_model: bool,
    excluding: bool,
    *,
    exact: bool = False,
    category_param: str | None = None,
    limit_param: str = "inner_limit",
) -> Select[Any]:
    """The ``limit_param`` nearest rows as every plan ranks them: through a vector index, or
    ``exact`` ("+ 0" takes the distance out of the HNSW opclass's reach, so no index serves the
    ORDER BY and every kept row is ranked). ``category_param``: one category branch's filter."""
    distance, where = _nearest_clauses(catalog, column_name, shape, by_model, excluding)
    if category_param is not None:
        where.append(catalog.field("category") == bindparam(category_param, type_=Text))
    ranked = (distance + 0 if exact else distance).label("distance")
    return (
        select(*catalog.listing_columns(), ranked)
        .where(and_(*where))
        .order_by(ranked)
        .limit(bindparam(limit_param, type_=Integer))
    )


def _materialized(statement: Any, name: str) -> Any:
    """A CTE PostgreSQL must compute once and not inline: its LIMIT is what bounds the walk."""
    return statement.cte(name).prefix_with("MATERIALIZED")


def _page_of(catalog: Catalog, nearest: Any) -> Select[Any]:
    listing = [nearest.c[c.key] for c in catalog.listing_columns()]
    return (
        select(*listing, (1 - nearest.c.distance).label("score"))
        .order_by(nearest.c.distance, nearest.c.id)
        .limit(bindparam("top_k", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


def bounded_statement(
    catalog: Catalog,
    query: VectorQuery,
    filters: Filters,
    page: Page,
    branches: tuple[bool, ...] = (),
    walk_limit: int = 0,
) -> Select[Any]:
    """An index walk bounded by SCAN_BUDGET, with the exact ranking for the rest when it came short.

    The walk collects ``walk_limit`` rows (:func:`walk_pool`; at least the page's), the page is the
    nearest of them.

    One statement: ``walk`` is the HNSW scan of the main index or, with ``branches``, one branch
    per category on ``category = :c`` (PostgreSQL then picks that category's partial index; a
    branch marked True ranks its few rows exactly instead), pages merged by distance. ``exact``
    has the one-time condition "the walk found fewer rows than the page needs", so it runs only
    then, and replaces the walk's rows (a short walk says nothing about order beyond what it
    visited). Pages are full whenever enough rows match, and in distance order.
    """
    template = _bounded_template(
        catalog,
        query.column,
        _Shape.of(filters),
        query.model_id is not None,
        query.exclude_sku is not None,
        branches,
    )
    n = page.top_k + page.offset
    values = _query_values(query, filters, page, n)
    values["walk_limit"] = max(n, walk_limit)
    values.update(
        {f"category_{i}": category for i, category in enumerate(filters.categories[: len(branches)])}
    )
    return template.params(values)


@lru_cache(maxsize=256)
def _bounded_template(
    catalog: Catalog,
    column_name: VectorColumn,
    shape: _Shape,
    by_model: bool,
    excluding: bool,
    branches: tuple[bool, ...],
) -> Select[Any]:
    inner_limit = bindparam("inner_limit", type_=Integer)
    if branches:
        branch_shape = dataclasses.replace(shape, categories=False)
        parts = [
            _nearest(
                catalog,
                column_name,
                branch_shape,
                by_model,
                excluding,
                exact=exact_branch,
                category_param=f"category_{i}",
                limit_param="inner_limit" if exact_branch else "walk_limit",
            )
            for i, exact_branch in enumerate(branches)
        ]
        walk = _materialized(parts[0] if len(parts) == 1 else union_all(*parts), "walk")
    else:
        walk = _materialized(
            _nearest(catalog, column_name, shape, by_model, excluding, limit_param="walk_limit"), "walk"
        )
    found = select(func.count()).select_from(walk).scalar_subquery()
    exact = _materialized(
        _nearest(catalog, column_name, shape, by_model, excluding, exact=True).where(found < inner_limit), "exact"
    )
    columns = [c.key for c in catalog.listing_columns()] + ["distance"]
    nearest = union_all(
        select(*[walk.c[c] for c in columns]).where(found >= inner_limit),
        select(*[exact.c[c] for c in columns]),
    ).subquery("nearest")
    return _page_of(catalog, nearest)


def _scan_settings(ef_search: int, max_scan_tuples: int = MAX_SCAN_TUPLES) -> ColumnElement[bool]:
    """``SET LOCAL`` for the HNSW scan's settings, as a one-time filter of the statement itself.

    ``set_config(name, value, true)`` is transaction-local like ``SET LOCAL``; PostgreSQL runs an
    uncorrelated condition like this once, as a gate above the plan, before the index scan
    fetches its first row, which is when pgvector reads these settings (bench/search_roundtrips.py
    checks it: ef_search 1 without the iterative scan returns 1 row through it). Saves the round
    trip a separate ``SET LOCAL`` costs: 0.1-0.3 ms on a quiet machine, milliseconds on a busy one.
    """
    settings = and_(
        func.set_config(
            "hnsw.ef_search", bindparam("hnsw_ef_search", str(ef_search), type_=Text), True
        ).is_not(None),
        func.set_config("hnsw.iterative_scan", "relaxed_order", True).is_not(None),
        func.set_config("hnsw.max_scan_tuples", str(max_scan_tuples), True).is_not(None),
    )
    return select(settings).scalar_subquery()


@dataclass(frozen=True)
class _Shape:
    """Which optional clauses a statement has; its values travel as bind parameters."""

    categories: bool
    price_min: bool
    price_max: bool
    attributes: bool

    @classmethod
    def of(cls, filters: Filters) -> _Shape:
        return cls(
            bool(filters.categories),
            filters.price_min is not None,
            filters.price_max is not None,
            bool(filters.attributes),
        )


def _filter_clauses(catalog: Catalog, shape: _Shape) -> list[ColumnElement[bool]]:
    """The shopper's filters plus the catalog's visibility predicate: every shopper read gets both."""
    clauses: list[ColumnElement[bool]] = []
    visible = catalog.visible()
    if visible is not None:
        clauses.append(visible)
    if shape.categories:
        clauses.append(catalog.field("category").in_(bindparam("categories", expanding=True)))
    price = catalog.field("price")
    if shape.price_min:
        clauses.append(price >= bindparam("price_min", type_=price.type))
    if shape.price_max:
        clauses.append(price <= bindparam("price_max", type_=price.type))
    if shape.attributes:
        # @> containment: served by the jsonb_path_ops GIN index when the planner wants it.
        clauses.append(catalog.field("attributes").op("@>")(bindparam("attributes", type_=JSONB)))
    return clauses


def _filter_values(filters: Filters) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if filters.categories:
        values["categories"] = list(filters.categories)
    if filters.price_min is not None:
        values["price_min"] = filters.price_min
    if filters.price_max is not None:
        values["price_max"] = filters.price_max
    if filters.attributes:
        values["attributes"] = filters.attributes
    return values


def vector_statement(catalog: Catalog, query: VectorQuery, filters: Filters, page: Page) -> Select[Any]:
    """The nearest ``offset + top_k`` rows by the HNSW index, then that page in exact distance order.

    The inner ``ORDER BY column <=> :query LIMIT n`` is the only shape the index can serve;
    the relaxed iterative scan may hand rows over slightly out of order, so the materialised
    CTE (kept as its own plan step: an inlined one would merge the two sorts away) is sorted
    again on the distance it already computed -- n rows, microseconds.

    The statement is built once per shape (column, which filters, model, exclusion) and reused
    with new parameter values: constructing it cost 0.5 ms a query, a fifth of a 1M-row search.
    """
    template = _vector_template(
        catalog, query.column, _Shape.of(filters), query.model_id is not None, query.exclude_sku is not None
    )
    return template.params(_query_values(query, filters, page, page.top_k + page.offset))


def _nearest_clauses(
    catalog: Catalog, column_name: VectorColumn, shape: _Shape, by_model: bool, excluding: bool
) -> tuple[ColumnElement[float], list[ColumnElement[bool]]]:
    """The distance and WHERE clauses every nearest-rows statement (plain or grouped) shares."""
    t = catalog.sa_table
    column = t.c[column_name.value]
    distance = column.op("<=>", return_type=Float)(query_vector_param(column.type))
    where = [column.is_not(None), *_filter_clauses(catalog, shape)]
    if by_model:
        model_column = t.c.image_model if column_name is VectorColumn.CLIP else t.c.fallback_model
        where.append(model_column == bindparam("model_id", type_=Text))
    if excluding:
        where.append(catalog.field("sku") != bindparam("exclude_sku", type_=Text))
    return distance, where


def _query_values(query: VectorQuery, filters: Filters, page: Page, inner_limit: int) -> dict[str, Any]:
    """Bind values of a nearest-rows statement: the filters, the vector, the page and the window."""
    values = _filter_values(filters)
    values.update(
        query_vector=BinaryVector(query.vector), inner_limit=inner_limit, top_k=page.top_k, offset=page.offset
    )
    if query.model_id is not None:
        values["model_id"] = query.model_id
    if query.exclude_sku is not None:
        values["exclude_sku"] = query.exclude_sku
    return values


@lru_cache(maxsize=256)
def _vector_template(
    catalog: Catalog, column_name: VectorColumn, shape: _Shape, by_model: bool, excluding: bool
) -> Select[Any]:
    return _page_of(catalog, _materialized(_nearest(catalog, column_name, shape, by_model, excluding), "nearest"))


def grouped_vector_statement(
    catalog: Catalog, query: VectorQuery, filters: Filters, page: Page, window: int
) -> Select[Any]:
    """:func:`vector_statement` over a ``window`` of nearest rows, one row per group, with counts."""
    assert page.group is not None
    template = _grouped_vector_template(
        catalog,
        query.column,
        _Shape.of(filters),
        query.model_id is not None,
        query.exclude_sku is not None,
        page.group,
    )
    return template.params(_query_values(query, filters, page, window))


def _group_key(group_value: ColumnElement[Any], key: ColumnElement[Any]) -> tuple[ColumnElement[Any], ...]:
    """PARTITION BY for a row's group; a row whose group is NULL stands alone (its own key)."""
    return (group_value, case((group_value.is_(None), key)))


def _group_sql(group: str) -> ColumnElement[Any]:
    # Operator-written SQL over the row, like LOOKALIKE_FIELD_* mappings (never request input).
    return literal_column(f"CAST(({group}) AS text)", Text())


@lru_cache(maxsize=256)
def _grouped_vector_template(
    catalog: Catalog, column_name: VectorColumn, shape: _Shape, by_model: bool, excluding: bool, group: str
) -> Select[Any]:
    nearest = _materialized(
        _nearest(catalog, column_name, shape, by_model, excluding).add_columns(_group_sql(group).label("grp")),
        "nearest",
    )
    key = _group_key(nearest.c.grp, nearest.c.id)
    ranked = select(
        nearest,
        func.row_number().over(partition_by=key, order_by=(nearest.c.distance, nearest.c.id)).label("rn"),
        func.count().over(partition_by=key).label("variants"),
        func.count().over().label("candidates"),
    ).subquery("ranked")
    listing = [ranked.c[c.key] for c in catalog.listing_columns()]
    return (
        select(*listing, (1 - ranked.c.distance).label("score"), ranked.c.variants, ranked.c.candidates)
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.distance, ranked.c.id)
        .limit(bindparam("top_k", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


def grouped_text_statement(catalog: Catalog, query: TextQuery, filters: Filters, page: Page) -> Select[Any]:
    """:func:`text_statement` with one row per group: its best-ranked match, and how many matched."""
    assert page.group is not None
    unaccent = getattr(func, catalog.schema).lookalike_unaccent
    tsquery = func.websearch_to_tsquery(literal_column(catalog.regconfig), unaccent(query.text))
    document = catalog.document()
    rank = func.ts_rank_cd(document, tsquery, 32)
    matches = (
        select(*catalog.listing_columns(), rank.label("score"), _group_sql(page.group).label("grp"))
        .select_from(catalog.sa_table)
        .where(and_(document.op("@@")(tsquery), *_filter_clauses(catalog, _Shape.of(filters))))
        .subquery("matches")
    )
    key = _group_key(matches.c.grp, matches.c.id)
    ranked = select(
        matches,
        func.row_number().over(partition_by=key, order_by=(matches.c.score.desc(), matches.c.id)).label("rn"),
        func.count().over(partition_by=key).label("variants"),
    ).subquery("ranked")
    listing = [ranked.c[c.key] for c in catalog.listing_columns()]
    statement = (
        select(*listing, ranked.c.score, ranked.c.variants)
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.score.desc(), ranked.c.id)
        .limit(page.top_k)
        .offset(page.offset)
    )
    return statement.params(_filter_values(filters))


def text_statement(catalog: Catalog, query: TextQuery, filters: Filters, page: Page) -> Select[Any]:
    """Full-text ranking in the catalog's language, accents folded on both sides."""
    unaccent = getattr(func, catalog.schema).lookalike_unaccent
    tsquery = func.websearch_to_tsquery(literal_column(catalog.regconfig), unaccent(query.text))
    document = catalog.document()
    # Normalisation 32 maps rank to rank/(rank+1): a 0..1 score comparable across queries.
    rank = func.ts_rank_cd(document, tsquery, 32)
    statement = (
        select(*catalog.listing_columns(), rank.label("score"))
        .select_from(catalog.sa_table)
        .where(and_(document.op("@@")(tsquery), *_filter_clauses(catalog, _Shape.of(filters))))
        .order_by(rank.desc(), catalog.key_column)
        .limit(page.top_k)
        .offset(page.offset)
    )
    return statement.params(_filter_values(filters))


def stored_vector(
    conn: Connection, catalog: Catalog, sku: str
) -> tuple[np.ndarray | None, np.ndarray | None, str | None] | None:
    """A visible product's stored (CLIP vector, fallback vector, CLIP model id), or None."""
    t = catalog.sa_table
    where = [catalog.field("sku") == bindparam("sku", sku, type_=Text)]
    visible = catalog.visible()
    if visible is not None:
        where.append(visible)
    row = conn.execute(
        select(t.c.image_embedding, t.c.fallback_embedding, t.c.image_model).where(*where).limit(1)
    ).first()
    if row is None:
        return None
    return row[0], row[1], row[2]


# --- Issue 16 item 3: text queries in CLIP mode fuse CLIP's ranking with the words -------------

FUSION_POOL = MIN_EF_SEARCH
"""How deep each ranking (CLIP's nearest rows, the full-text matches) takes part in the fusion;
below it a row keeps its CLIP place only, so deep pages continue the plain CLIP ranking. Equal to
the HNSW scan's smallest ef_search, so CLIP's part walks the index as far as a plain page does."""
RRF_K = 60
"""Reciprocal rank fusion constant (Cormack et al. 2009): 1/(k + rank) per ranking."""
MAX_SKU_TOKENS = 48
"""Query words tried as SKUs (each in 3 spellings): bounds the = ANY(...) list of a long query."""
_SKU_PUNCTUATION = ".,;:!?\"'()[]{}<>\u00ab\u00bb\u201c\u201d\u2018\u2019"


@dataclass(frozen=True)
class FusedQuery:
    """A text query in CLIP mode: the phrase's CLIP vector and the phrase itself."""

    vector: VectorQuery
    text: str


@dataclass(frozen=True)
class FusedHit(Hit):
    exact: str | None = None
    """``"sku"`` or ``"name"`` when the query (or one of its words) is exactly this product's SKU or name."""
    words: bool = False
    """The product matched the words (exact hit or full-text match): never cut by the match floor."""
    word_matches: int = 0
    """How many candidates of the whole search matched the words (0: the result is CLIP's alone)."""
    best: float = 0.0
    """The best cosine among the candidates, the "1" of the match scale on every page."""


def sku_tokens(text: str) -> list[str]:
    """The query and each of its words, as typed, upper- and lower-cased: candidates for an exact SKU.

    Three spellings instead of ``upper(sku) = ...`` keep the comparison on the SKU's own btree
    index (a unique index on Lookalike's table), so the SKU branch costs one index probe per word.
    """
    words = [text.strip(), *(w.strip(_SKU_PUNCTUATION) for w in text.split())][:MAX_SKU_TOKENS]
    tokens: dict[str, None] = {}
    for word in words:
        if word:
            for spelling in (word, word.upper(), word.lower()):
                tokens[spelling] = None
    return list(tokens)


def fused_search(
    conn: Connection, catalog: Catalog, query: FusedQuery, filters: Filters, page: Page
) -> list[FusedHit]:
    """One page of a text query in CLIP mode, fused with the lexical ranking, in one statement.

    Order: an exact SKU hit (the query or one of its words equals the SKU), then an exact name
    hit (case- and accent-insensitive), then reciprocal rank fusion of CLIP's nearest
    FUSION_POOL rows and the best FUSION_POOL full-text matches, then CLIP distance. A query
    that matches no words fuses nothing: every row's fused score is 1/(k + its CLIP rank), so the
    page is CLIP's own ranking. ``score`` stays the raw CLIP cosine for every hit (a fused score
    is a rank artifact, meaningless across queries, while API users compare and threshold
    cosines); whether a hit matched the words travels in ``words``/``exact`` for the match
    scale (api.services.relevance.fused_page). ``score_threshold`` is applied there, not here.
    """
    if page.group is not None:
        window = max(FUSION_POOL, (page.top_k + page.offset) * GROUP_WINDOW_FACTOR)
        while True:
            rows = list(conn.execute(*_prepare_fused(conn, catalog, query, filters, page, window)).mappings())
            exhausted = bool(rows) and rows[0]["candidates"] < window
            if len(rows) >= page.top_k or exhausted or window >= MAX_GROUP_WINDOW:
                break
            window = min(window * GROUP_WINDOW_FACTOR, MAX_GROUP_WINDOW)
    else:
        window = max(FUSION_POOL, page.top_k + page.offset)
        rows = list(conn.execute(*_prepare_fused(conn, catalog, query, filters, page, window)).mappings())
    return [FusedHit(**{k: v for k, v in row.items() if k != "candidates"}) for row in rows]


def explain_fused(conn: Connection, catalog: Catalog, query: FusedQuery, filters: Filters, page: Page) -> str:
    """The plan of exactly the statement :func:`fused_search` runs first (tests, debugging)."""
    window = max(FUSION_POOL, page.top_k + page.offset)
    if page.group is not None:
        window = max(FUSION_POOL, (page.top_k + page.offset) * GROUP_WINDOW_FACTOR)
    statement, values = _prepare_fused(conn, catalog, query, filters, page, window)
    sql, params = driver_sql(conn, statement.params(values))
    return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params).all())


def _prepare_fused(
    conn: Connection, catalog: Catalog, query: FusedQuery, filters: Filters, page: Page, window: int
) -> tuple[Select[Any], dict[str, Any]]:
    """The fused statement and its values, with the plan-time and scan settings :func:`_prepare`
    gives a vector search. The values go to execute() rather than ``.params()``: cloning this
    statement's tree for every query would cost more than its own cached compilation."""
    if _filtered(catalog, filters):
        _plan_time_settings(conn, filters)
    vq = query.vector
    template = _fused_template(
        catalog,
        vq.column,
        _Shape.of(filters),
        vq.model_id is not None,
        vq.exclude_sku is not None,
        page.group,
    )
    values = _query_values(vq, filters, page, window)
    values.update(words=query.text, sku_tokens=sku_tokens(query.text))
    ef_search = min(max(MIN_EF_SEARCH, window), MAX_EF_SEARCH)
    return template.where(_scan_settings(ef_search)), values


@lru_cache(maxsize=256)
def _fused_template(
    catalog: Catalog,
    column_name: VectorColumn,
    shape: _Shape,
    by_model: bool,
    excluding: bool,
    group: str | None,
) -> Select[Any]:
    """CTEs: ``clip`` (HNSW, nearest ``inner_limit``), ``words`` (GIN full text, best FUSION_POOL,
    exact names first), ``skus`` (SKU equality); one row per candidate, fused and paged.

    Every branch carries the same WHERE (embedded by the current model, filters, visibility), so
    a word match is a row CLIP mode could rank too and has a cosine to show. A catalog whose
    document cannot be a GIN-indexed column (:attr:`Catalog.stored_tsvector`) matches the words
    among CLIP's candidates only; exact SKUs are still found anywhere.
    """
    distance, where = _nearest_clauses(catalog, column_name, shape, by_model, excluding)
    table = catalog.sa_table
    key = catalog.key_column
    unaccent = getattr(func, catalog.schema).lookalike_unaccent
    words_param = bindparam("words", type_=Text)

    clip = (
        select(key.label("id"), distance.label("distance"))
        .where(and_(*where))
        .order_by(distance)
        .limit(bindparam("inner_limit", type_=Integer))
        .cte("clip")
        .prefix_with("MATERIALIZED")
    )
    clip_rank = func.row_number().over(order_by=(clip.c.distance, clip.c.id))
    clip_rows = select(
        clip.c.id,
        clip.c.distance,
        literal_column("NULL", Text()).label("exact"),
        case((clip_rank <= FUSION_POOL, 1.0 / (RRF_K + clip_rank)), else_=0.0).label("rrf"),
        literal_column("false", Boolean()).label("words"),
    )

    tsquery = func.websearch_to_tsquery(literal_column(catalog.regconfig), unaccent(words_param))
    document = catalog.document()

    def folded(value: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.lower(unaccent(func.btrim(value)))

    # Folding a name costs ~0.1 ms where the server lacks unaccent (lookalike_unaccent is then a
    # long translate()), too much for every match of a common word. Equal folded texts have equal
    # lexeme sets, so only a match whose name part (weight A) has as many lexemes as the query is
    # folded: exact-name candidates only. The query side is folded once (an InitPlan).
    query_lexemes = select(
        func.length(func.to_tsvector(literal_column(catalog.regconfig), unaccent(words_param)))
    ).scalar_subquery()
    name_lexemes = func.length(func.ts_filter(document, literal_column("'{a}'")))
    same_name = folded(catalog.field("name")) == select(folded(words_param)).scalar_subquery()
    name_hit = case((name_lexemes == query_lexemes, func.coalesce(same_name, False)), else_=False)
    rank = func.ts_rank_cd(document, tsquery, 32)
    word_where = [document.op("@@")(tsquery), *where]
    if not catalog.stored_tsvector:
        # No indexed document (a text field read from another table): matching every row would
        # compute every row's document per query, so the words re-rank CLIP's candidates only.
        word_where.append(key.in_(select(clip.c.id)))
    words = (
        select(key.label("id"), name_hit.label("name_hit"), rank.label("rank"))
        .where(and_(*word_where))
        .order_by(name_hit.desc(), rank.desc(), key)
        .limit(FUSION_POOL)
        .cte("words")
        .prefix_with("MATERIALIZED")
    )
    word_rank = func.row_number().over(order_by=(words.c.name_hit.desc(), words.c.rank.desc(), words.c.id))
    word_rows = select(
        words.c.id,
        literal_column("NULL", Float()).label("distance"),
        case((words.c.name_hit, "name"), else_=None).label("exact"),
        (1.0 / (RRF_K + word_rank)).label("rrf"),
        literal_column("true", Boolean()).label("words"),
    )
    sku_rows = select(
        key.label("id"),
        literal_column("NULL", Float()).label("distance"),
        literal_column("'sku'", Text()).label("exact"),
        literal_column("0.0", Float()).label("rrf"),
        literal_column("true", Boolean()).label("words"),
    ).where(and_(catalog.field("sku") == any_(bindparam("sku_tokens", type_=ARRAY(Text))), *where))

    branches = union_all(clip_rows, word_rows, sku_rows).subquery("branches")
    # 'sku' > 'name' > NULL as text: max() keeps the strongest exact hit of a row's branches.
    exact = func.max(branches.c.exact)
    fused = (
        select(
            branches.c.id,
            func.min(branches.c.distance).label("distance"),
            exact.label("exact"),
            func.sum(branches.c.rrf).label("rrf"),
            func.bool_or(branches.c.words).label("words"),
        )
        .group_by(branches.c.id)
        .subquery("fused")
    )
    # A word-only candidate's cosine is computed here, for its row alone.
    cosine = 1 - func.coalesce(fused.c.distance, distance)
    exact_order = case((fused.c.exact == "sku", 2), (fused.c.exact == "name", 1), else_=0)
    columns = [
        *catalog.listing_columns(),
        cosine.label("score"),
        fused.c.exact,
        fused.c.words,
        exact_order.label("exact_order"),
        fused.c.rrf,
    ]
    if group is not None:
        columns.append(_group_sql(group).label("grp"))
    joined = select(*columns).select_from(table.join(fused, key == fused.c.id)).subquery("joined")
    order = (joined.c.exact_order.desc(), joined.c.rrf.desc(), joined.c.score.desc(), joined.c.id)
    listing = [joined.c[c.key] for c in catalog.listing_columns()]
    shown = [
        *listing,
        joined.c.score,
        joined.c.exact,
        joined.c.words,
    ]
    if group is None:
        return (
            select(
                *shown,
                func.count().filter(joined.c.words).over().label("word_matches"),
                func.max(joined.c.score).over().label("best"),
            )
            .order_by(*order)
            .limit(bindparam("top_k", type_=Integer))
            .offset(bindparam("offset", type_=Integer))
        )
    group_key = _group_key(joined.c.grp, joined.c.id)
    ranked = select(
        joined,
        func.row_number().over(partition_by=group_key, order_by=order).label("rn"),
        func.count().over(partition_by=group_key).label("variants"),
        func.count().filter(joined.c.words).over().label("word_matches"),
        func.max(joined.c.score).over().label("best"),
        select(func.count()).select_from(clip).scalar_subquery().label("candidates"),
    ).subquery("ranked")
    return (
        select(
            *[ranked.c[c.key] for c in catalog.listing_columns()],
            ranked.c.score,
            ranked.c.variants,
            ranked.c.exact,
            ranked.c.words,
            ranked.c.word_matches,
            ranked.c.best,
            ranked.c.candidates,
        )
        .where(ranked.c.rn == 1)
        .order_by(ranked.c.exact_order.desc(), ranked.c.rrf.desc(), ranked.c.score.desc(), ranked.c.id)
        .limit(bindparam("top_k", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
