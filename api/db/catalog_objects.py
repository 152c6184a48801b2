"""Database objects whose SQL follows the catalog's mapping: rebuilt when the mapping changes.

The full-text column, the embedding queue's partial index, the analyst SQL functions and the
NOTIFY trigger are all written from :class:`~api.db.catalog.Catalog` (which columns or
expressions the fields read, the key's type, the visibility predicate, the text language).
Each carries a signature of the SQL it was built from in its COMMENT; every ``db upgrade``
(and every start) compares it with what the current settings would build and rebuilds only
what differs, so changing ``LOOKALIKE_TEXT_LANGUAGE`` or a ``LOOKALIKE_FIELD_*`` is one step.
The CLIP column's storage (``LOOKALIKE_VECTOR_STORAGE``) is brought in line here too, first
(:func:`api.db.clip_column.sync_storage`), since the functions are written for its type.
"""

from __future__ import annotations

import logging
import unicodedata

from sqlalchemy import Connection, text

from api.db.catalog import Catalog
from api.db.clip_column import sync_storage

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "lookalike_catalog"
"""Channel of the NOTIFY the catalog trigger sends when rows to embed may have appeared."""


def sync(conn: Connection, catalog: Catalog) -> list[str]:
    """Bring the mapping-dependent objects in line with ``catalog``; returns what was rebuilt."""
    rebuilt: list[str] = []
    for name, step in (
        # First: the functions below compare with the column as the storage types it.
        ("CLIP column storage", sync_storage),
        ("full-text column", _sync_tsvector),
        ("queue index", _sync_queue_index),
        ("SQL functions", _sync_functions),
        ("embed NOTIFY trigger", _sync_notify_trigger),
    ):
        if step(conn, catalog):
            rebuilt.append(name)
    if rebuilt:
        log.info("catalog %s: rebuilt %s for the current mapping", catalog.qualified, ", ".join(rebuilt))
    return rebuilt


def _folding_table() -> tuple[str, str]:
    """(accented, plain) letters for ``translate()``: every Latin letter with diacritics (Latin-1,
    Extended-A/B, and Extended Additional, which holds Vietnamese) mapped to its base letter."""
    special = {"đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "\u0131": "i", "ħ": "h", "Ħ": "H"}
    accented, plain = [], []
    for code in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]:
        char = chr(code)
        base = special.get(char) or unicodedata.normalize("NFD", char)[0]
        if base != char and base.isascii() and base.isalpha():
            accented.append(char)
            plain.append(base)
    return "".join(accented), "".join(plain)


def install_unaccent(conn: Connection, catalog: Catalog) -> str:
    """Create ``lookalike_unaccent(text)``, which every document column and query calls.

    With the ``unaccent`` extension (installed here where the server has it and the role may),
    it folds with unaccent's rules; without it, with ``translate()`` over every Latin letter with
    diacritics, so "robe ete" still finds "Robe d'été" and "ao so mi" finds "Áo sơ mi" on any
    server. Returns which one serves (``unaccent`` or ``translate``).
    """
    available = (
        conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent'")).scalar()
        is not None
    )
    installed = False
    if available:
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS unaccent"))
            installed = True
        except Exception as exc:  # no privilege: the translate() table folds instead
            log.warning("unaccent could not be installed (%s): folding accents with translate()", exc)
    if installed:
        ext_schema = conn.execute(
            text(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                "WHERE e.extname = 'unaccent'"
            )
        ).scalar_one()
        body = f'SELECT "{ext_schema}".unaccent(\'"{ext_schema}".unaccent\'::regdictionary, $1)'
    else:
        accented, plain = _folding_table()
        body = f"SELECT translate($1, '{accented}', '{plain}')"
    conn.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {catalog.unaccent_function}(text) RETURNS text "
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $fn$ {body} $fn$"
        )
    )
    return "unaccent" if installed else "translate"


def accent_folding(conn: Connection, catalog: Catalog) -> str | None:
    """How accents are folded in this catalog's schema (``unaccent``, ``translate``), or None."""
    source = conn.execute(
        text("SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(:f)"),
        {"f": f"{catalog.unaccent_function}(text)"},
    ).scalar()
    if source is None:
        return None
    return "unaccent" if "unaccent(" in source else "translate"


