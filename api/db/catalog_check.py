"""Check the catalog mapping against the live table before anything is written.

A mapped field or visibility predicate is SQL the operator wrote; a typo in it would otherwise
surface as an SQL traceback in the first search, or as an ingest that "finishes" with nothing
embedded. Each check runs the operator's SQL the way search will (typed, over sample rows)
inside a transaction that is rolled back, and a failure names the setting and PostgreSQL's reason.
"""

from __future__ import annotations

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from api.db.catalog import Catalog
from api.errors import CatalogConfigError

SAMPLE_ROWS = 200
"""Rows each mapped field is evaluated on: enough to catch a cast or a subquery that fails on data."""

NUMERIC_CATEGORY = "N"
JSON_TYPES = ("json", "jsonb")


def _reason(exc: DBAPIError) -> str:
    return (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0]


def check_catalog(conn: Connection, catalog: Catalog) -> None:
    """Raise :class:`CatalogConfigError` for the first bad setting; never writes."""
    if (
        conn.execute(
            text("SELECT 1 FROM pg_ts_config WHERE cfgname = :c"), {"c": catalog.text_language}
        ).scalar()
        is None
    ):
        known = ", ".join(conn.execute(text("SELECT cfgname FROM pg_ts_config ORDER BY 1")).scalars())
        raise CatalogConfigError(
            f"LOOKALIKE_TEXT_LANGUAGE: this server has no text search configuration "
            f"{catalog.text_language!r} (it has: {known})"
        )
    exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": catalog.qualified}).scalar()
    if exists is None:
        if catalog.attached:
            raise CatalogConfigError(
                f"LOOKALIKE_PRODUCTS_TABLE: table {catalog.qualified} does not exist "
                "(the LOOKALIKE_FIELD_* settings attach to a shop's existing table)"
            )
        return  # Lookalike's own table: the first migration creates it
    _check_key(conn, catalog)
    for field, source in catalog.mapping:
        _check_field(conn, catalog, field, source)
    if catalog.visible_where is not None:
        _check_visible(conn, catalog)


def _check_key(conn: Connection, catalog: Catalog) -> None:
    row = conn.execute(
        text(
            "SELECT a.attnum, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid "
            "AND i.indisunique AND i.indnatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL) "
            "FROM pg_attribute a WHERE a.attrelid = to_regclass(:t) AND a.attname = :k AND NOT a.attisdropped"
        ),
        {"t": catalog.qualified, "k": catalog.key},
    ).first()
    if row is None:
        if not catalog.attached and catalog.key == "id":
            return  # an older own-style table: migration 0001 adds the id
        raise CatalogConfigError(
            f"LOOKALIKE_KEY_COLUMN: {catalog.qualified} has no column {catalog.key!r} "
            "(name the table's primary key)"
        )
    if not row[1]:
        raise CatalogConfigError(
            f"LOOKALIKE_KEY_COLUMN: column {catalog.key!r} of {catalog.qualified} is not unique "
            "(name the primary key, or a column with a unique index)"
        )


def _run(conn: Connection, setting: str, sql: str) -> tuple[str, str]:
    """Run ``sql`` in a savepoint; returns the (type name, type category) of its one column."""
    try:
        with conn.begin_nested():
            result = conn.exec_driver_sql(sql.replace("%", "%%"))
            type_oid = result.cursor.description[0].type_code if result.cursor else None
            result.all()
    except DBAPIError as exc:
        raise CatalogConfigError(f"{setting}: {_reason(exc)}") from None
    name, category = conn.execute(
        text("SELECT format_type(oid, NULL), typcategory FROM pg_type WHERE oid = :o"), {"o": type_oid}
    ).one()
    return str(name), str(category)


def _check_field(conn: Connection, catalog: Catalog, field: str, source: str) -> None:
    setting = f"LOOKALIKE_FIELD_{field.upper()}"
    raw = f'"{catalog.table}"."{source}"' if catalog.column_of(field) == source else f"({source})"
    type_name, category = _run(conn, setting, f"SELECT {raw} FROM {catalog.qualified} LIMIT 0")
    if field == "price" and category != NUMERIC_CATEGORY:
        raise CatalogConfigError(f"{setting}: {source!r} is of type {type_name}, not a number")
    if field == "attributes" and type_name not in JSON_TYPES:
        raise CatalogConfigError(f"{setting}: {source!r} is of type {type_name}, not json or jsonb")
    _run(conn, setting, f"SELECT {catalog.field_sql(field)} FROM {catalog.qualified} LIMIT {SAMPLE_ROWS}")


def _check_visible(conn: Connection, catalog: Catalog) -> None:
    setting = "LOOKALIKE_VISIBLE_WHERE"
    type_name, _ = _run(conn, setting, f"SELECT {catalog.visible_sql} FROM {catalog.qualified} LIMIT 0")
    if type_name != "boolean":
        raise CatalogConfigError(f"{setting}: the predicate is of type {type_name}, not boolean")
    _run(
        conn,
        setting,
        f"SELECT count(*) FROM (SELECT 1 FROM {catalog.qualified} WHERE {catalog.visible_sql} LIMIT {SAMPLE_ROWS}) s",
    )
