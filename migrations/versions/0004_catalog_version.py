"""Catalog version: a counter every write to the catalog table bumps, for cache invalidation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A statement-level trigger does the bumping, so writes that bypass Lookalike (the shop's own
admin, a nightly import) invalidate cached search results too, not just writes through the API.
"""

from __future__ import annotations

from alembic import op

from api.db.migrate import migration_catalog

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    catalog = migration_catalog()
    schema = f'"{catalog.schema}"'
    op.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {schema}.lookalike_catalog_state (
            table_name text PRIMARY KEY,
            version bigint NOT NULL DEFAULT 0
        )
        """
    )
    op.execute(
        f"INSERT INTO {schema}.lookalike_catalog_state (table_name) VALUES ('{catalog.table}') "
        "ON CONFLICT DO NOTHING"
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {schema}.lookalike_bump_catalog_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE {schema}.lookalike_catalog_state SET version = version + 1 WHERE table_name = TG_TABLE_NAME;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(f'DROP TRIGGER IF EXISTS "{catalog.index("catalog_version")}" ON {catalog.qualified}')
    op.execute(
        f'CREATE TRIGGER "{catalog.index("catalog_version")}" '
        f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {catalog.qualified} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.lookalike_bump_catalog_version()"
    )


def downgrade() -> None:
    catalog = migration_catalog()
    schema = f'"{catalog.schema}"'
    op.execute(f'DROP TRIGGER IF EXISTS "{catalog.index("catalog_version")}" ON {catalog.qualified}')
    op.execute(f"DELETE FROM {schema}.lookalike_catalog_state WHERE table_name = '{catalog.table}'")
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM {schema}.lookalike_catalog_state) THEN
                DROP TABLE {schema}.lookalike_catalog_state;
                DROP FUNCTION IF EXISTS {schema}.lookalike_bump_catalog_version();
            END IF;
        END $$
        """
    )
