"""Names and shape of the catalog table: the one place that knows which columns Lookalike owns.

The table name is a setting because Lookalike attaches to a shop's existing products table;
migrations, search SQL and ingestion all take their identifiers from :class:`Catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    MetaData,
    Numeric,
    Table,
    Text,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR

from api.settings import Settings


@dataclass(frozen=True)
class Listing:
    """A product as a shopper sees it: the row shape of :meth:`Catalog.listing_columns`."""

    id: int
    sku: str
    name: str | None
    description: str | None
    category: str | None
    price: Decimal | None
    currency: str | None
    attributes: dict[str, Any]
    image_url: str | None


@dataclass(frozen=True)
class Catalog:
    table: str
    schema: str
    clip_dim: int
    fallback_dim: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        return cls(settings.products_table, settings.db_schema, settings.clip_dim, settings.fallback_dim)

    @property
    def qualified(self) -> str:
        """Quoted ``schema.table`` for hand-written SQL (identifiers are validated by Settings)."""
        return f'"{self.schema}"."{self.table}"'

    def index(self, suffix: str) -> str:
        """Index names are prefixed with the table name so two catalogs can share a schema."""
        return f"{self.table}_{suffix}"

    @property
    def image_index(self) -> str:
        return self.index("image_embedding_hnsw")

    @property
    def fallback_index(self) -> str:
        return self.index("fallback_embedding_hnsw")

    @property
    def embed_queue_index(self) -> str:
        return self.index("embed_queue_idx")

    def listing_columns(self) -> list[ColumnElement[Any]]:
        """What a shopper sees of a product: the columns every search result and product read return."""
        t = self.sa_table
        return [
            t.c.id, t.c.sku, t.c.name, t.c.description, t.c.category, t.c.price, t.c.currency,
            func.coalesce(t.c.attributes, literal_column("'{}'::jsonb")).label("attributes"),
            t.c.image_url,
        ]  # fmt: skip

    @cached_property
    def sa_table(self) -> Table:
        """A Core Table with the columns Lookalike reads and writes (a shop's extra columns are ignored)."""
        return Table(
            self.table,
            MetaData(schema=self.schema),
            Column("id", BigInteger, primary_key=True),
            Column("sku", Text, nullable=False, unique=True),
            Column("name", Text),
            Column("description", Text),
            Column("category", Text),
            Column("price", Numeric(12, 2)),
            Column("currency", Text),
            Column("attributes", JSONB),
            Column("image_url", Text),
            Column("created_at", DateTime(timezone=True)),
            Column("updated_at", DateTime(timezone=True)),
            Column("image_embedding", Vector(self.clip_dim)),
            Column("image_model", Text),
            Column("fallback_embedding", Vector(self.fallback_dim)),
            Column("fallback_model", Text),
            Column("image_sha256", Text),
            Column("embedded_at", DateTime(timezone=True)),
            Column("embed_error", Text),
            Column("embed_source", Text),
            Column("search_tsv", TSVECTOR),
        )
