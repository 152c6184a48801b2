"""Names and shape of the catalog table: the one place that knows where each product field lives.

Lookalike runs on its own ``products`` table, or attaches to a shop's table as it is. Attached,
every catalog field (``sku``, ``name``, ``price``, ``image_url``, ...) is read from a column of the
shop's table or from an SQL expression over its row (``LOOKALIKE_FIELD_<FIELD>``), the key is
whatever type the shop uses, and a visibility predicate (``LOOKALIKE_VISIBLE_WHERE``) hides
drafts and soft-deleted rows from shoppers. Only derived search data (vectors, their bookkeeping,
the full-text vector) is ever added to such a table; the shop's own columns are only read.

Migrations, search SQL, the embedding queue and product reads all take their SQL from here.
Mapped fields and the predicate are SQL written by the operator, like a view definition: they
are spliced into statements as written (never user input), and checked against the live table
at start-up (:mod:`api.db.catalog_check`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    MetaData,
    Numeric,
    Table,
    Text,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.types import NullType, TypeEngine

from api.settings import CATALOG_FIELDS, Settings

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

FIELD_SQL_TYPES = {"price": "numeric", "attributes": "jsonb"}
"""SQL type each field is read as (others: text), so any shop column type reads the same way."""
TEXT_FIELDS = ("name", "category", "description")
"""The fields full-text search matches, weighted A, B, C (a hit in the name counts most)."""
DERIVED_COLUMNS = (
    "image_embedding",
    "image_model",
    "fallback_embedding",
    "fallback_model",
    "image_sha256",
    "embedded_at",
    "embed_error",
    "embed_source",
    "search_tsv",
)
"""What Lookalike adds to any catalog table, its own or a shop's: all of it can be recomputed."""


def _type_of(name: str) -> TypeEngine[Any]:
    if name == "price":
        return Numeric(12, 2)
    if name == "attributes":
        return JSONB()
    return Text()


def plain_key(value: Any) -> int | str:
    """A key as the API returns it: integers stay integers, uuids and everything else are strings."""
    return value if isinstance(value, int | str) else str(value)


@dataclass(frozen=True)
class Listing:
    """A product as a shopper sees it: the row shape of :meth:`Catalog.listing_columns`."""

    id: int | str
    sku: str
    name: str | None
    description: str | None
    category: str | None
    price: Decimal | None
    currency: str | None
    attributes: dict[str, Any]
    image_url: str | None
    url: str | None

    def __post_init__(self) -> None:
        # Keys of any type reach the API as plain JSON values (a uuid becomes its string).
        object.__setattr__(self, "id", plain_key(self.id))


PGVECTOR_GRAPH = (16, 64)
"""pgvector's (m, ef_construction): what a graph built without ``WITH (...)`` has."""

LARGE_GRAPH_ROWS = 200_000
"""From this many rows a graph is built with LARGE_GRAPH_EF_CONSTRUCTION when the setting is unset.
Measured (docs/benchmarks.md, issue 20): pgvector's 64 keeps filtered recall >= 0.95 at 100k rows
and misses it at 1M (0.870-0.962), where 128 holds it (0.978-0.987). Between the two nothing was
measured, so the switch sits at twice the size known to be fine."""
LARGE_GRAPH_EF_CONSTRUCTION = 128