def _comment(conn: Connection, sql: str, params: dict[str, str]) -> str | None:
    value = conn.execute(text(sql), params).scalar()
    return str(value) if value is not None else None


def _sync_tsvector(conn: Connection, catalog: Catalog) -> bool:
    wanted = catalog.generated_tsvector_sql() if catalog.stored_tsvector else None
    signature = catalog.signature("tsvector", wanted or "per-row")
    exists = conn.execute(
        text(
            "SELECT col_description(to_regclass(:t), a.attnum) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(:t) AND a.attname = 'search_tsv' AND NOT a.attisdropped"
        ),
        {"t": catalog.qualified},
    ).first()
    current = exists[0] if exists is not None else None
    if exists is not None and current == signature:
        return False
    if exists is None and wanted is None:
        return False
    conn.execute(text(f'ALTER TABLE {catalog.qualified} DROP COLUMN IF EXISTS "search_tsv"'))
    if wanted is not None:
        # Weighted so a match in the name outranks one in the category, then the description.
        conn.execute(
            text(
                f"ALTER TABLE {catalog.qualified} ADD COLUMN search_tsv tsvector "
                f"GENERATED ALWAYS AS ({wanted}) STORED"
            )
        )
        conn.execute(
            text(
                f'CREATE INDEX IF NOT EXISTS "{catalog.index("search_tsv_idx")}" '
                f"ON {catalog.qualified} USING gin (search_tsv)"
            )
        )
        conn.execute(text(f"COMMENT ON COLUMN {catalog.qualified}.search_tsv IS '{signature}'"))
    return True


def _sync_queue_index(conn: Connection, catalog: Catalog) -> bool:
    wanted = catalog.queue_index_sql
    signature = catalog.signature("queue", wanted or "none")
    current = _comment(conn, "SELECT obj_description(to_regclass(:i), 'pg_class')", {"i": _index(catalog)})
    present = conn.execute(text("SELECT to_regclass(:i)"), {"i": _index(catalog)}).scalar() is not None
    if present and current == signature:
        return False
    if not present and wanted is None:
        return False
    conn.execute(text(f"DROP INDEX IF EXISTS {_index(catalog)}"))
    if wanted is not None:
        conn.execute(text(wanted))
        conn.execute(text(f"COMMENT ON INDEX {_index(catalog)} IS '{signature}'"))
    return True


def _index(catalog: Catalog) -> str:
    return catalog.in_schema(catalog.embed_queue_index)


def key_type(conn: Connection, catalog: Catalog) -> str:
    """The SQL type of the catalog's key column (``bigint``, ``text``, ``uuid``, ...)."""
    found = conn.execute(
        text(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(:t) AND a.attname = :k AND NOT a.attisdropped"
        ),
        {"t": catalog.qualified, "k": catalog.key},
    ).scalar()
    if found is None:
        raise LookupError(f"{catalog.qualified} has no column {catalog.key!r}")
    return str(found)


FUNCTION_NAMES = ("similar_products_by_sku", "similar_products", "products_near")


