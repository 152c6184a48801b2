"""The CLIP vector column's width, and changing it when the configured CLIP model changes.

Migration 0002 creates ``image_embedding`` with the configured model's width once (``ADD COLUMN IF
NOT EXISTS``), so a later ``lookalike db upgrade`` never undoes a change made here.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from api.db.catalog import Catalog
from api.db.vector_indexes import index_ddl

# Same key as migrations/env.py: a model switch and a migration never run DDL at the same time.
MIGRATION_LOCK_KEY = 0x4C4F4F4B


def clip_column_dim(conn: Connection, catalog: Catalog) -> int | None:
    """The declared width of ``image_embedding`` (pgvector keeps it in atttypmod), or None if absent."""
    value = conn.execute(
        text(
            "SELECT a.atttypmod FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :table AND a.attname = 'image_embedding' "
            "AND NOT a.attisdropped"
        ),
        {"schema": catalog.schema, "table": catalog.table},
    ).scalar()
    return None if value is None or value < 0 else int(value)


def change_clip_dim(conn: Connection, catalog: Catalog, dim: int) -> None:
    """Retype the column to ``vector(dim)`` and rebuild its HNSW index, in the caller's transaction.

    Old vectors cannot be cast to another width, so they become NULL together with their model
    id: the worker re-embeds those rows, and search serves them through the MobileNetV2 and
    full-text fallbacks meanwhile. One transaction: readers see the old column or the new one.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    conn.execute(text(f'DROP INDEX IF EXISTS "{catalog.schema}"."{catalog.image_index}"'))
    conn.execute(
        text(
            f"ALTER TABLE {catalog.qualified} ALTER COLUMN image_embedding TYPE vector({int(dim)}) USING NULL"
        )
    )
    conn.execute(text(f"UPDATE {catalog.qualified} SET image_model = NULL WHERE image_model IS NOT NULL"))
    conn.execute(text(index_ddl(catalog, "image_embedding")))


def index_definition(conn: Connection, catalog: Catalog) -> str | None:
    """The CLIP index's DDL as PostgreSQL reports it (for checks and tests)."""
    return conn.execute(
        text("SELECT indexdef FROM pg_indexes WHERE schemaname = :schema AND indexname = :name"),
        {"schema": catalog.schema, "name": catalog.image_index},
    ).scalar()
