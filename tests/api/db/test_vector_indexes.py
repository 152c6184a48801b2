"""HNSW indexes set aside for a bulk load: gone while it writes, the same ones after, repaired after a crash."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.category_indexes import CategoryIndexPolicy, sync
from api.db.engine import Database
from api.db.vector_indexes import DEFER_LOCK_KEY, deferred, hnsw_indexes
from api.services.ingest.bulk import should_defer
from tests.api.db.seeding import copy_dresses_and_hats
from tests.support import REPO_ROOT, clean_env


def _definitions(database: Database) -> dict[str, str]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'products' AND indexdef LIKE '%hnsw%'"
            )
        ).all()
    return dict(rows)


@pytest.fixture
def catalog_db(migrated_database: Database) -> Database:
    """300 products in two categories, with CLIP vectors, and a partial index for one category."""
    copy_dresses_and_hats(migrated_database, seed=3)
    sync(migrated_database, _catalog(migrated_database), CategoryIndexPolicy(150, 0.9, 4))
    return migrated_database


def _catalog(database: Database) -> Catalog:
    return Catalog.from_settings(database.settings)


def test_indexes_are_away_during_the_load_and_the_same_after(catalog_db: Database) -> None:
    catalog = _catalog(catalog_db)
    before = _definitions(catalog_db)
    assert {catalog.image_index, catalog.fallback_index} < set(before) and len(before) == 3
    with deferred(catalog_db, catalog) as deferral:
        assert _definitions(catalog_db) == {}
        with catalog_db.engine.begin() as conn:  # writes go through, searches still answer (exact scan)
            conn.execute(text("UPDATE products SET image_embedding = NULL WHERE sku = 'S0'"))
            nearest = conn.execute(
                text(
                    "SELECT sku FROM products ORDER BY image_embedding <=> (SELECT image_embedding FROM products WHERE sku = 'S1') LIMIT 1"
                )
            ).scalar()
        assert nearest == "S1"
    assert sorted(deferral.dropped) == sorted(before)
    assert sorted(deferral.rebuilt) == sorted([catalog.image_index, catalog.fallback_index])
    after = _definitions(catalog_db)
    assert after == {k: v for k, v in before.items() if k in deferral.rebuilt}
    # The category index is the category sync's to build, as every ingest and server start runs it.
    sync(catalog_db, catalog, CategoryIndexPolicy(150, 0.9, 4))
    assert _definitions(catalog_db) == before
    with catalog_db.engine.connect() as conn:
        assert all(hnsw_indexes(conn, catalog).values())


def test_indexes_come_back_when_the_load_fails(catalog_db: Database) -> None:
    catalog = _catalog(catalog_db)
    with pytest.raises(RuntimeError, match="encoder fell over"), deferred(catalog_db, catalog):
        raise RuntimeError("encoder fell over")
    assert {catalog.image_index, catalog.fallback_index} <= set(_definitions(catalog_db))


def test_a_killed_load_is_repaired_by_the_next_upgrade_and_a_live_one_is_left_alone(
    catalog_db: Database,
) -> None:
    catalog = _catalog(catalog_db)
    script = (
        "import sys, time\n"
        "from api.db.catalog import Catalog\n"
        "from api.db.engine import Database\n"
        "from api.db.vector_indexes import deferred\n"
        "from api.settings import Settings\n"
        "settings = Settings(database_url=sys.argv[1], _env_file=None)\n"
        "with deferred(Database(settings), Catalog.from_settings(settings)):\n"
        "    print('loading', flush=True)\n"
        "    time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(catalog_db.settings.database_url)],
        cwd=REPO_ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "loading"
        # Live: the other process holds the lock, so a server starting now leaves its indexes alone.
        migrate.upgrade(catalog_db)
        assert _definitions(catalog_db) == {}
    finally:
        process.kill()  # SIGKILL: no finally block runs, as in a crash or an OOM kill
        process.wait()
    deadline = time.monotonic() + 10
    while True:  # PostgreSQL notices the dead connection and releases its lock
        with catalog_db.engine.connect() as conn:
            held = conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :k"),
                {"k": DEFER_LOCK_KEY},
            ).scalar()
        if not held or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    migrate.upgrade(catalog_db)
    with catalog_db.engine.connect() as conn:
        indexes = hnsw_indexes(conn, catalog)
    assert indexes == {catalog.image_index: True, catalog.fallback_index: True}


@pytest.mark.parametrize(
    ("mode", "pending", "catalog_rows", "expected"),
    [
        ("auto", 50_000, 50_000, True),  # a first import
        ("auto", 30_000, 100_000, True),
        ("auto", 10_000, 100_000, False),  # a tenth of the catalog: inserting is cheaper than rebuilding
        ("auto", 3_068, 3_068, False),  # small: the graphs stay small, keep the indexes
        ("never", 50_000, 50_000, False),
        ("always", 1, 100_000, True),
        ("always", 0, 100_000, False),
    ],
)
def test_when_a_load_sets_the_indexes_aside(
    mode: str, pending: int, catalog_rows: int, expected: bool
) -> None:
    assert should_defer(mode, pending, catalog_rows) is expected
