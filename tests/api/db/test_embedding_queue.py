"""The claim SQL on its own (no encoders): concurrent claims are disjoint, a dead claimer's rows
come back at once, failed rows wait for a source change or a retry, and finished rows are done."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from api.db.catalog import Catalog
from api.db.embedding_queue import (
    Embedded,
    WantedModels,
    claim_batch,
    mark_failed,
    pending_count,
    reset_sources,
    write_embedded,
)
from api.db.engine import Database
from api.db.product_batches import upsert_products
from api.db.products import Embeddings

MODELS = WantedModels(clip="clip-a", fallback="mobilenet")


def seed(database: Database, n: int) -> Catalog:
    catalog = Catalog.from_settings(database.settings)
    with database.engine.begin() as conn:
        written = upsert_products(
            conn,
            catalog,
            [(f"sku-{i:03d}", {"name": f"p{i}", "image_url": f"img/{i}.jpg"}) for i in range(n)],
        )
    assert written == n
    return catalog


def test_concurrent_claims_are_disjoint_and_a_dead_claimer_releases_its_rows(
    migrated_database: Database,
) -> None:
    catalog = seed(migrated_database, 10)
    engine = migrated_database.engine
    with engine.connect() as a, engine.connect() as b:
        a.begin()
        b.begin()
        first = [r.id for r in claim_batch(a, catalog, MODELS, 4)]
        second = [r.id for r in claim_batch(b, catalog, MODELS, 4)]
        assert len(first) == len(second) == 4 and not set(first) & set(second)
        a.invalidate()  # the connection dies mid-batch, as with a SIGKILLed worker
        with engine.connect() as c, c.begin():
            third = [r.id for r in claim_batch(c, catalog, MODELS, 10)]
        assert sorted(third) == sorted(set(range(1, 11)) - set(second))
        b.rollback()
    with engine.connect() as conn:
        assert pending_count(conn, catalog, MODELS) == 10


def test_finished_failed_and_retried_rows(migrated_database: Database) -> None:
    catalog = seed(migrated_database, 3)
    engine = migrated_database.engine
    with engine.begin() as conn:
        rows = claim_batch(conn, catalog, MODELS, 3)
        write_embedded(
            conn,
            catalog,
            [
                Embedded(
                    rows[0].id,
                    rows[0].image_url,
                    Embeddings(
                        "sha0", np.ones(512, np.float32), "clip-a", np.ones(1280, np.float32), "mobilenet"
                    ),
                )
            ],
        )
        mark_failed(conn, catalog, [(rows[1].id, rows[1].image_url, "url_not_found: 404", None)])
    with engine.connect() as conn:
        assert pending_count(conn, catalog, MODELS) == 1  # only the untouched row
        # Another configured model makes the embedded row stale again; the failed row still waits.
        assert pending_count(conn, catalog, WantedModels(clip="clip-b", fallback="mobilenet")) == 2
        # A model that is down is not asked for: no busy loop on rows only it could fill.
        assert pending_count(conn, catalog, WantedModels(clip=None, fallback="mobilenet")) == 1
    with engine.begin() as conn:
        assert reset_sources(conn, catalog, failed_only=True) == 1
        assert pending_count(conn, catalog, MODELS) == 2
        conn.execute(text("UPDATE products SET image_url = 'img/new.jpg' WHERE id = :id"), {"id": rows[0].id})
        assert pending_count(conn, catalog, MODELS) == 3  # a changed source is work again


def test_a_missing_vector_from_a_down_model_keeps_the_old_one_for_the_same_image(
    migrated_database: Database,
) -> None:
    catalog = seed(migrated_database, 1)
    with migrated_database.engine.begin() as conn:
        (row,) = claim_batch(conn, catalog, MODELS, 1)
        full = Embedded(
            row.id,
            row.image_url,
            Embeddings("sha", np.ones(512, np.float32), "clip-a", np.ones(1280, np.float32), "mobilenet"),
        )
        write_embedded(conn, catalog, [full])

        def without_clip(sha: str) -> list[Embedded]:
            fallback_only = Embeddings(sha, None, None, np.ones(1280, np.float32), "mobilenet")
            return [Embedded(row.id, row.image_url, fallback_only)]

        write_embedded(conn, catalog, without_clip("sha"))
        kept = conn.execute(text("SELECT image_model FROM products")).scalar()
        write_embedded(conn, catalog, without_clip("new"))
        dropped = conn.execute(text("SELECT image_model FROM products")).scalar()
    assert (kept, dropped) == ("clip-a", None)


def test_new_rows_are_claimed_through_the_queue_index_then_stale_rows(migrated_database: Database) -> None:
    catalog = seed(migrated_database, 300)
    engine = migrated_database.engine
    vector = np.zeros(catalog.clip_dim, dtype=np.float32)
    vector[0] = 1.0
    with engine.begin() as conn:  # rows 1-200 done, 201-300 new; then row 5 goes stale (model switch)
        done = [Embedded(i, f"img/{i - 1}.jpg", Embeddings("sha", vector, "clip-a")) for i in range(1, 201)]
        write_embedded(conn, catalog, done)
        conn.execute(text(f"UPDATE {catalog.qualified} SET image_model = 'clip-old' WHERE id = 5"))
        conn.execute(text(f"ANALYZE {catalog.qualified}"))
    single = WantedModels(clip="clip-a", fallback=None)
    with engine.connect() as a, a.begin(), engine.connect() as b, b.begin():
        a.execute(text("SET LOCAL enable_seqscan = off"))  # a 300-row table: make the choice visible
        plan = "\n".join(
            a.execute(
                text(
                    f"EXPLAIN SELECT id FROM {catalog.qualified} "
                    f"WHERE {catalog.new_or_changed_sql} ORDER BY id LIMIT 8"
                )
            ).scalars()
        )
        assert catalog.embed_queue_index in plan
        first = claim_batch(a, catalog, single, 60)
        rest = claim_batch(b, catalog, single, 60)  # a second worker
    # New rows first, in id order; the stale one only once they ran short; nothing twice.
    assert [r.id for r in first] == list(range(201, 261))
    assert [r.id for r in rest] == [*range(261, 301), 5]
    assert [r.stale for r in rest] == [False] * 40 + [True]


def test_the_stale_walk_resumes_after_the_last_stale_row_claimed(migrated_database: Database) -> None:
    catalog = seed(migrated_database, 50)
    vector = np.zeros(catalog.clip_dim, dtype=np.float32)
    vector[0] = 1.0
    with migrated_database.engine.begin() as conn:  # all embedded by clip-a, then a switch to clip-b
        write_embedded(
            conn,
            catalog,
            [Embedded(i, f"img/{i - 1}.jpg", Embeddings("sha", vector, "clip-a")) for i in range(1, 51)],
        )
    switched = WantedModels(clip="clip-b", fallback=None)
    engine = migrated_database.engine
    with engine.connect() as a, a.begin(), engine.connect() as b, b.begin():
        first = claim_batch(a, catalog, switched, 10)
        assert [r.id for r in first] == list(range(1, 11)) and all(r.stale for r in first)
        assert [r.id for r in claim_batch(b, catalog, switched, 10, stale_after=45)] == list(range(46, 51))
        # Rows below the walk that still need work wait for the next round (which starts at 0).
        assert claim_batch(b, catalog, switched, 10, stale_after=50) == []


def test_the_queue_index_follows_the_mapped_image_column(migrated_database: Database) -> None:
    """The partial index is rebuilt from the catalog's own predicate, so the two cannot drift."""
    catalog = Catalog.from_settings(migrated_database.settings)
    with migrated_database.engine.connect() as conn:
        definition = conn.execute(
            text("SELECT pg_get_indexdef(to_regclass(:i))"),
            {"i": f'"{catalog.schema}"."{catalog.embed_queue_index}"'},
        ).scalar_one()
    assert "WHERE ((image_url IS NOT NULL) AND (embed_source IS DISTINCT FROM image_url))" in definition
