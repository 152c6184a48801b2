"""The search statement on a 20,000-row catalog: index use, full pages under selective filters."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from api.db import migrate
from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.search import (
    FILTERED_EF_SEARCH,
    Filters,
    Page,
    TextQuery,
    VectorColumn,
    VectorQuery,
    explain,
    search,
)
from api.settings import Settings
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text

pytestmark = pytest.mark.slow  # seeds a 20k-row catalog for plan tests: not in `make test-fast`

ROWS = 20_000
RARE_EVERY = 50  # 2% of rows are in category "rare"
MODEL = "test-model"


@pytest.fixture(scope="module")
def big_catalog(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> Iterator[tuple[Database, Catalog, np.ndarray]]:
    """20k products with embedding-like vectors, 2% of them in a "rare" category."""
    settings = make_settings(database_url=create_database())
    database = Database(settings)
    migrate.upgrade(database)
    vectors = clustered_unit_vectors(np.random.default_rng(42), ROWS)

    def row(i: int, vector: np.ndarray) -> tuple[object, ...]:
        category = "rare" if i % RARE_EVERY == 0 else f"common-{i % 7}"
        color = "red" if i % 3 == 0 else "blue"
        attributes = f'{{"color": "{color}"}}'
        return (f"sku-{i}", f"Product {i} {color}", category, i % 200, attributes, vector_text(vector), MODEL)

    columns = "sku, name, category, price, attributes, image_embedding, image_model"
    copy_products(database, columns, (row(i, v) for i, v in enumerate(vectors)))
    yield database, Catalog.from_settings(settings), vectors
    database.dispose()


def query_vector(vectors: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = vectors[rng.integers(0, len(vectors))] + rng.normal(scale=0.02, size=512).astype(np.float32)
    return (q / np.linalg.norm(q)).astype(np.float32)


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(categories=("common-1", "common-2", "common-3")),
        Filters(categories=("common-1", "common-2", "common-3", "common-4"), price_min=10, price_max=180),
        Filters(attributes={"color": "red"}),
    ],
    ids=["no-filter", "categories", "categories+price", "attributes"],
)
def test_vector_search_uses_the_hnsw_index(big_catalog, filters: Filters) -> None:  # type: ignore[no-untyped-def]
    database, catalog, vectors = big_catalog
    query = VectorQuery(VectorColumn.CLIP, query_vector(vectors, 1), MODEL)
    with database.engine.begin() as conn:
        plan = explain(conn, catalog, query, filters, Page(top_k=12))
    assert "Index Scan using products_image_embedding_hnsw" in plan, plan
    # The index provides the order: the sorts are the final re-sort of the page itself and, with
    # a filter, the exact ranking that runs only when the walk runs out of budget (its "+ 0" key;
    # tests/api/db/test_filtered_plans.py). Filters that keep few rows are ranked exactly (there).
    sort_keys = [line.strip() for line in plan.splitlines() if "Sort Key" in line]
    assert all(
        key.startswith(("Sort Key: nearest.", "Sort Key: walk.")) or "+" in key for key in sort_keys
    ), plan
    if filters == Filters():
        assert sort_keys == ["Sort Key: nearest.distance, nearest.id"], plan


def test_selective_filter_still_fills_the_page_in_true_distance_order(big_catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog, vectors = big_catalog
    rare = np.arange(0, ROWS, RARE_EVERY)
    recalls = []
    for seed in range(5):
        q = query_vector(vectors, seed)
        with database.engine.begin() as conn:
            hits = search(
                conn,
                catalog,
                VectorQuery(VectorColumn.CLIP, q, MODEL),
                Filters(categories=("rare",)),
                Page(top_k=24),
            )
        assert len(hits) == 24
        assert all(hit.category == "rare" for hit in hits)
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        exact = {f"sku-{i}" for i in rare[np.argsort(-(vectors[rare] @ q))[:24]]}
        recalls.append(len(exact & {hit.sku for hit in hits}) / 24)
    assert np.mean(recalls) >= 0.9, recalls


def test_pages_continue_where_the_previous_one_ended(big_catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog, vectors = big_catalog
    q = VectorQuery(VectorColumn.CLIP, query_vector(vectors, 9), MODEL)
    with database.engine.begin() as conn:
        both = search(conn, catalog, q, Filters(categories=("rare",)), Page(top_k=40))
    with database.engine.begin() as conn:
        second = search(conn, catalog, q, Filters(categories=("rare",)), Page(top_k=20, offset=20))
    assert [h.sku for h in second] == [h.sku for h in both[20:]]


def test_rows_of_another_model_are_not_ranked(big_catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog, vectors = big_catalog
    with database.engine.begin() as conn:
        hits = search(
            conn,
            catalog,
            VectorQuery(VectorColumn.CLIP, query_vector(vectors, 3), "other-model"),
            Filters(),
            Page(top_k=5),
        )
    assert hits == []


def test_fulltext_ranks_name_matches(big_catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog, _ = big_catalog
    with database.engine.begin() as conn:
        hits = search(conn, catalog, TextQuery("red"), Filters(categories=("rare",)), Page(top_k=10))
        plan = explain(conn, catalog, TextQuery("red"), Filters(), Page(top_k=10))
    assert len(hits) == 10 and all("red" in (h.name or "") and h.category == "rare" for h in hits)
    assert 0 < hits[0].score <= 1
    assert "search_tsv" in plan


@pytest.mark.parametrize(
    ("filters", "sets"),
    [
        (Filters(), []),
        (
            Filters(categories=("common-1", "common-2", "common-3")),
            [
                "SET LOCAL enable_sort = off; SET LOCAL hnsw.ef_search = 1; "
                "SET LOCAL plan_cache_mode = force_custom_plan"
            ],
        ),
        (Filters(price_max=100), ["SET LOCAL enable_sort = off; SET LOCAL hnsw.ef_search = 1"]),
        (Filters(categories=("rare",)), []),
    ],
    ids=["no-filter", "category", "price", "exact"],
)
def test_scan_settings_travel_inside_the_statement(big_catalog, filters: Filters, sets: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Issue 20: no SET LOCAL round trip of its own for an unfiltered search; plan-time settings
    only with a filter; the HNSW settings still reach this transaction (and only it)."""
    from sqlalchemy import event

    database, catalog, vectors = big_catalog
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    q = VectorQuery(VectorColumn.CLIP, query_vector(vectors, 5), MODEL)
    with database.engine.connect() as conn:
        search(conn, catalog, q, filters, Page(top_k=80))  # a first search caches its plan inputs (row estimates)
        conn.rollback()
        event.listen(conn, "before_cursor_execute", record)
        hits = search(conn, catalog, q, filters, Page(top_k=80))
        event.remove(conn, "before_cursor_execute", record)
        assert len(hits) == 80
        assert [s for s in sent if s.lstrip().upper().startswith("SET")] == sets
        assert len(sent) == 1 + len(sets)
        exact = filters.categories == ("rare",)  # ranked exactly: no vector index, no HNSW settings
        ef_search = "40" if exact else ("80" if not sets else str(FILTERED_EF_SEARCH))  # walked filters: wider
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar() == ef_search
        assert conn.exec_driver_sql("SHOW hnsw.iterative_scan").scalar() == (
            "off" if exact else "relaxed_order"
        )
        conn.rollback()
        assert conn.exec_driver_sql("SHOW hnsw.ef_search").scalar() == "40"
