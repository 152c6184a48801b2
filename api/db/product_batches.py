"""Bulk product writes for ingestion: one multi-row upsert per batch instead of one per product."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert

from api.db.catalog import Catalog
from api.db.embedding_queue import CLIP_CURRENT, FALLBACK_CURRENT, WantedModels
from api.db.products import CATALOG_FIELDS


@dataclass(frozen=True)
class StoredImage:
    """What the table knows about a product's image: enough to decide whether ingest must re-embed."""

    sku: str
    image_url: str | None
    image_sha256: str | None
    embed_source: str | None
    failed: bool
    current: bool
    """Both vectors present and made by the wanted models."""


def stored_images(
    conn: Connection, catalog: Catalog, skus: Sequence[str], models: WantedModels
) -> dict[str, StoredImage]:
    rows = conn.execute(
        text(
            f"""
            SELECT sku, image_url, image_sha256, embed_source, embed_error IS NOT NULL AS failed,
                   ({CLIP_CURRENT} AND {FALLBACK_CURRENT}) AS current
            FROM {catalog.qualified} WHERE sku = ANY(:skus)
            """
        ),
        {"skus": list(skus), "clip": models.clip, "fb": models.fallback},
    ).all()
    return {
        r.sku: StoredImage(
            r.sku, r.image_url, r.image_sha256, r.embed_source, bool(r.failed), bool(r.current)
        )
        for r in rows
    }


def upsert_products(conn: Connection, catalog: Catalog, rows: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Insert or update by sku; returns how many rows were inserted or actually changed.

    Rows whose given fields already hold these values are not touched (no new ``updated_at``, no
    dead tuple), which keeps a re-run of the same import cheap. The last duplicate sku wins.
    """
    t = catalog.sa_table
    latest = {sku: {k: v for k, v in fields.items() if k in CATALOG_FIELDS} for sku, fields in rows}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for sku, fields in latest.items():
        groups[tuple(sorted(fields))].append({"sku": sku, **fields})
    written = 0
    for keys, values in groups.items():
        statement = insert(t).values(values)
        if keys:
            statement = statement.on_conflict_do_update(
                index_elements=[t.c.sku],
                set_={**{k: statement.excluded[k] for k in keys}, "updated_at": func.now()},
                where=or_(*[t.c[k].is_distinct_from(statement.excluded[k]) for k in keys]),
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=[t.c.sku])
        written += len(conn.execute(statement.returning(t.c.id)).all())
    return written


def count_products(conn: Connection, catalog: Catalog) -> int:
    return int(conn.execute(select(func.count()).select_from(catalog.sa_table)).scalar() or 0)