def function_sql(catalog: Catalog, key_sql_type: str) -> list[str]:
    """The analyst functions (docs/sql.md) over this catalog: mapped fields, visible rows only."""
    schema, table, f = f'"{catalog.schema}"', catalog.qualified, catalog.field_sql
    result = (
        f"id {key_sql_type}, sku text, name text, category text, price numeric, currency text, "
        "image_url text, url text, similarity double precision"
    )
    listing = ", ".join(
        [catalog.key_sql]
        + [f(name) for name in ("sku", "name", "category", "price", "currency", "image_url", "url")]
    )
    # Analysts pass a vector whatever the storage; a halfvec column compares with a halfvec.
    query = catalog.clip_cast_sql("query")
    return [
        f"""
        CREATE FUNCTION {schema}.products_near(query vector, k integer DEFAULT 10)
        RETURNS TABLE ({result})
        LANGUAGE sql STABLE
        SET hnsw.iterative_scan = 'strict_order'
        AS $fn$
            SELECT {listing}, 1 - (image_embedding <=> {query}) AS similarity
            FROM {table}
            WHERE image_embedding IS NOT NULL AND {catalog.visible_sql}
            ORDER BY image_embedding <=> {query}
            LIMIT k
        $fn$
        """,
        f"""
        CREATE FUNCTION {schema}.similar_products(product_id {key_sql_type}, k integer DEFAULT 10)
        RETURNS TABLE ({result})
        LANGUAGE plpgsql STABLE
        AS $fn$
        #variable_conflict use_column
        DECLARE
            query vector;
        BEGIN
            SELECT image_embedding INTO query FROM {table}
            WHERE {catalog.key_sql} = similar_products.product_id AND {catalog.visible_sql};
            IF query IS NULL THEN
                RETURN;
            END IF;
            RETURN QUERY
                SELECT n.* FROM {schema}.products_near(query, k + 1) n
                WHERE n.id <> similar_products.product_id
                LIMIT k;
        END
        $fn$
        """,
        f"""
        CREATE FUNCTION {schema}.similar_products_by_sku(product_sku text, k integer DEFAULT 10)
        RETURNS TABLE ({result})
        LANGUAGE sql STABLE
        AS $fn$
            SELECT s.* FROM {table}, {schema}.similar_products({catalog.key_sql}, k) s
            WHERE {f("sku")} = product_sku
        $fn$
        """,
    ]


FUNCTION_DOCS = {
    "products_near": "The k visible products whose CLIP image embedding is nearest (cosine) to a query vector, with similarity = 1 - cosine distance.",
    "similar_products": "The k visible products that look most like the given product (by key), nearest first; the product itself is excluded.",
    "similar_products_by_sku": "Like similar_products, for a product given by its sku.",
}


def _sync_functions(conn: Connection, catalog: Catalog) -> bool:
    statements = function_sql(catalog, key_type(conn, catalog))
    signature = catalog.signature("functions", *statements)
    current = conn.execute(
        text(
            "SELECT p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc') FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s AND p.proname = ANY(:names)"
        ),
        {"s": catalog.schema, "names": list(FUNCTION_NAMES)},
    ).all()
    if len(current) == len(FUNCTION_NAMES) and all(
        (comment or "").endswith(f"[{signature}]") for _, comment in current
    ):
        return False
    for procedure, _ in current:  # any older signature, e.g. an integer key that became text
        conn.execute(text(f"DROP FUNCTION IF EXISTS {procedure} CASCADE"))
    for statement in statements:
        conn.execute(text(statement))
    for name, doc in FUNCTION_DOCS.items():
        oid = conn.execute(
            text(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = :s AND p.proname = :name"
            ),
            {"s": catalog.schema, "name": name},
        ).scalar_one()
        conn.execute(text(f"COMMENT ON FUNCTION {oid} IS '{doc} [{signature}]'"))
    return True


def _sync_notify_trigger(conn: Connection, catalog: Catalog) -> bool:
    """A statement-level trigger that NOTIFYs the embedding worker when rows to embed may have
    appeared: inserts, deletes, and updates of the image column. When the image is an expression
    into another table, only inserts and deletes are seen here; the worker's poll finds the rest."""
    column = catalog.column_of("image_url")
    events = "INSERT OR DELETE" + (f' OR UPDATE OF "{column}"' if column is not None else "")
    function = catalog.in_schema("lookalike_notify_catalog")
    name = catalog.index("embed_notify")
    trigger_sql = (
        f'CREATE TRIGGER "{name}" AFTER {events} ON {catalog.qualified} '
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )
    signature = catalog.signature("notify", trigger_sql)
    current = conn.execute(
        text(
            "SELECT obj_description(t.oid, 'pg_trigger') FROM pg_trigger t "
            "WHERE t.tgrelid = to_regclass(:t) AND t.tgname = :n"
        ),
        {"t": catalog.qualified, "n": name},
    ).first()
    if current is not None and current[0] == signature:
        return False
    conn.execute(
        text(
            f"""
            CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
                RETURN NULL;
            END
            $fn$
            """
        )
    )
    conn.execute(text(f'DROP TRIGGER IF EXISTS "{name}" ON {catalog.qualified}'))
    conn.execute(text(trigger_sql))
    conn.execute(text(f"COMMENT ON TRIGGER \"{name}\" ON {catalog.qualified} IS '{signature}'"))
    return True
