"""SQL functions for analysts: similarity search straight from psql (documented in docs/sql.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

The functions use the HNSW index (ORDER BY distance to a bound value, LIMIT k) with pgvector's
strict-order iterative scan, so a large k still returns k rows in true distance order.
"""

from __future__ import annotations

from alembic import op

from api.db.migrate import migration_catalog

revision = "0003"
down_revision = "0002"

RESULT_COLUMNS = """
    id bigint, sku text, name text, category text, price numeric, currency text,
    image_url text, similarity double precision
"""


def upgrade() -> None:
    catalog = migration_catalog()
    if catalog.attached:
        return  # written for the mapping by api.db.catalog_objects, which also keeps them current
    table, schema = catalog.qualified, f'"{catalog.schema}"'
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {schema}.products_near(query vector, k integer DEFAULT 10)
        RETURNS TABLE ({RESULT_COLUMNS})
        LANGUAGE sql STABLE
        SET hnsw.iterative_scan = 'strict_order'
        AS $$
            SELECT p.id::bigint, p.sku::text, p.name::text, p.category::text, p.price::numeric,
                   p.currency::text, p.image_url::text,
                   1 - (p.image_embedding <=> query) AS similarity
            FROM {table} p
            WHERE p.image_embedding IS NOT NULL
            ORDER BY p.image_embedding <=> query
            LIMIT k
        $$
        """
    )
    op.execute(
        f"""
        COMMENT ON FUNCTION {schema}.products_near(vector, integer) IS
        'The k products whose CLIP image embedding is nearest (cosine) to a query vector, with similarity = 1 - cosine distance.'
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {schema}.similar_products(product_id bigint, k integer DEFAULT 10)
        RETURNS TABLE ({RESULT_COLUMNS})
        LANGUAGE plpgsql STABLE
        AS $$
        #variable_conflict use_column
        DECLARE
            query vector;
        BEGIN
            SELECT p.image_embedding INTO query FROM {table} p WHERE p.id = similar_products.product_id;
            IF query IS NULL THEN
                RETURN;
            END IF;
            RETURN QUERY
                SELECT n.* FROM {schema}.products_near(query, k + 1) n
                WHERE n.id <> similar_products.product_id
                LIMIT k;
        END
        $$
        """
    )
    op.execute(
        f"""
        COMMENT ON FUNCTION {schema}.similar_products(bigint, integer) IS
        'The k products that look most like the given product (by id), nearest first; the product itself is excluded.'
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {schema}.similar_products_by_sku(product_sku text, k integer DEFAULT 10)
        RETURNS TABLE ({RESULT_COLUMNS})
        LANGUAGE sql STABLE
        AS $$
            SELECT s.* FROM {table} p, {schema}.similar_products(p.id::bigint, k) s
            WHERE p.sku = product_sku
        $$
        """
    )


def downgrade() -> None:
    catalog = migration_catalog()
    # Whatever key type the functions were last written for (api.db.catalog_objects).
    op.execute(
        f"""
        DO $$ DECLARE f regprocedure; BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = '{catalog.schema}'
                       AND p.proname IN ('similar_products_by_sku', 'similar_products', 'products_near')
            LOOP EXECUTE 'DROP FUNCTION IF EXISTS ' || f || ' CASCADE'; END LOOP;
        END $$
        """
    )
