"""The schema as a shop's DBA would check it: read back from PostgreSQL's own catalog."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text

from api.db import migrate
from api.db.engine import Database
from api.settings import Settings


def column_types(conn: Connection, table: str, schema: str = "public") -> dict[str, str]:
    rows = conn.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(:rel) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"rel": f'"{schema}"."{table}"'},
    )
    return dict(rows.all())


def index_definitions(conn: Connection, table: str, schema: str = "public") -> dict[str, str]:
    rows = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s AND tablename = :t"),
        {"s": schema, "t": table},
    )
    return dict(rows.all())


def function_names(conn: Connection, schema: str = "public") -> set[str]:
    rows = conn.execute(
        text(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s"
        ),
        {"s": schema},
    )
    return {name for (name,) in rows}


def test_upgrade_creates_vector_columns_and_hnsw_cosine_indexes(migrated_database: Database) -> None:
    with migrated_database.connect() as conn:
        types = column_types(conn, "products")
        indexes = index_definitions(conn, "products")
        generated = conn.execute(
            text(
                "SELECT attgenerated FROM pg_attribute "
                "WHERE attrelid = 'products'::regclass AND attname = 'search_tsv'"
            )
        ).scalar()

    assert types["image_embedding"] == "vector(512)"
    assert types["fallback_embedding"] == "vector(1280)"
    assert types["attributes"] == "jsonb"
    assert types["price"] == "numeric(12,2)"
    assert types["search_tsv"] == "tsvector"
    assert generated == "s"  # a stored generated column: always in step with name/description/category
    for column in (
        "sku",
        "name",
        "description",
        "category",
        "currency",
        "image_url",
        "created_at",
        "updated_at",
        "image_model",
        "fallback_model",
        "image_sha256",
        "embedded_at",
        "embed_error",
    ):
        assert column in types

    assert "USING hnsw (image_embedding vector_cosine_ops)" in indexes["products_image_embedding_hnsw"]
    assert "USING hnsw (fallback_embedding vector_cosine_ops)" in indexes["products_fallback_embedding_hnsw"]
    assert "USING btree (category)" in indexes["products_category_idx"]
    assert "USING btree (price)" in indexes["products_price_idx"]
    assert "USING gin (attributes jsonb_path_ops)" in indexes["products_attributes_idx"]
    assert "USING gin (search_tsv)" in indexes["products_search_tsv_idx"]
    assert "UNIQUE INDEX products_sku_key" in indexes["products_sku_key"]
    assert migrate.current_revision(migrated_database) == migrate.head_revision()


def test_vector_width_follows_the_configured_clip_model(
    create_database,
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    database = Database(make_settings(database_url=create_database(), clip_model="ViT-L-14__openai"))
    try:
        migrate.upgrade(database)
        with database.connect() as conn:
            assert column_types(conn, "products")["image_embedding"] == "vector(768)"
    finally:
        database.dispose()


def test_upgrade_downgrade_upgrade_keeps_catalog_rows(migrated_database: Database) -> None:
    with migrated_database.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO products (sku, name, category, price, attributes) "
                "SELECT 'sku-' || g, 'Product ' || g, 'dress', g, jsonb_build_object('n', g) "
                "FROM generate_series(1, 50) g"
            )
        )
        conn.commit()
        before = conn.execute(
            text("SELECT id, sku, name, category, price, attributes FROM products ORDER BY id")
        ).all()

    migrate.downgrade(migrated_database, "base")
    assert migrate.current_revision(migrated_database) is None
    with migrated_database.connect() as conn:
        types = column_types(conn, "products")
        assert (
            "image_embedding" not in types and "fallback_embedding" not in types and "search_tsv" not in types
        )
        assert not {"similar_products", "similar_products_by_sku", "products_near"} & function_names(conn)
        assert conn.execute(text("SELECT to_regclass('lookalike_catalog_state')")).scalar() is None
        assert not any("hnsw" in d for d in index_definitions(conn, "products").values())
        after_down = conn.execute(
            text("SELECT id, sku, name, category, price, attributes FROM products ORDER BY id")
        ).all()
    assert after_down == before

    migrate.upgrade(migrated_database)
    with migrated_database.connect() as conn:
        assert column_types(conn, "products")["image_embedding"] == "vector(512)"
        assert {"similar_products", "similar_products_by_sku", "products_near"} <= function_names(conn)
        after_up = conn.execute(
            text("SELECT id, sku, name, category, price, attributes FROM products ORDER BY id")
        ).all()
    assert after_up == before
    assert migrate.current_revision(migrated_database) == migrate.head_revision()


def test_upgrade_is_idempotent(migrated_database: Database) -> None:
    migrate.upgrade(migrated_database)
    assert migrate.current_revision(migrated_database) == migrate.head_revision()


SHOP_TABLE = """
CREATE SCHEMA shop;
CREATE TABLE shop.catalog_items (
    id serial PRIMARY KEY,
    sku varchar(40) NOT NULL UNIQUE,
    name varchar(200) NOT NULL,
    price numeric(10, 2) NOT NULL,
    stock integer NOT NULL DEFAULT 0,
    legacy_code text,
    supplier_ref uuid DEFAULT gen_random_uuid(),
    created_at timestamp NOT NULL DEFAULT now()
);
INSERT INTO shop.catalog_items (sku, name, price, stock, legacy_code)
SELECT 'SHOP-' || g, 'Item ' || g, (g % 90) + 0.99, g % 7, CASE WHEN g % 3 = 0 THEN NULL ELSE 'L' || g END
FROM generate_series(1, 1000) g;
"""


def test_attach_to_existing_shop_table_keeps_every_row_and_column(
    create_database,
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    settings: Settings = make_settings(
        database_url=create_database(), products_table="catalog_items", db_schema="shop"
    )
    database = Database(settings)
    try:
        with database.connect() as conn:
            conn.execute(text(SHOP_TABLE))
            conn.commit()
            original_types = column_types(conn, "catalog_items", "shop")
            snapshot_sql = text(
                "SELECT id, sku, name, price, stock, legacy_code, supplier_ref, created_at "
                "FROM shop.catalog_items ORDER BY id"
            )
            before = conn.execute(snapshot_sql).all()

        migrate.upgrade(database)

        with database.connect() as conn:
            types = column_types(conn, "catalog_items", "shop")
            after = conn.execute(snapshot_sql).all()
            indexes = index_definitions(conn, "catalog_items", "shop")
            rows_with_defaults = conn.execute(
                text(
                    "SELECT count(*) FROM shop.catalog_items WHERE attributes = '{}'::jsonb AND currency = 'USD'"
                )
            ).scalar()
            functions = function_names(conn, "shop")
    finally:
        database.dispose()

    assert len(before) == 1000 and after == before
    for column, type_ in original_types.items():  # the shop's own columns keep their types
        assert types[column] == type_
    assert types["image_embedding"] == "vector(512)" and types["fallback_embedding"] == "vector(1280)"
    assert types["description"] == "text" and types["category"] == "text"
    assert rows_with_defaults == 1000
    assert "USING hnsw (image_embedding vector_cosine_ops)" in indexes["catalog_items_image_embedding_hnsw"]
    assert {"similar_products", "similar_products_by_sku", "products_near"} <= functions


def test_attach_to_table_without_integer_id_adds_one(create_database, make_settings) -> None:  # type: ignore[no-untyped-def]
    database = Database(make_settings(database_url=create_database(), products_table="items"))
    try:
        with database.connect() as conn:
            conn.execute(
                text(
                    "CREATE TABLE items (code text PRIMARY KEY, title text); "
                    "INSERT INTO items SELECT 'C' || g, 'T' || g FROM generate_series(1, 200) g"
                )
            )
            conn.commit()
        migrate.upgrade(database)
        with database.connect() as conn:
            ids = conn.execute(
                text("SELECT count(DISTINCT id), count(*) FROM items WHERE id IS NOT NULL")
            ).one()
            pk = conn.execute(
                text(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'items'::regclass AND i.indisprimary"
                )
            ).scalar()
    finally:
        database.dispose()
    assert tuple(ids) == (200, 200)
    assert pk == "code"  # the shop's primary key is untouched


@pytest.mark.parametrize("name", ["products; DROP TABLE x", "1abc", "a-b", ""])
def test_table_name_must_be_a_plain_identifier(make_settings, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="plain SQL identifier"):
        make_settings(products_table=name)


def test_every_catalog_write_bumps_the_catalog_version(migrated_database: Database) -> None:
    """Writes that bypass the API (a shop's own admin) must invalidate cached results too."""
    version_sql = text("SELECT version FROM lookalike_catalog_state WHERE table_name = 'products'")
    with migrated_database.connect() as conn:
        versions = [conn.execute(version_sql).scalar()]
        for statement in (
            "INSERT INTO products (sku, name) VALUES ('a', 'A'), ('b', 'B')",
            "UPDATE products SET price = 10 WHERE sku = 'a'",
            "DELETE FROM products WHERE sku = 'b'",
        ):
            conn.execute(text(statement))
            conn.commit()
            versions.append(conn.execute(version_sql).scalar())
    assert versions == sorted(set(versions)) and len(versions) == 4
