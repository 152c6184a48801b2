"""``LOOKALIKE_VECTOR_STORAGE``: a populated catalog converted vector -> halfvec -> vector in place.

Each step is what an operator does: change the setting, run ``lookalike db upgrade``. The stored
vectors survive (rounded to half precision), every CLIP index comes back with the opclass of the
new type (the category's partial index keeps its predicate), and every statement that compares
with the column still reaches its index: the search family, the analyst SQL functions, the
duplicate finder, stored-vector reads, and the service's own writes and searches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.category_indexes import CategoryIndexPolicy, sync
from api.db.clip_column import clip_column_storage
from api.db.duplicates import neighbours_within
from api.db.engine import Database
from api.db.search import Filters, Page, VectorColumn, VectorQuery, explain, search, stored_vector
from api.services.ingest.worker import EmbeddingWorker
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, b64, running_api, seed_catalog
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text

pytestmark = pytest.mark.slow  # converts a populated catalog both ways: not in `make test-fast`

ROWS = 4_000
MODEL = "test-model"
HALF_PRECISION = 2e-3
"""float16 keeps ~3 significant digits: a cosine moves by well under this."""


class Storage:
    """One database, opened with whichever storage setting the step under test wants."""

    def __init__(self, url: str, make_settings: Callable[..., Settings]) -> None:
        self.url = url
        self.make_settings = make_settings
        self.databases: list[Database] = []

    def upgrade(self, storage: str) -> tuple[Database, Catalog]:
        database = Database(self.make_settings(database_url=self.url, vector_storage=storage))
        self.databases.append(database)
        migrate.upgrade(database)
        return database, Catalog.from_settings(database.settings)

    def close(self) -> None:
        for database in self.databases:
            database.dispose()


@pytest.fixture(scope="module")
def catalog_db(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> Iterator[tuple[Storage, np.ndarray]]:
    """4,000 products with embedding-like CLIP vectors; "dress" (1,000 rows) has its own index."""
    storage = Storage(create_database(), make_settings)
    database, catalog = storage.upgrade("vector")
    vectors = clustered_unit_vectors(np.random.default_rng(17), ROWS)
    copy_products(
        database,
        "sku, name, category, price, image_embedding, image_model",
        (
            (
                f"S{i}",
                f"item {i}",
                "dress" if i % 4 == 0 else "other",
                i % 100,
                vector_text(v),
                MODEL,
            )
            for i, v in enumerate(vectors)
        ),
    )
    sync(database, catalog, CategoryIndexPolicy(500, 0.5, 4))
    yield storage, vectors
    storage.close()


def _queries(vectors: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    out = []
    for i in rng.integers(0, len(vectors), 6):
        q = vectors[i] + rng.normal(scale=0.01, size=vectors.shape[1]).astype(np.float32)
        out.append((q / np.linalg.norm(q)).astype(np.float32))
    return out


def _top_hits(
    database: Database, catalog: Catalog, vectors: np.ndarray, filters: Filters
) -> list[list[tuple[str, float]]]:
    results = []
    with database.engine.begin() as conn:
        for q in _queries(vectors):
            hits = search(conn, catalog, VectorQuery(VectorColumn.CLIP, q, MODEL), filters, Page(top_k=10))
            results.append([(hit.sku, hit.score) for hit in hits])
    return results


def _column_and_indexes(database: Database) -> tuple[str, dict[str, str]]:
    with database.engine.connect() as conn:
        column_type = conn.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'products'::regclass AND attname = 'image_embedding'"
            )
        ).scalar_one()
        indexes = dict(
            conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'products' AND indexdef LIKE '%image_embedding%'"
                )
            ).all()
        )
    return column_type, indexes


def _same_hits(before: list[list[tuple[str, float]]], after: list[list[tuple[str, float]]]) -> None:
    """Rounded vectors may swap near-ties; the hits stay the same ones at the same scores."""
    for old, new in zip(before, after, strict=True):
        assert old[0][0] == new[0][0]
        assert len(set(dict(old)) & set(dict(new))) >= 9, (old, new)
        for sku, score in new:
            if sku in dict(old):
                assert abs(score - dict(old)[sku]) < HALF_PRECISION


def _check_storage(database: Database, catalog: Catalog, vectors: np.ndarray, storage: str) -> None:
    column_type, indexes = _column_and_indexes(database)
    assert column_type == f"{storage}(512)"
    with database.engine.connect() as conn:
        assert clip_column_storage(conn, catalog) == storage
    # main index and the category's partial one, both with the new type's opclass
    assert len(indexes) == 2, indexes
    assert all(f"hnsw (image_embedding {storage}_cosine_ops)" in ddl for ddl in indexes.values()), indexes
    assert sum("WHERE (category = 'dress'::text)" in ddl for ddl in indexes.values()) == 1, indexes
    q = _queries(vectors)[0]
    with database.engine.begin() as conn:
        assert conn.execute(text("SELECT count(image_embedding) FROM products")).scalar_one() == ROWS
        plan = explain(conn, catalog, VectorQuery(VectorColumn.CLIP, q, MODEL), Filters(), Page(top_k=10))
        assert "Index Scan using products_image_embedding_hnsw" in plan, plan
        # the category's partial index, reached through the same cast
        category_plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT sku FROM products WHERE category = 'dress' ORDER BY image_embedding <=> "
                    f"{catalog.clip_cast_sql('CAST(:q AS vector)')} LIMIT 5"
                ),
                {"q": vector_text(q)},
            ).scalars()
        )
        assert "_cat_" in category_plan and "Index Scan using" in category_plan, category_plan
        # the analyst functions take a vector whatever the storage, and use the index
        near = conn.execute(
            text("SELECT sku, similarity FROM products_near(CAST(:q AS vector), 5)"), {"q": vector_text(q)}
        ).all()
        similar = conn.execute(text("SELECT sku FROM similar_products_by_sku('S8', 3)")).scalars().all()
        function_plan = "\n".join(
            conn.execute(
                text(
                    f"EXPLAIN SELECT sku FROM products ORDER BY image_embedding <=> "
                    f"{catalog.clip_cast_sql('CAST(:q AS vector)')} LIMIT 5"
                ),
                {"q": vector_text(q)},
            ).scalars()
        )
        stored = stored_vector(conn, catalog, "S8")
    with database.engine.connect() as conn:  # the finder opens its own transaction
        pairs = neighbours_within(
            conn, catalog, "clip", MODEL, first=1, last=50, k=3, max_distance=0.3, ef_search=40
        )
    assert len(near) == 5 and near[0][1] > 0.9
    assert len(similar) == 3 and "S8" not in similar
    assert "Index Scan using products_image_embedding_hnsw" in function_plan, function_plan
    assert stored is not None and stored[0] is not None
    np.testing.assert_allclose(np.asarray(stored[0], dtype=np.float32), vectors[8], atol=1e-3)
    assert pairs and all(p.a != p.b and p.distance <= 0.3 for p in pairs)


def test_vector_to_halfvec_and_back_keeps_vectors_indexes_and_hits(
    catalog_db: tuple[Storage, np.ndarray],
) -> None:
    storage, vectors = catalog_db
    database, catalog = storage.upgrade("vector")
    _check_storage(database, catalog, vectors, "vector")
    plain = _top_hits(database, catalog, vectors, Filters())
    dress = _top_hits(database, catalog, vectors, Filters(categories=("dress",)))

    database, catalog = storage.upgrade("halfvec")
    _check_storage(database, catalog, vectors, "halfvec")
    _same_hits(plain, _top_hits(database, catalog, vectors, Filters()))
    _same_hits(dress, _top_hits(database, catalog, vectors, Filters(categories=("dress",))))
    storage.upgrade("halfvec")  # a second upgrade with the same setting changes nothing
    assert _column_and_indexes(database)[0] == "halfvec(512)"

    database, catalog = storage.upgrade("vector")
    _check_storage(database, catalog, vectors, "vector")
    _same_hits(plain, _top_hits(database, catalog, vectors, Filters()))


def test_downgrade_past_the_storage_revision_returns_to_vector(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    database = Database(make_settings(database_url=create_database(), vector_storage="halfvec"))
    try:
        migrate.upgrade(database)
        assert _column_and_indexes(database)[0] == "halfvec(512)"
        migrate.downgrade(database, "0007")
        column_type, indexes = _column_and_indexes(database)
        assert column_type == "vector(512)"
        assert all("vector_cosine_ops" in ddl for ddl in indexes.values())
        with database.engine.connect() as conn:  # the analyst function compares vector with vector again
            conn.execute(
                text("SELECT * FROM products_near(CAST(:q AS vector), 1)"), {"q": vector_text(np.ones(512))}
            )
    finally:
        database.dispose()


def test_the_service_embeds_searches_and_writes_on_halfvec(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    media_root: Path,
    clothing_dataset: Path,
) -> None:
    """Real encoders: the worker's writes, uploads, image search and "more like this" on halfvec."""
    settings = make_settings(
        database_url=create_database(),
        vector_storage="halfvec",
        admin_token=ADMIN_TOKEN,
        image_root=media_root,
        allow_private_urls=True,
        max_inflight=64,
    )
    with running_api(settings) as (client, state):
        products = seed_catalog(state, clothing_dataset)  # uploads: embedded and written inline
        with state.database.engine.begin() as conn:  # three rows back to the queue: the worker's writes
            conn.execute(
                text(
                    "UPDATE products SET image_embedding = NULL, image_model = NULL, embed_source = NULL "
                    "WHERE sku IN (SELECT sku FROM products ORDER BY sku LIMIT 3)"
                )
            )
        worker = EmbeddingWorker(settings, state.database, state.hub, lanes=1)
        try:
            worker.drain()
        finally:
            worker.close()
        deadline = time.monotonic() + 60  # the app's own background worker may hold some of them
        while True:
            with state.database.engine.connect() as conn:
                current = conn.execute(
                    text(
                        "SELECT count(*) FROM products WHERE image_embedding IS NOT NULL AND image_model IS NOT NULL"
                    )
                ).scalar_one()
                storage = clip_column_storage(conn, Catalog.from_settings(settings))
            if current == len(products) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (current, storage) == (len(products), "halfvec")
        sku, photo = next(iter(products.items()))
        found = client.post("/api/v1/search", json={"image": b64(photo.read_bytes()), "top_k": 5})
        assert found.status_code == 200, found.text
        assert found.json()["mode"] == "clip"
        assert found.json()["results"][0]["sku"] == sku
        similar = client.get(f"/api/v1/products/{sku}/similar", params={"top_k": 3})
        assert similar.status_code == 200, similar.text
        assert similar.json()["results"] and sku not in [hit["sku"] for hit in similar.json()["results"]]
