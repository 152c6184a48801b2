"""HNSW build parameters as settings: new graphs get them, old ones are rebuilt concurrently, the
shop's own indexes are left alone, and nothing runs beside a bulk load."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from pydantic import ValidationError
from sqlalchemy import text

from api.db import catalog as catalog_module
from api.db import hnsw_graphs, migrate
from api.db.catalog import LARGE_GRAPH_ROWS, Catalog
from api.db.category_indexes import CategoryIndexPolicy, index_name
from api.db.category_indexes import sync as sync_categories
from api.db.engine import Database
from api.db.vector_indexes import DEFER_LOCK_KEY, describe_hnsw_indexes
from api.services.ingest.maintenance import Maintenance
from api.services.ingest.progress import Tally
from api.settings import Settings
from tests.api.db.seeding import copy_dresses_and_hats, vector_text

SHOP_INDEX = "shop_own_embedding_hnsw"
POLICY = CategoryIndexPolicy(150, 0.9, 4)


def _seed(database: Database, catalog: Catalog) -> np.ndarray:
    """300 products in two categories, one with its own partial index, plus an HNSW index the shop
    made itself on the same column."""
    vectors = copy_dresses_and_hats(database, seed=7)
    sync_categories(database, catalog, POLICY)
    with database.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE INDEX {SHOP_INDEX} ON products USING hnsw (image_embedding vector_l2_ops) "
            "WITH (m = 4, ef_construction = 8)"
        )
    return vectors


def _graphs(database: Database, catalog: Catalog) -> dict[str, tuple[int, int]]:
    with database.engine.connect() as conn:
        return {index.name: hnsw_graphs.graph_of(index) for index in describe_hnsw_indexes(conn, catalog)}


def _nearest(database: Database, vector: np.ndarray) -> str:
    with database.engine.begin() as conn:
        return conn.execute(
            text("SELECT sku FROM products ORDER BY image_embedding <=> CAST(:v AS vector) LIMIT 1"),
            {"v": vector_text(vector)},
        ).scalar_one()


def _ours(catalog: Catalog) -> set[str]:
    return {catalog.image_index, catalog.fallback_index, index_name(catalog, "dress")}


def test_a_new_install_builds_its_graphs_with_the_settings(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=create_database(), hnsw_m=8, hnsw_ef_construction=32)
    database = Database(settings)
    try:
        migrate.upgrade(database)
        catalog = Catalog.from_settings(settings)
        _seed(database, catalog)
        graphs = _graphs(database, catalog)
        assert {name: graphs[name] for name in _ours(catalog)} == dict.fromkeys(_ours(catalog), (8, 32))
        report = hnsw_graphs.sync(database, catalog)
        assert report.rebuilt == {} and sorted(report.kept) == sorted(_ours(catalog))
    finally:
        database.dispose()


def test_changed_parameters_rebuild_our_graphs_and_nothing_else(migrated_database: Database) -> None:
    default = Catalog.from_settings(migrated_database.settings)
    vectors = _seed(migrated_database, default)
    before = _graphs(migrated_database, default)
    assert {name: before[name] for name in _ours(default)} == dict.fromkeys(_ours(default), (16, 64))
    with migrated_database.engine.connect() as conn:
        assert hnsw_graphs.stale_graphs(conn, default) == []

    catalog = dataclasses.replace(default, hnsw_m=12, hnsw_ef_construction=48)
    with migrated_database.engine.connect() as conn:
        assert set(hnsw_graphs.stale_graphs(conn, catalog)) == _ours(catalog)
    report = hnsw_graphs.sync(migrated_database, catalog)
    assert set(report.rebuilt) == _ours(catalog) and not report.deferred and not report.skipped
    after = _graphs(migrated_database, catalog)
    assert {name: after[name] for name in _ours(catalog)} == dict.fromkeys(_ours(catalog), (12, 48))
    assert after[SHOP_INDEX] == (4, 8)  # the shop's own index, untouched
    assert set(after) == set(before)  # nothing added, nothing lost (no leftover copies)
    with migrated_database.engine.connect() as conn:
        assert all(index.valid for index in describe_hnsw_indexes(conn, catalog))
    assert _nearest(migrated_database, vectors[5]) == "S5"  # the rebuilt graph answers
    again = hnsw_graphs.sync(migrated_database, catalog)
    assert again.rebuilt == {} and set(again.kept) == _ours(catalog)
    assert "3 rebuilt" in report.render()


def test_no_rebuild_while_a_bulk_load_holds_the_indexes(migrated_database: Database) -> None:
    default = Catalog.from_settings(migrated_database.settings)
    _seed(migrated_database, default)
    catalog = dataclasses.replace(default, hnsw_m=8, hnsw_ef_construction=32)
    lock = {"k": DEFER_LOCK_KEY, "t": catalog.qualified}
    with migrated_database.autocommit() as holder:
        holder.execute(text("SELECT pg_advisory_lock(CAST(:k AS integer), hashtext(:t))"), lock)
        report = hnsw_graphs.sync(migrated_database, catalog)
        holder.execute(text("SELECT pg_advisory_unlock(CAST(:k AS integer), hashtext(:t))"), lock)
    assert report.skipped and report.rebuilt == {}
    assert "left to it" in report.render()


def test_the_background_upkeep_rebuilds_them(migrated_database: Database) -> None:
    default = Catalog.from_settings(migrated_database.settings)
    _seed(migrated_database, default)
    settings = migrated_database.settings.model_copy(
        update={
            "hnsw_m": 8,
            "hnsw_ef_construction": 40,
            "category_index_min_rows": POLICY.min_rows,
            "category_index_max_share": POLICY.max_share,
        }
    )
    catalog = Catalog.from_settings(settings)
    Maintenance(settings, migrated_database, catalog).after_round(Tally(embedded=1), every_s=0.0)
    graphs = _graphs(migrated_database, catalog)
    assert {name: graphs[name] for name in _ours(catalog)} == dict.fromkeys(_ours(catalog), (8, 40))


def test_unbuildable_parameters_are_refused_at_start(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValidationError, match="must be at least 2 x LOOKALIKE_HNSW_M"):
        make_settings(hnsw_m=32, hnsw_ef_construction=40)


def test_unset_ef_construction_follows_the_graphs_size() -> None:
    by_size = Catalog("products", "public", 512, 1280)
    assert by_size.hnsw_graph(0) == by_size.hnsw_graph(LARGE_GRAPH_ROWS - 1) == (16, 64)
    assert by_size.hnsw_graph(LARGE_GRAPH_ROWS) == (16, 128)
    assert by_size.hnsw_options(0) == ""  # pgvector's defaults: DDL as migration 0002 always wrote it
    assert by_size.hnsw_options(LARGE_GRAPH_ROWS) == "WITH (m = 16, ef_construction = 128)"
    assert dataclasses.replace(by_size, hnsw_m=48).hnsw_graph(0) == (48, 96)  # never below 2 x m
    # Wider than the size asks is kept (a shrinking catalog is not rebuilt narrower); narrower is not.
    assert by_size.hnsw_graph_is_current((16, 128), 10)
    assert not by_size.hnsw_graph_is_current((16, 64), LARGE_GRAPH_ROWS)
    assert not by_size.hnsw_graph_is_current((8, 128), 10)
    named = dataclasses.replace(by_size, hnsw_ef_construction=64)
    assert named.hnsw_graph(10 * LARGE_GRAPH_ROWS) == (16, 64)  # a value the operator set wins
    assert not named.hnsw_graph_is_current((16, 128), 10)


def test_a_catalog_that_grows_past_the_size_gets_wider_graphs_once(
    migrated_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = Catalog.from_settings(migrated_database.settings)
    assert catalog.hnsw_ef_construction is None  # the default: by size
    vectors = _seed(migrated_database, catalog)
    assert hnsw_graphs.sync(migrated_database, catalog).rebuilt == {}  # 300 rows: pgvector's 64

    # The catalog (300 rows) is now past the threshold; the dress category's graph (200 rows) is not.
    monkeypatch.setattr(catalog_module, "LARGE_GRAPH_ROWS", 250)
    report = hnsw_graphs.sync(migrated_database, catalog)
    assert set(report.rebuilt) == {catalog.image_index, catalog.fallback_index}
    graphs = _graphs(migrated_database, catalog)
    assert graphs[catalog.image_index] == graphs[catalog.fallback_index] == (16, 128)
    assert graphs[index_name(catalog, "dress")] == (16, 64)
    assert graphs[SHOP_INDEX] == (4, 8)
    assert _nearest(migrated_database, vectors[5]) == "S5"

    # Back under it (the catalog shrank): the wider graphs stay, nothing is rebuilt.
    monkeypatch.setattr(catalog_module, "LARGE_GRAPH_ROWS", 10_000)
    assert hnsw_graphs.sync(migrated_database, catalog).rebuilt == {}
    assert _graphs(migrated_database, catalog)[catalog.image_index] == (16, 128)
