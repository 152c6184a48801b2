"""Start-up prewarming: reads the HNSW index files ahead and walks the graphs with stored vectors."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.prewarm import prewarm, sample_percent, warm_searches
from api.db.vector_indexes import deferred
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text


def _seed(database: Database, count: int = 2_000) -> Catalog:
    vectors = clustered_unit_vectors(np.random.default_rng(5), count)
    copy_products(
        database,
        "sku, name, image_embedding",
        ((f"P{i}", f"p {i}", vector_text(v)) for i, v in enumerate(vectors)),
    )
    return Catalog.from_settings(database.settings)


def test_prewarm_reads_the_index_files_and_searches_with_stored_vectors(migrated_database: Database) -> None:
    catalog = _seed(migrated_database)
    report = prewarm(migrated_database, catalog, searches=16)
    assert report.files_read_ahead >= 2 and report.bytes_read_ahead > 0  # the test server's files are ours
    assert report.searches == 16  # CLIP only: the catalog has no MobileNetV2 vectors to search with
    assert "prewarmed" in report.render()


def test_the_prewarm_searches_walk_the_hnsw_index(migrated_database: Database) -> None:
    catalog = _seed(migrated_database)
    statement = warm_searches(catalog, "image_embedding")
    with migrated_database.read() as conn:
        params = {"percent": sample_percent(conn, catalog, 8), "count": 8}
        plan = "\n".join(conn.execute(text(f"EXPLAIN {statement.text}"), params).scalars())
    assert f"Index Scan using {catalog.image_index}" in plan


def test_no_searches_while_a_bulk_load_has_the_indexes_aside(migrated_database: Database) -> None:
    catalog = _seed(migrated_database, 300)
    with deferred(migrated_database, catalog):
        report = prewarm(migrated_database, catalog, searches=8)
    assert report.searches == 0  # each would have been a full scan
