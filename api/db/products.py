"""Product rows: reads, upserts, partial updates, deletes and embedding writes (SQL in one place)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, null, select, text, update
from sqlalchemy.dialects.postgresql import insert

from api.db.catalog import Catalog, Listing

CATALOG_FIELDS = ("name", "description", "category", "price", "currency", "attributes", "image_url", "url")
"""Fields the write API sets on Lookalike's own table (an attached shop table is never written)."""


@dataclass(frozen=True)
class Product(Listing):
    created_at: datetime | None
    updated_at: datetime | None
    image_model: str | None
    fallback_model: str | None
    image_sha256: str | None
    embedded_at: datetime | None
    embed_error: str | None


@dataclass(frozen=True)
class Embeddings:
    """What one image turned into; either vector may be missing when its model is unavailable.
    Written by ``api.db.embedding_queue.write_embedded``, the one embedding write."""

    image_sha256: str
    clip: np.ndarray | None = None
    clip_model: str | None = None
    fallback: np.ndarray | None = None
    fallback_model: str | None = None


def _product_columns(catalog: Catalog) -> list[Any]:
    t = catalog.sa_table
    if catalog.attached:  # the shop's timestamps are its own business: not part of the mapping
        stamps = [null().label("created_at"), null().label("updated_at")]
    else:
        stamps = [t.c.created_at, t.c.updated_at]
    return [
        *catalog.listing_columns(), *stamps,
        t.c.image_model, t.c.fallback_model, t.c.image_sha256, t.c.embedded_at, t.c.embed_error,
    ]  # fmt: skip


def _visible(catalog: Catalog) -> list[Any]:
    visible = catalog.visible()
    return [] if visible is None else [visible]


def get_product(conn: Connection, catalog: Catalog, sku: str, *, shopper: bool = True) -> Product | None:
    """A product by sku; ``shopper`` reads see only visible products (the admin sees every row)."""
    where = [catalog.field("sku") == sku, *(_visible(catalog) if shopper else [])]
    row = conn.execute(select(*_product_columns(catalog)).where(*where).limit(1)).mappings().first()
    return Product(**row) if row else None


def upsert_product(conn: Connection, catalog: Catalog, sku: str, fields: dict[str, Any]) -> tuple[Any, bool]:
    """Insert or update by sku; returns (id, created). Only the given catalog fields change on update."""
    t = catalog.sa_table
    values = {k: v for k, v in fields.items() if k in CATALOG_FIELDS}
    statement = insert(t).values(sku=sku, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[t.c.sku],
        set_={**{k: statement.excluded[k] for k in values}, "updated_at": func.now()},
    ).returning(catalog.key_column.label("id"), text("(xmax = 0) AS created"))
    row = conn.execute(statement).one()
    return row.id, bool(row.created)


def update_product(conn: Connection, catalog: Catalog, sku: str, fields: dict[str, Any]) -> Any | None:
    """Change the given catalog fields; returns the id, or None if the sku does not exist."""
    t = catalog.sa_table
    values = {k: v for k, v in fields.items() if k in CATALOG_FIELDS}
    statement = update(t).where(t.c.sku == sku).values(**values, updated_at=func.now()).returning(catalog.key_column)
    return conn.execute(statement).scalar()


def delete_product(conn: Connection, catalog: Catalog, sku: str) -> bool:
    t = catalog.sa_table
    return conn.execute(delete(t).where(t.c.sku == sku).returning(catalog.key_column)).first() is not None


def clear_embeddings(conn: Connection, catalog: Catalog, product_id: Any) -> None:
    """The image changed or went away: old vectors would describe the wrong picture."""
    t = catalog.sa_table
    conn.execute(
        update(t)
        .where(catalog.key_column == product_id)
        .values(
            image_embedding=None,
            image_model=None,
            fallback_embedding=None,
            fallback_model=None,
            image_sha256=None,
            embedded_at=None,
            embed_error=None,
            embed_source=None,
        )
    )


def record_embed_error(conn: Connection, catalog: Catalog, product_id: Any, reason: str) -> None:
    t = catalog.sa_table
    conn.execute(update(t).where(catalog.key_column == product_id).values(embed_error=reason, embedded_at=func.now()))


def catalog_version(conn: Connection, catalog: Catalog) -> int:
    """The counter the catalog's write trigger bumps; part of every cached result's key."""
    return int(
        conn.execute(
            text(f"SELECT version FROM {catalog.in_schema('lookalike_catalog_state')} WHERE table_name = :t"),
            {"t": catalog.table},
        ).scalar()
        or 0
    )


def categories(conn: Connection, catalog: Catalog) -> list[tuple[str, int]]:
    """Visible products per category, for the filter list."""
    category = catalog.field("category")
    rows = conn.execute(
        select(category, func.count())
        .select_from(catalog.sa_table)
        .where(category.is_not(None), *_visible(catalog))
        .group_by(category)
        .order_by(category)
    )
    return [(str(c), int(n)) for c, n in rows]