@dataclass(frozen=True)
class Catalog:
    table: str
    schema: str
    clip_dim: int
    fallback_dim: int
    mapping: tuple[tuple[str, str], ...] = ()
    """(field, column or SQL expression) for each mapped field; empty for Lookalike's own table."""
    key: str = "id"
    visible_where: str | None = None
    text_language: str = "english"
    vector_storage: str = "vector"
    """``vector`` or ``halfvec``: the SQL type of the CLIP column and the opclass of its indexes."""
    hnsw_m: int = 16
    hnsw_ef_construction: int | None = None
    """None: by the graph's size (:meth:`hnsw_graph`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        return cls(
            settings.products_table,
            settings.db_schema,
            settings.clip_dim,
            settings.fallback_dim,
            tuple(sorted(settings.field_mapping.items())),
            settings.key_column,
            settings.visible_where,
            settings.text_language,
            settings.vector_storage,
            settings.hnsw_m,
            settings.hnsw_ef_construction,
        )

    # --- names ---------------------------------------------------------------------------
    @property
    def qualified(self) -> str:
        """Quoted ``schema.table`` for hand-written SQL (identifiers are validated by Settings)."""
        return self.in_schema(self.table)

    def in_schema(self, name: str) -> str:
        """Quoted ``schema.name`` for an index, function or table of ours beside the catalog."""
        return f'"{self.schema}"."{name}"'

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

    # --- CLIP column type ----------------------------------------------------------------
    @property
    def clip_sql_type(self) -> str:
        """``vector(512)`` or ``halfvec(512)``: what the CLIP column is and what queries cast to."""
        return f"{self.vector_storage}({int(self.clip_dim)})"

    @property
    def clip_opclass(self) -> str:
        """The cosine opclass of the CLIP column's HNSW indexes (main and per-category)."""
        return f"{self.vector_storage}_cosine_ops"

    def hnsw_graph(self, rows: int) -> tuple[int, int]:
        """(m, ef_construction) for a Lookalike graph over ``rows`` rows: the settings', or when
        ef_construction is unset, pgvector's 64 below LARGE_GRAPH_ROWS and 128 from there."""
        if self.hnsw_ef_construction is not None:
            return self.hnsw_m, self.hnsw_ef_construction
        wide = LARGE_GRAPH_EF_CONSTRUCTION if rows >= LARGE_GRAPH_ROWS else PGVECTOR_GRAPH[1]
        return self.hnsw_m, max(wide, 2 * self.hnsw_m)

    def hnsw_graph_is_current(self, built: tuple[int, int], rows: int) -> bool:
        """Whether a graph built with ``built`` over ``rows`` rows needs no rebuild. By size, a
        wider graph than the size asks for is kept: a catalog that shrinks is not rebuilt narrower,
        nor one that hovers around the threshold rebuilt again and again."""
        wanted = self.hnsw_graph(rows)
        if self.hnsw_ef_construction is not None:
            return built == wanted
        return built[0] == wanted[0] and built[1] >= wanted[1]

    def hnsw_options(self, rows: int) -> str:
        """The ``WITH (...)`` clause that builds a graph over ``rows`` rows with :meth:`hnsw_graph`;
        none for pgvector's defaults, so a default install's indexes read as migration 0002 wrote them."""
        graph = self.hnsw_graph(rows)
        if graph == PGVECTOR_GRAPH:
            return ""
        m, ef_construction = graph
        return f"WITH (m = {m}, ef_construction = {ef_construction})"

    def clip_cast_sql(self, expression: str) -> str:
        """``expression`` (a ``vector``) as the CLIP column's type, so ``<=>`` picks the column's
        operator and its index; the identity for ``vector`` storage."""
        if self.vector_storage == "vector":
            return expression
        return f"CAST({expression} AS {self.clip_sql_type})"

    # --- fields --------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        """The shop owns the rows: fields are mapped onto its table and Lookalike never writes them."""
        return bool(self.mapping)

    @property
    def mapped(self) -> dict[str, str]:
        return dict(self.mapping)

    def column_of(self, field: str) -> str | None:
        """The shop column a field reads, when it is a plain column (indexable, usable in DDL)."""
        if not self.attached:
            return field
        source = self.mapped.get(field)
        if source is not None and _IDENTIFIER.match(source):
            return source
        return None

    def field_sql(self, field: str) -> str:
        """SQL for one field of the current row, typed as Lookalike reads it.

        A plain column is qualified by the table name so the expression also reads right inside
        subqueries; an expression is wrapped and cast. An unmapped field of an attached table
        is NULL (attributes: an empty object): no column is added for it.
        """
        sql_type = FIELD_SQL_TYPES.get(field, "text")
        column = self.column_of(field)
        if column is not None:
            ref = f'"{self.table}"."{column}"'
            if not self.attached:
                return ref
            return f"CAST({ref} AS {sql_type})"
        source = self.mapped.get(field)
        if source is None:
            return "'{}'::jsonb" if field == "attributes" else f"CAST(NULL AS {sql_type})"
        return f"CAST(({source}) AS {sql_type})"

    def field(self, field: str) -> ColumnElement[Any]:
        """One field as an SQLAlchemy expression, for statements built with Core."""
        if field not in CATALOG_FIELDS:
            raise KeyError(field)
        if not self.attached:
            return self.sa_table.c[field]
        return literal_column(self.field_sql(field), _type_of(field))

    @property
    def key_sql(self) -> str:
        return f'"{self.table}"."{self.key}"'

    @property
    def key_column(self) -> ColumnElement[Any]:
        return self.sa_table.c[self.key]

    def visible(self) -> ColumnElement[bool] | None:
        """The shop's visibility predicate, or None when every row is visible."""
        if self.visible_where is None:
            return None
        return literal_column(f"({self.visible_where})", Boolean())

    @property
    def visible_sql(self) -> str:
        """The visibility predicate as SQL text (``TRUE`` when none is set)."""
        return f"({self.visible_where})" if self.visible_where else "TRUE"

    def listing_columns(self) -> list[ColumnElement[Any]]:
        """What a shopper sees of a product: the columns every search result and product read return."""
        columns: list[ColumnElement[Any]] = [self.key_column.label("id")]
        for name in CATALOG_FIELDS:
            expression = self.field(name)
            if name == "attributes":
                expression = literal_column(f"coalesce({self.field_sql(name)}, '{{}}'::jsonb)", JSONB())
            columns.append(expression.label(name))
        return columns

    # --- full text -----------------------------------------------------------------------
    @property
    def regconfig(self) -> str:
        return f"'{self.text_language}'::regconfig"

    @property
    def unaccent_function(self) -> str:
        """An IMMUTABLE wrapper over ``unaccent`` (or the identity where the server lacks it),
        installed by the migrations: generated columns and indexes need an immutable function."""
        return f'"{self.schema}".lookalike_unaccent'

    def tsvector_sql(self, field_sql: dict[str, str] | None = None) -> str:
        """The weighted document vector over the text fields, accent-folded, in the shop's language."""
        sources = field_sql or {name: self.field_sql(name) for name in TEXT_FIELDS}
        parts = [
            f"setweight(to_tsvector({self.regconfig}, {self.unaccent_function}(coalesce({sources[name]}, ''))), '{weight}')"
            for name, weight in zip(TEXT_FIELDS, "ABC", strict=True)
        ]
        return " || ".join(parts)

    @property
    def stored_tsvector(self) -> bool:
        """True when every text field is a column (or absent), so the vector can be a generated,
        GIN-indexed column; an expression field into another table is matched per row instead."""
        return all(self.column_of(name) is not None or name not in self.mapped for name in TEXT_FIELDS) or (
            not self.attached
        )

    def generated_tsvector_sql(self) -> str:
        """The generated column's expression: unqualified column names, as DDL wants them."""
        sources = {}
        for name in TEXT_FIELDS:
            column = self.column_of(name)
            sources[name] = f'"{column}"::text' if column is not None else "NULL::text"
        return self.tsvector_sql(sources)

    def document(self) -> ColumnElement[Any]:
        """What full-text queries match against: the indexed column, or the expression per row."""
        if self.stored_tsvector:
            return self.sa_table.c.search_tsv
        return literal_column(f"({self.tsvector_sql()})", TSVECTOR())

    def tsquery_sql(self, param: str) -> str:
        return f"websearch_to_tsquery({self.regconfig}, {self.unaccent_function}({param}))"

    # --- queue ---------------------------------------------------------------------------
    @property
    def image_source_sql(self) -> str:
        """The image source of a row as the embedding queue compares it with ``embed_source``."""
        return self.field_sql("image_url")

    @property
    def new_or_changed_sql(self) -> str:
        """Rows whose image source is not the one last embedded: the queue's usual work."""
        source = self.image_source_sql
        return f"{source} IS NOT NULL AND embed_source IS DISTINCT FROM {source}"

    @property
    def queue_index_sql(self) -> str | None:
        """The partial index that finds new and changed rows, when the image is a plain column
        (an expression into another table cannot be indexed: claims then scan)."""
        column = self.column_of("image_url")
        if column is None:
            return None
        return (
            f'CREATE INDEX IF NOT EXISTS "{self.embed_queue_index}" ON {self.qualified} ("{self.key}") '
            f'WHERE "{column}" IS NOT NULL AND embed_source IS DISTINCT FROM "{column}"'
        )

    def signature(self, *parts: str) -> str:
        """A short digest of the SQL an object was built from, kept in its COMMENT, so start-up can
        tell when a changed mapping or language means it must be rebuilt."""
        return "lookalike:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    @cached_property
    def sa_table(self) -> Table:
        """A Core Table with the columns Lookalike reads and writes (a shop's extra columns are ignored).

        Attached, only the key and the derived columns are real columns here; fields come from
        :meth:`field`. The own table also has every catalog field, writable through the API.
        """
        derived = [
            Column(
                "image_embedding",
                HALFVEC(self.clip_dim) if self.vector_storage == "halfvec" else Vector(self.clip_dim),
            ),
            Column("image_model", Text),
            Column("fallback_embedding", Vector(self.fallback_dim)),
            Column("fallback_model", Text),
            Column("image_sha256", Text),
            Column("embedded_at", DateTime(timezone=True)),
            Column("embed_error", Text),
            Column("embed_source", Text),
            Column("search_tsv", TSVECTOR),
        ]
        if self.attached:
            # The shop's key keeps its own type: values are bound as they came from the database.
            return Table(
                self.table,
                MetaData(schema=self.schema),
                Column(self.key, NullType(), primary_key=True),
                *derived,
            )
        return Table(
            self.table,
            MetaData(schema=self.schema),
            Column(self.key, BigInteger, primary_key=True),
            Column("sku", Text, nullable=False, unique=True),
            Column("name", Text),
            Column("description", Text),
            Column("category", Text),
            Column("price", Numeric(12, 2)),
            Column("currency", Text),
            Column("attributes", JSONB),
            Column("image_url", Text),
            Column("url", Text),
            Column("created_at", DateTime(timezone=True)),
            Column("updated_at", DateTime(timezone=True)),
            *derived,
        )
