"""SQL for the duplicate finder: each product's nearest neighbours within a distance, by batches.

This is not a shopper search (no ranking, paging or result cache): it asks, for every product
with a current vector, which other products lie within ``max_distance`` of it. An all-pairs scan
is n^2 distance computations (5*10^9 for 100k products); instead each product runs one k-NN
query through the HNSW index, ``k`` neighbours deep, inside a ``LATERAL`` join so a batch of
products is one statement and the vectors never leave the database. Batches walk the catalog
in key order (keyset pagination), so the cost per batch stays flat however far the walk is.

``k`` bounds how many copies of one photo a single query can see; a larger group is still
joined whole by the caller (union-find) because each copy reaches the others it is closest to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, text

from api.db.catalog import Catalog

VectorKind = Literal["mobilenet", "clip"]

COLUMNS: dict[VectorKind, tuple[str, str, str]] = {
    "mobilenet": ("fallback_embedding", "fallback_model", "fallback_index"),
    "clip": ("image_embedding", "image_model", "image_index"),
}
"""Vector column, the column naming the model that made it, and the Catalog property of its index."""


@dataclass(frozen=True)
class Neighbour:
    a: Any
    """Key of the product whose neighbours were asked for."""
    b: Any
    """Key of a product within the distance of ``a``."""
    distance: float
    """Cosine distance (``<=>``): 0 for identical vectors."""


def _scope(catalog: Catalog, kind: VectorKind, category: bool) -> str:
    """Rows the finder looks at: a current vector of this model, visible, in the category if given."""
    column, model_column, _ = COLUMNS[kind]
    where = [f"{column} IS NOT NULL", f"{model_column} = :model", catalog.visible_sql]
    if category:
        where.append(f"{catalog.field_sql('category')} = :category")
    return " AND ".join(where)


def count_vectors(
    conn: Connection, catalog: Catalog, kind: VectorKind, model: str, category: str | None = None
) -> int:
    """How many products the walk will visit (the progress bar's total)."""
    sql = f"SELECT count(*) FROM {catalog.qualified} WHERE {_scope(catalog, kind, category is not None)}"
    return int(conn.execute(text(sql), {"model": model, "category": category}).scalar_one())


def batch_keys(
    conn: Connection,
    catalog: Catalog,
    kind: VectorKind,
    model: str,
    *,
    after: Any,
    size: int,
    category: str | None = None,
) -> list[Any]:
    """The next ``size`` keys of the walk, in key order, after ``after`` (None: from the start)."""
    scope = _scope(catalog, kind, category is not None)
    resume = "" if after is None else f" AND {catalog.key_sql} > :after"
    sql = (
        f"SELECT {catalog.key_sql} FROM {catalog.qualified} WHERE {scope}{resume} "
        f"ORDER BY {catalog.key_sql} LIMIT :size"
    )
    params = {"model": model, "category": category, "after": after, "size": size}
    return [row[0] for row in conn.execute(text(sql), params)]


def neighbours_sql(catalog: Catalog, kind: VectorKind, category: bool) -> str:
    """The batch statement of :func:`neighbours_within` (parameters: model, category, first, last,
    k, max_distance). The inner query is a plain ``ORDER BY <vector> <=> q.v LIMIT k``, exactly the
    shape pgvector answers from the HNSW index (or a category's partial index); the distance cut
    applies to the k found, so it never turns the index scan into a filtered one."""
    column, _, _ = COLUMNS[kind]
    scope = _scope(catalog, kind, category)
    key = catalog.key_sql
    return f"""
        SELECT q.k AS a, n.k AS b, n.distance
        FROM (
            SELECT {key} AS k, {column} AS v FROM {catalog.qualified}
            WHERE {scope} AND {key} >= :first AND {key} <= :last
        ) AS q
        CROSS JOIN LATERAL (
            SELECT {key} AS k, {column} <=> q.v AS distance
            FROM {catalog.qualified}
            WHERE {scope}
            ORDER BY {column} <=> q.v
            LIMIT :k
        ) AS n
        WHERE n.k <> q.k AND n.distance <= :max_distance
    """


def neighbours_within(
    conn: Connection,
    catalog: Catalog,
    kind: VectorKind,
    model: str,
    *,
    first: Any,
    last: Any,
    k: int,
    max_distance: float,
    category: str | None = None,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """For every product with key in [first, last], its up to ``k`` nearest others within the distance.

    Runs in its own transaction so ``SET LOCAL`` of the HNSW search width stays with it.
    """
    params = {
        "model": model,
        "category": category,
        "first": first,
        "last": last,
        "k": k + 1,  # the product itself is normally its own nearest neighbour
        "max_distance": max_distance,
    }
    with conn.begin():
        if ef_search is not None:
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
        rows = conn.execute(text(neighbours_sql(catalog, kind, category is not None)), params).all()
    return [Neighbour(row.a, row.b, float(row.distance)) for row in rows]


def listings(conn: Connection, catalog: Catalog, keys: Sequence[Any]) -> dict[Any, dict[str, Any]]:
    """What a report shows of each product in a cluster: key, sku, name, category, image_url, url."""
    if not keys:
        return {}
    fields = ", ".join(
        f"{catalog.field_sql(name)} AS {name}" for name in ("sku", "name", "category", "image_url", "url")
    )
    found: dict[Any, dict[str, Any]] = {}
    chunk = 1000
    for start in range(0, len(keys), chunk):
        part = list(keys[start : start + chunk])
        # One parameter per key: the key may be an integer, text or uuid column, and a typed
        # array parameter would have to guess which.
        names = [f"k{i}" for i in range(len(part))]
        in_list = ", ".join(f":{name}" for name in names)
        sql = (
            f"SELECT {catalog.key_sql} AS key, {fields} FROM {catalog.qualified} "
            f"WHERE {catalog.key_sql} IN ({in_list})"
        )
        for row in conn.execute(text(sql), dict(zip(names, part, strict=True))).mappings():
            found[row["key"]] = dict(row)
    return found
