"""The CLIP vector column's width and storage, and changing them when the settings change.

Migration 0002 creates ``image_embedding`` with the configured model's width once (``ADD COLUMN IF
NOT EXISTS``), so a later ``lookalike db upgrade`` never undoes a change made here.

Storage (``LOOKALIKE_VECTOR_STORAGE``) is ``vector`` (float32) or ``halfvec`` (float16: half the
memory for the column and its HNSW graphs). Unlike a width change, a storage change keeps every
vector: ``vector(d)`` and ``halfvec(d)`` cast into each other, so the column is converted in place
(no re-embed) by every ``lookalike db upgrade`` and start whose setting differs from the column
(:func:`sync_storage`, run with the other settings-driven objects under the migration lock).
The conversion rewrites the table and rebuilds the CLIP indexes in one transaction: searches
wait for it (the index build dominates; docs/benchmarks.md has build times per size).
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from sqlalchemy import Connection, text

from api.db.catalog import Catalog
from api.db.migrate import MIGRATION_LOCK_KEY
from api.db.vector_indexes import describe_hnsw_indexes, index_ddl, table_rows

Storage = Literal["vector", "halfvec"]

log = logging.getLogger(__name__)

_OPCLASS = re.compile(r"USING hnsw \(image_embedding (?:vector|halfvec)_cosine_ops\)")


def _clip_column(conn: Connection, catalog: Catalog) -> tuple[int, str] | None:
    """``image_embedding``'s atttypmod and type name, or None if absent.

    Width and storage live on the same catalog row: one query answers both, so the two readings
    of the column cannot drift apart.
    """
    row = conn.execute(
        text(
            "SELECT a.atttypmod, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = :table AND a.attname = 'image_embedding' "
            "AND NOT a.attisdropped"
        ),
        {"schema": catalog.schema, "table": catalog.table},
    ).first()
    return None if row is None else (row[0], row[1])


def clip_column_dim(conn: Connection, catalog: Catalog) -> int | None:
    """The declared width of ``image_embedding`` (pgvector keeps it in atttypmod), or None if absent."""
    column = _clip_column(conn, catalog)
    return None if column is None or column[0] < 0 else int(column[0])


def change_clip_dim(conn: Connection, catalog: Catalog, dim: int) -> None:
    """Retype the column to ``vector(dim)`` (or ``halfvec(dim)``) and rebuild its HNSW index, in the caller's transaction.

    Old vectors cannot be cast to another width, so they become NULL together with their model
    id: the worker re-embeds those rows, and search serves them through the MobileNetV2 and
    full-text fallbacks meanwhile. One transaction: readers see the old column or the new one.
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    conn.execute(text(f"DROP INDEX IF EXISTS {catalog.in_schema(catalog.image_index)}"))
    conn.execute(
        text(
            f"ALTER TABLE {catalog.qualified} ALTER COLUMN image_embedding "
            f"TYPE {catalog.vector_storage}({int(dim)}) USING NULL"
        )
    )
    conn.execute(text(f"UPDATE {catalog.qualified} SET image_model = NULL WHERE image_model IS NOT NULL"))
    # Built empty and filled as the rows are embedded again: as wide as the table will make it.
    conn.execute(text(index_ddl(catalog, "image_embedding", rows=table_rows(conn, catalog))))


def index_definition(conn: Connection, catalog: Catalog) -> str | None:
    """The CLIP index's DDL as PostgreSQL reports it (for checks and tests)."""
    return conn.execute(
        text("SELECT indexdef FROM pg_indexes WHERE schemaname = :schema AND indexname = :name"),
        {"schema": catalog.schema, "name": catalog.image_index},
    ).scalar()


def clip_column_storage(conn: Connection, catalog: Catalog) -> Storage | None:
    """``vector`` or ``halfvec``: the CLIP column's type as PostgreSQL has it, or None if absent."""
    column = _clip_column(conn, catalog)
    value = None if column is None else column[1]
    if value not in ("vector", "halfvec"):
        return None
    return "halfvec" if value == "halfvec" else "vector"


def clip_indexes(conn: Connection, catalog: Catalog) -> dict[str, str]:
    """Every HNSW index over the CLIP column (main and per-category): name -> its DDL."""
    return {
        index.name: index.ddl
        for index in describe_hnsw_indexes(conn, catalog)
        if index.column == "image_embedding"
    }


def change_clip_storage(conn: Connection, catalog: Catalog, storage: Storage) -> list[str]:
    """Convert the CLIP column to ``storage`` in place, keeping its vectors, in the caller's transaction.

    Each CLIP index is dropped and built again with the new type's opclass, from its own
    definition (so the per-category partial indexes keep their predicates): ``ALTER COLUMN TYPE``
    alone would rebuild them with the old opclass, which does not accept the new type. Returns the
    indexes rebuilt. The float32 -> float16 cast rounds each component (about 3 significant
    digits); converting back restores float32 columns holding those rounded values.
    """
    dim = clip_column_dim(conn, catalog)
    if dim is None:
        raise ValueError(f"{catalog.qualified} has no typed image_embedding column")
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    indexes = clip_indexes(conn, catalog)
    for name in indexes:
        conn.execute(text(f"DROP INDEX IF EXISTS {catalog.in_schema(name)}"))
    new_type = f"{storage}({int(dim)})"
    conn.execute(
        text(
            f"ALTER TABLE {catalog.qualified} ALTER COLUMN image_embedding "
            f"TYPE {new_type} USING image_embedding::{new_type}"
        )
    )
    for ddl in indexes.values():
        ddl = _OPCLASS.sub(f"USING hnsw (image_embedding {storage}_cosine_ops)", ddl, count=1)
        conn.exec_driver_sql(ddl.replace("%", "%%"))
    return sorted(indexes)


def sync_storage(conn: Connection, catalog: Catalog) -> bool:
    """Bring the CLIP column to ``catalog.vector_storage``; True when it was converted."""
    current = clip_column_storage(conn, catalog)
    wanted: Storage = "halfvec" if catalog.vector_storage == "halfvec" else "vector"
    if current is None or current == wanted:
        return False
    log.info("converting %s.image_embedding from %s to %s (vectors kept)", catalog.qualified, current, wanted)
    rebuilt = change_clip_storage(conn, catalog, wanted)
    log.info("image_embedding is %s now; rebuilt %s", wanted, ", ".join(rebuilt) or "no index")
    return True
