"""Per-category partial HNSW indexes: which categories get one, that search uses them, and upkeep."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.category_indexes import CategoryIndexPolicy, existing_indexes, index_name, sync
from api.db.engine import Database
from api.db.search import Filters, Page, VectorColumn, VectorQuery, explain, search
from api.settings import Settings
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text
from tests.support import clean_env, run_cli

pytestmark = pytest.mark.slow  # seeds a catalog and builds per-category HNSW indexes: not in `make test-fast`

# 6,000 rows: "a" is half the catalog (the main index serves it well), "e" is under min_rows,
# and the odd name proves category values never reach the DDL unquoted.
ODD = "d'; DROP TABLE products; -- 100%"
SIZES = {"a": 3000, "b": 1500, "c": 1200, ODD: 240, "e": 60}
POLICY = CategoryIndexPolicy(min_rows=200, max_share=0.3, max_indexes=64)


def _catalog(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> tuple[Database, Catalog, np.ndarray, list[str]]:
    settings = make_settings(database_url=create_database())
    database = Database(settings)
    migrate.upgrade(database)
    categories = [c for c, n in SIZES.items() for _ in range(n)]
    vectors = clustered_unit_vectors(np.random.default_rng(3), len(categories))
    rows = (
        (f"sku-{i}", f"Product {i}", category, vector_text(vector), "m")
        for i, (category, vector) in enumerate(zip(categories, vectors, strict=True))
    )
    copy_products(database, "sku, name, category, image_embedding, image_model", rows)
    return database, Catalog.from_settings(settings), vectors, categories


@pytest.fixture
def catalog(create_database: Callable[[], str], make_settings: Callable[..., Settings]):  # type: ignore[no-untyped-def]
    database, catalog_, vectors, categories = _catalog(create_database, make_settings)
    yield database, catalog_, vectors, categories
    database.dispose()


def test_only_mid_sized_categories_get_an_index_and_sync_is_idempotent(catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog_, _, _ = catalog
    first = sync(database, catalog_, POLICY)
    assert first.created == ["b", "c", ODD]  # largest first; "a" is too common, "e" too small
    assert first.dropped == []
    with database.engine.connect() as conn:
        assert set(existing_indexes(conn, catalog_)) == {index_name(catalog_, c) for c in ("b", "c", ODD)}
        assert conn.execute(text("SELECT count(*) FROM products")).scalar_one() == 6000
    again = sync(database, catalog_, POLICY)
    assert (again.created, again.dropped, again.kept) == ([], [], ["b", "c", ODD])


def test_a_single_category_query_walks_its_own_graph_with_the_same_answers(catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog_, vectors, categories = catalog
    rng = np.random.default_rng(9)
    queries = [vectors[rng.integers(0, len(vectors))] for _ in range(20)]
    members = np.array([c == ODD for c in categories])

    def run(filters: Filters) -> tuple[list[list[str]], str]:
        found = []
        with database.engine.begin() as conn:
            for q in queries:
                found.append(
                    [
                        h.sku
                        for h in search(conn, catalog_, VectorQuery(VectorColumn.CLIP, q), filters, Page(10))
                    ]
                )
            plan = explain(conn, catalog_, VectorQuery(VectorColumn.CLIP, queries[0]), filters, Page(10))
        return found, plan

    before, plan_before = run(Filters(categories=(ODD,)))
    # Without its own index a category this small is ranked exactly (api.db.search's plan choice).
    assert "_hnsw" not in plan_before and "products_category_idx" in plan_before, plan_before
    sync(database, catalog_, POLICY)
    after, plan_after = run(Filters(categories=(ODD,)))
    assert f"Index Scan using {index_name(catalog_, ODD)}" in plan_after, plan_after
    for q, skus in zip(queries, after, strict=True):
        exact = np.argsort(-(vectors[members] @ q))[:10]
        truth = {f"sku-{i}" for i in np.flatnonzero(members)[exact]}
        assert len(skus) == 10 and len(truth & set(skus)) >= 9
    assert sum(a == b for a, b in zip(before, after, strict=True)) >= 18  # same pages, by another road
    # Two categories at once: one branch per category, each on its own index (api.db.search).
    _, plan_two = run(Filters(categories=("b", "c")))
    assert "Index Scan using products_image_embedding_hnsw" not in plan_two, plan_two
    for category in ("b", "c"):
        assert f"Index Scan using {index_name(catalog_, category)}" in plan_two, plan_two


def test_indexes_follow_the_catalog(catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog_, _, _ = catalog
    sync(database, catalog_, POLICY)
    with database.engine.begin() as conn:  # the odd category shrinks below min_rows
        conn.execute(
            text("UPDATE products SET category = 'e' WHERE category = :c AND id % 2 = 0"), {"c": ODD}
        )
    report = sync(database, catalog_, POLICY)
    assert report.dropped == [index_name(catalog_, ODD)]
    assert sync(database, catalog_, CategoryIndexPolicy(200, 0.3, max_indexes=1)).kept == ["b"]
    with database.engine.connect() as conn:
        assert set(existing_indexes(conn, catalog_)) == {index_name(catalog_, "b")}


def test_an_invalid_index_from_a_failed_build_is_rebuilt(catalog) -> None:  # type: ignore[no-untyped-def]
    database, catalog_, _, _ = catalog
    sync(database, catalog_, POLICY)
    name = index_name(catalog_, "c")
    with database.engine.begin() as conn:  # what an interrupted CREATE INDEX CONCURRENTLY leaves behind
        conn.execute(
            text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = CAST(:n AS regclass)"),
            {"n": name},
        )
    report = sync(database, catalog_, POLICY)
    assert report.created == ["c"]
    with database.engine.connect() as conn:
        assert existing_indexes(conn, catalog_)[name] is True


def test_names_fit_postgres_identifiers() -> None:
    long_table = Catalog("t" * 63, "public", 512, 1280)
    name = index_name(long_table, "shoes")
    assert len(name.encode()) <= 63 and name.endswith("_hnsw")
    assert index_name(long_table, "shoes") != index_name(long_table, "boots")


def test_the_cli_builds_them(catalog) -> None:  # type: ignore[no-untyped-def]
    database, _, _, _ = catalog
    url = database.engine.url.render_as_string(hide_password=False)
    result = run_cli("db", "category-indexes", "--min-rows", "1000", env=clean_env(DATABASE_URL=url))
    assert result.returncode == 0, result.stderr
    assert "category indexes: 2 created, 0 dropped, 0 kept" in result.stdout
