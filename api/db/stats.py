"""Catalog statistics: embedding coverage per model, failures, index sizes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from api.db.catalog import Catalog
from api.db.embedding_queue import CLIP_CURRENT, FALLBACK_CURRENT


def embedding_stats(
    conn: Connection, catalog: Catalog, clip_model: str, fallback_model: str
) -> dict[str, Any]:
    row = conn.execute(
        text(
            f"""
            SELECT count(*) AS products,
                   count(*) FILTER (WHERE {CLIP_CURRENT}) AS clip_current,
                   count(*) FILTER (WHERE image_embedding IS NOT NULL AND NOT {CLIP_CURRENT}) AS clip_stale,
                   count(*) FILTER (WHERE image_embedding IS NULL) AS clip_missing,
                   count(*) FILTER (WHERE {FALLBACK_CURRENT}) AS fb_current,
                   count(*) FILTER (WHERE fallback_embedding IS NOT NULL AND NOT {FALLBACK_CURRENT}) AS fb_stale,
                   count(*) FILTER (WHERE fallback_embedding IS NULL) AS fb_missing,
                   count(*) FILTER (WHERE embed_error IS NOT NULL) AS failed,
                   count(*) FILTER (WHERE {catalog.image_source_sql} IS NULL) AS without_image
            FROM {catalog.qualified}
            """
        ),
        {"clip": clip_model, "fb": fallback_model},
    ).one()
    sizes = conn.execute(
        text(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relname = ANY(:names)"
        ),
        {"schema": catalog.schema, "names": [catalog.image_index, catalog.fallback_index, catalog.table]},
    ).all()
    size_of = {name: int(size) for name, size in sizes}
    return {
        "products": row.products,
        "without_image": row.without_image,
        "failed": row.failed,
        "models": {
            "clip": {
                "model": clip_model,
                "embedded": row.clip_current,
                "stale": row.clip_stale,
                "missing": row.clip_missing,
            },
            "fallback": {
                "model": fallback_model,
                "embedded": row.fb_current,
                "stale": row.fb_stale,
                "missing": row.fb_missing,
            },
        },
        "sizes_bytes": {
            "table": size_of.get(catalog.table, 0),
            "image_embedding_hnsw": size_of.get(catalog.image_index, 0),
            "fallback_embedding_hnsw": size_of.get(catalog.fallback_index, 0),
        },
    }


def product_count(conn: Connection, catalog: Catalog) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM {catalog.qualified}")).scalar_one())


def queue_depth(conn: Connection, catalog: Catalog, clip_model: str) -> dict[str, int]:
    """Rows with an image that are new (no vector yet), stale (another model's vector) or failed."""
    row = conn.execute(
        text(
            f"""
            SELECT count(*) FILTER (WHERE image_embedding IS NULL AND embed_error IS NULL) AS new,
                   count(*) FILTER (WHERE image_embedding IS NOT NULL AND NOT {CLIP_CURRENT}) AS stale,
                   count(*) FILTER (WHERE embed_error IS NOT NULL) AS failed
            FROM {catalog.qualified}
            WHERE {catalog.image_source_sql} IS NOT NULL
            """
        ),
        {"clip": clip_model},
    ).one()
    return {"new": int(row.new), "stale": int(row.stale), "failed": int(row.failed)}
