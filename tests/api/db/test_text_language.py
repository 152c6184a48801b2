"""Full text in the shop's language, accents folded: "robe ete" finds "Robe d'été", "ao so mi"
finds "Áo sơ mi", and changing the language rebuilds the document column in one upgrade."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.catalog_objects import accent_folding
from api.db.engine import Database
from api.db.product_batches import upsert_products
from api.db.search import Filters, Page, TextQuery, search
from api.settings import Settings

PRODUCTS = [
    ("FR-1", "Robe d'été en lin", "robes"),
    ("FR-2", "Chaussures de randonnée", "chaussures"),
    ("DE-1", "Sommerkleid aus Baumwolle, grün", "kleider"),
    ("DE-2", "Schuhe für Damen", "schuhe"),
    ("VI-1", "Áo sơ mi trắng", "áo"),
    ("VI-2", "Quần jean xanh", "quần"),
]

CASES = {
    "french": [("robe ete", "FR-1"), ("robe été", "FR-1"), ("ROBES ÉTÉ", "FR-1"), ("randonnee", "FR-2")],
    "german": [("fur damen", "DE-2"), ("für Damen", "DE-2"), ("Schuh", "DE-2"), ("grun baumwolle", "DE-1")],
    "simple": [("ao so mi", "VI-1"), ("áo sơ mi", "VI-1"), ("quan jean", "VI-2"), ("trang", "VI-1")],
}


def catalog_in(
    language: str, create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> tuple[Database, Catalog]:
    database = Database(make_settings(database_url=create_database(), text_language=language))
    migrate.upgrade(database)
    catalog = Catalog.from_settings(database.settings)
    with database.engine.begin() as conn:
        upsert_products(
            conn, catalog, [(sku, {"name": name, "category": cat}) for sku, name, cat in PRODUCTS]
        )
    return database, catalog


def document_definition(database: Database) -> str:
    with database.engine.connect() as conn:
        return conn.execute(
            text("SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
                 "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
                 "WHERE d.adrelid = 'products'::regclass AND a.attname = 'search_tsv'")
        ).scalar_one()  # fmt: skip


def top(database: Database, catalog: Catalog, words: str) -> list[str]:
    with database.engine.connect() as conn:
        return [h.sku for h in search(conn, catalog, TextQuery(words), Filters(), Page(top_k=3))]


@pytest.mark.parametrize("language", list(CASES))
def test_queries_with_and_without_accents_find_the_product(
    language: str, create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    database, catalog = catalog_in(language, create_database, make_settings)
    try:
        with database.engine.connect() as conn:
            assert accent_folding(conn, catalog) in ("unaccent", "translate")
        for words, sku in CASES[language]:
            assert top(database, catalog, words)[:1] == [sku], words
    finally:
        database.dispose()


def test_changing_the_language_rebuilds_the_document_column_in_one_upgrade(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    database, _ = catalog_in("english", create_database, make_settings)
    try:
        assert "'english'::regconfig" in document_definition(database)
        french = Database(make_settings(database_url=database.settings.database_url, text_language="french"))
        migrate.upgrade(french)
        french_catalog = Catalog.from_settings(french.settings)
        assert top(french, french_catalog, "robes ete")[:1] == ["FR-1"]
        definition = document_definition(french)
        assert "'french'::regconfig" in definition and "english" not in definition
        french.dispose()
    finally:
        database.dispose()
