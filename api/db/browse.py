"""Browsing the catalog without a query: one page of products under the shopper's filters.

Pages are cut with a keyset cursor (the sort value and the key of the last row) rather than an
OFFSET, so page 50 of a category costs what page 1 costs and a product added meanwhile never
shifts a page. The catalog's visibility predicate applies, as on every shopper read.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from sqlalchemy import Numeric, String, and_, bindparam, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from api.db.catalog import Catalog, Listing
from api.db.search import Filters


class Sort(StrEnum):
    NAME = "name"
    PRICE = "price"
    PRICE_DESC = "-price"


class BadCursorError(ValueError):
    """A cursor this server did not hand out (or one for another sort order)."""


@dataclass(frozen=True)
class BrowsePage:
    products: list[Listing]
    next_cursor: str | None
    total: int | None


def _sort_value(catalog: Catalog, sort: Sort) -> ColumnElement[Any]:
    """The sort expression: never NULL, so one row comparison pages through it (NULLs sort last)."""
    if sort is Sort.NAME:
        return func.coalesce(func.lower(catalog.field("name")), "", type_=String())
    infinity = "-Infinity" if sort is Sort.PRICE_DESC else "Infinity"
    return func.coalesce(catalog.field("price"), literal(Decimal(infinity), Numeric()), type_=Numeric())


def encode_cursor(sort: Sort, value: Any, key: Any) -> str:
    raw = json.dumps({"s": sort.value, "v": str(value), "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("s") != sort.value or not isinstance(data.get("v"), str):
            raise BadCursorError("the cursor belongs to another sort order")
        value: Any = data["v"] if sort is Sort.NAME else Decimal(data["v"])
        key = data["k"]
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise BadCursorError("the cursor's key is not a key")
        return value, key
    except (binascii.Error, ValueError, InvalidOperation, UnicodeDecodeError) as exc:
        raise BadCursorError(f"not a cursor from this server: {exc}") from exc


def _filter_clauses(catalog: Catalog, filters: Filters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    visible = catalog.visible()
    if visible is not None:
        clauses.append(visible)
    if filters.categories:
        clauses.append(catalog.field("category").in_(list(filters.categories)))
    price = catalog.field("price")
    if filters.price_min is not None:
        clauses.append(price >= filters.price_min)
    if filters.price_max is not None:
        clauses.append(price <= filters.price_max)
    if filters.attributes:
        clauses.append(
            catalog.field("attributes").op("@>")(bindparam("attributes", filters.attributes, type_=JSONB))
        )
    return clauses


def browse(
    conn: Connection, catalog: Catalog, filters: Filters, sort: Sort, limit: int, cursor: str | None
) -> BrowsePage:
    """One page of products, and (on the first page) how many products the filters keep."""
    order = _sort_value(catalog, sort)
    key = catalog.key_column
    clauses = _filter_clauses(catalog, filters)
    statement = select(*catalog.listing_columns(), order.label("_sort")).select_from(catalog.sa_table)
    if cursor is not None:
        value, last_key = decode_cursor(cursor, sort)
        bound = tuple_(order, key)
        after = tuple_(literal(value, order.type), literal(last_key, key.type))
        clauses.append(bound < after if sort is Sort.PRICE_DESC else bound > after)
    if clauses:
        statement = statement.where(and_(*clauses))
    direction = (order.desc(), key.desc()) if sort is Sort.PRICE_DESC else (order.asc(), key.asc())
    rows = conn.execute(statement.order_by(*direction).limit(limit + 1)).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    products = [Listing(**{k: v for k, v in row.items() if k != "_sort"}) for row in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(sort, last["_sort"], last["id"])
    total = None
    if cursor is None:
        count = select(func.count()).select_from(catalog.sa_table)
        base = _filter_clauses(catalog, filters)
        if base:
            count = count.where(and_(*base))
        total = int(conn.execute(count).scalar_one())
    return BrowsePage(products, next_cursor, total)
