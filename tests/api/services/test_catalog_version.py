"""The remembered catalog version: no query per cached hit, yet no write is missed for long."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, event, text

from api.db.catalog import Catalog
from api.db.engine import Database
from api.services.catalog_version import CatalogVersion

INSERT = "INSERT INTO products (sku, name) VALUES (:sku, 'x')"


def test_reads_are_shared_until_a_commit_or_the_age_limit(migrated_database: Database) -> None:
    versions = CatalogVersion(
        migrated_database, Catalog.from_settings(migrated_database.settings), max_age_s=0.5
    )
    reads = []
    event.listen(
        migrated_database.engine,
        "before_cursor_execute",
        lambda *args: reads.append(1) if "lookalike_catalog_state" in args[2] else None,
    )
    first = versions.current()
    assert [versions.current() for _ in range(50)] == [first] * 50
    assert len(reads) == 1
    with migrated_database.engine.begin() as conn:  # a write through this process's engine
        conn.execute(text(INSERT), {"sku": "a"})
    assert versions.current() > first  # seen by the very next read
    assert len(reads) == 2


def test_a_write_from_another_process_is_seen_within_the_age_limit(migrated_database: Database) -> None:
    versions = CatalogVersion(
        migrated_database, Catalog.from_settings(migrated_database.settings), max_age_s=0.2
    )
    before = versions.current()
    other = create_engine(migrated_database.engine.url)  # its own pool: no events reach ours
    with other.begin() as conn:
        conn.execute(text(INSERT), {"sku": "b"})
    other.dispose()
    time.sleep(0.25)
    assert versions.current() > before


def test_every_instance_on_an_engine_sees_each_commit(migrated_database: Database) -> None:
    catalog = Catalog.from_settings(migrated_database.settings)
    first, second = (CatalogVersion(migrated_database, catalog, max_age_s=60) for _ in range(2))
    before = (first.current(), second.current())
    with migrated_database.engine.begin() as conn:
        conn.execute(text(INSERT), {"sku": "c"})
    assert first.current() > before[0] and second.current() > before[1]
