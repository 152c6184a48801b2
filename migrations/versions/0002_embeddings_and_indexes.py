"""Embeddings beside the product rows, their HNSW cosine indexes, filter and full-text indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Everything here is derived data (vectors can be recomputed, the tsvector is generated),
so downgrade drops all of it.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from api.db.catalog import Catalog
from api.db.migrate import migration_catalog
from api.db.vector_indexes import table_rows

revision = "0002"
down_revision = "0001"


def _column_type(catalog: Catalog, column: str) -> str | None:
    return (
        op.get_bind()
        .execute(
            text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_schema = :schema AND table_name = :table AND column_name = :column"
            ),
            {"schema": catalog.schema, "table": catalog.table, "column": column},
        )
        .scalar()
    )


def upgrade() -> None:
    catalog = migration_catalog()
    table = catalog.qualified
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    for column, ddl in {
        "image_embedding": f"vector({catalog.clip_dim})",
        "image_model": "text",
        "fallback_embedding": f"vector({catalog.fallback_dim})",
        "fallback_model": "text",
        "image_sha256": "text",
        "embedded_at": "timestamptz",
        "embed_error": "text",
    }.items():
        op.execute(f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{column}" {ddl}')
    # A shop's table may already hold a million rows: their graphs are built as wide as that asks.
    graph = catalog.hnsw_options(table_rows(op.get_bind(), catalog))
    op.execute(
        f'CREATE INDEX IF NOT EXISTS "{catalog.image_index}" ON {table} '
        f"USING hnsw (image_embedding vector_cosine_ops) {graph}"
    )
    op.execute(
        f'CREATE INDEX IF NOT EXISTS "{catalog.fallback_index}" ON {table} '
        f"USING hnsw (fallback_embedding vector_cosine_ops) {graph}"
    )
    if catalog.attached:
        # Indexes on the shop's own columns are the shop's call (docs/shops.md); the full-text
        # column follows the mapping (api.db.catalog_objects).
        return

    # Weighted so a match in the name outranks one in the description.
    op.execute(
        f"""
        ALTER TABLE {table} ADD COLUMN IF NOT EXISTS search_tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english'::regconfig, coalesce(name::text, '')), 'A') ||
            setweight(to_tsvector('english'::regconfig, coalesce(category::text, '')), 'B') ||
            setweight(to_tsvector('english'::regconfig, coalesce(description::text, '')), 'C')
        ) STORED
        """
    )
    op.execute(f'CREATE INDEX IF NOT EXISTS "{catalog.index("category_idx")}" ON {table} (category)')
    op.execute(f'CREATE INDEX IF NOT EXISTS "{catalog.index("price_idx")}" ON {table} (price)')
    op.execute(
        f'CREATE INDEX IF NOT EXISTS "{catalog.index("search_tsv_idx")}" ON {table} USING gin (search_tsv)'
    )
    if _column_type(catalog, "attributes") == "jsonb":
        # jsonb_path_ops: smaller and faster for the @> containment that attribute filters use.
        op.execute(
            f'CREATE INDEX IF NOT EXISTS "{catalog.index("attributes_idx")}" ON {table} '
            "USING gin (attributes jsonb_path_ops)"
        )


def downgrade() -> None:
    catalog = migration_catalog()
    table = catalog.qualified
    for suffix in ("attributes_idx", "search_tsv_idx", "price_idx", "category_idx"):
        op.execute(f'DROP INDEX IF EXISTS "{catalog.schema}"."{catalog.index(suffix)}"')
    for column in (
        "search_tsv",
        "embed_error",
        "embedded_at",
        "image_sha256",
        "fallback_model",
        "fallback_embedding",
        "image_model",
        "image_embedding",
    ):
        # Dropping the vector columns drops their HNSW indexes with them.
        op.execute(f'ALTER TABLE {table} DROP COLUMN IF EXISTS "{column}"')
