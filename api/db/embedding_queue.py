"""The embedding work queue is the catalog table itself: SQL that finds, claims and finishes work.

A row needs work when its image source changed since it was last embedded (``embed_source`` is
not the row's image source -- the ``image_url`` field, a column or a mapped expression: new rows, edited URLs, rows reset by ingest or ``--retry-failed``), or when a
vector is missing or was made by another model than the configured one. Rows whose last attempt
failed are left alone until their source changes, so a dead URL is not downloaded forever.

Claims take new and changed rows first, through a partial index that holds only them (migration
0006), and only then look for rows whose vectors are missing or stale (a model switch), which
needs a walk over the table in id order. The walk resumes after the last stale row the caller
claimed (``stale_after``), so re-embedding a catalog walks it once, not once per batch.

Claims are row locks (``FOR UPDATE SKIP LOCKED``) held by the claiming transaction while the
batch is fetched and encoded. Concurrent workers skip each other's rows, and a worker that dies
loses its connection, so PostgreSQL rolls back and releases its rows at once: no lease to expire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text

from api.db.binary_vector import binary_or_none
from api.db.catalog import Catalog
from api.db.products import Embeddings

# A hung worker (not a dead one: that is released at once) gives its rows back after this long.
CLAIM_IDLE_TIMEOUT = "15min"

CLIP_CURRENT = "(image_embedding IS NOT NULL AND image_model IS NOT DISTINCT FROM :clip)"
"""The one spelling of "this row's CLIP vector is current": present and made by model ``:clip``."""
FALLBACK_CURRENT = "(fallback_embedding IS NOT NULL AND fallback_model IS NOT DISTINCT FROM :fb)"
"""Likewise for the MobileNetV2 vector and model ``:fb``."""


@dataclass(frozen=True)
class WantedModels:
    """The model ids vectors must carry to count as current; None: that model is down, don't ask for it."""

    clip: str | None
    fallback: str | None


@dataclass(frozen=True)
class ClaimedRow:
    id: Any
    """The catalog's key, of whatever type the table uses (integer, text, uuid)."""
    sku: str
    image_url: str
    image_sha256: str | None
    clip_current: bool
    fallback_current: bool
    stale: bool
    """Claimed for a missing or out-of-date vector, not for a new or changed source."""


def _stale(catalog: Catalog, models: WantedModels) -> str | None:
    """Rows with the current source whose vector for a wanted model is missing or out of date."""
    stale = []
    if models.clip is not None:
        stale.append(f"NOT {CLIP_CURRENT}")
    if models.fallback is not None:
        stale.append(f"NOT {FALLBACK_CURRENT}")
    if not stale:
        return None
    source = catalog.image_source_sql
    return (
        f"{source} IS NOT NULL AND embed_source IS NOT DISTINCT FROM {source} "
        f"AND embed_error IS NULL AND ({' OR '.join(stale)})"
    )


def _needs_work(catalog: Catalog, models: WantedModels) -> str:
    stale = _stale(catalog, models)
    return f"({catalog.new_or_changed_sql})" + (f" OR ({stale})" if stale else "")


def _params(models: WantedModels) -> dict[str, Any]:
    return {"clip": models.clip, "fb": models.fallback}


def pending_count(conn: Connection, catalog: Catalog, models: WantedModels) -> int:
    """How many rows the worker would still claim (locked rows included): progress and ETA."""
    sql = f"SELECT count(*) FROM {catalog.qualified} WHERE {_needs_work(catalog, models)}"
    return int(conn.execute(text(sql), _params(models)).scalar() or 0)


def claim_batch(
    conn: Connection, catalog: Catalog, models: WantedModels, limit: int, *, stale_after: Any = None
) -> list[ClaimedRow]:
    """Lock up to ``limit`` rows that need work and nobody else holds; call inside a transaction.

    Stale rows are looked for only past key ``stale_after``: a worker passes the highest key of
    the stale rows it claimed so far in this round (None: from the start). One it passed and that
    needs work again (a batch rolled back by an error) is found by the next round.

    The locks last until that transaction ends, so write the results on the same connection
    before committing. EvalPlanQual re-checks the WHERE clause on rows another worker just
    finished, so a row embedded a moment ago is not claimed again.
    """
    conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{CLAIM_IDLE_TIMEOUT}'"))
    rows = [_row(r, stale=False) for r in _claim(conn, catalog, models, catalog.new_or_changed_sql, limit)]
    stale = _stale(catalog, models)
    if len(rows) < limit and stale is not None:  # the two kinds never overlap: no row twice
        if stale_after is not None:
            # Bound as the value the database gave us, so it compares as the key's own type.
            stale = f"{catalog.key_sql} > :after AND {stale}"
        found = _claim(conn, catalog, models, stale, limit - len(rows), stale_after)
        rows += [_row(r, stale=True) for r in found]
    return rows


def _row(r: Any, *, stale: bool) -> ClaimedRow:
    return ClaimedRow(
        r.id,
        str(r.sku),
        str(r.image_url),
        r.image_sha256,
        bool(r.clip_current),
        bool(r.fallback_current),
        stale,
    )


def _claim(
    conn: Connection, catalog: Catalog, models: WantedModels, where: str, limit: int, after: Any = None
) -> list[Any]:
    sql = f"""
        SELECT {catalog.key_sql} AS id, {catalog.field_sql("sku")} AS sku,
               {catalog.image_source_sql} AS image_url, image_sha256,
               {CLIP_CURRENT} AS clip_current, {FALLBACK_CURRENT} AS fallback_current
        FROM {catalog.qualified}
        WHERE {where}
        ORDER BY {catalog.key_sql}
        LIMIT :limit
        FOR UPDATE OF "{catalog.table}" SKIP LOCKED
    """
    params = {**_params(models), "limit": limit}
    if after is not None:
        params["after"] = after
    return list(conn.execute(text(sql), params).all())


@dataclass(frozen=True)
class Embedded:
    """A row's new vectors: the one input of the one embedding write (worker, ingest, product API)."""

    id: Any
    source: str | None
    """The image source these vectors describe; None: the row's own source as stored now."""
    embeddings: Embeddings
    """A vector left None keeps the stored one if the image is the same, else stores none."""


def write_embedded(conn: Connection, catalog: Catalog, rows: Sequence[Embedded]) -> None:
    """One executemany for the batch. A model that was down keeps the old vector only when the
    image is unchanged; for a changed image a missing vector is stored as missing (the old one
    would describe the wrong picture)."""
    if not rows:
        return
    same = "image_sha256 IS NOT DISTINCT FROM CAST(:sha AS text)"
    statement = text(
        f"""
        UPDATE {catalog.qualified} SET
            image_embedding = CASE WHEN CAST(:clip_model AS text) IS NULL AND {same} THEN image_embedding
                                   ELSE CAST(:clip AS vector({catalog.clip_dim})) END,
            image_model = CASE WHEN CAST(:clip_model AS text) IS NULL AND {same} THEN image_model ELSE :clip_model END,
            fallback_embedding = CASE WHEN CAST(:fb_model AS text) IS NULL AND {same} THEN fallback_embedding
                                      ELSE CAST(:fb AS vector({catalog.fallback_dim})) END,
            fallback_model = CASE WHEN CAST(:fb_model AS text) IS NULL AND {same} THEN fallback_model ELSE :fb_model END,
            image_sha256 = :sha, embed_source = coalesce(CAST(:source AS text), {catalog.image_source_sql}),
            embedded_at = now(), embed_error = NULL
        WHERE {catalog.key_sql} = :id
        """
    )  # vectors in binary (api.db.binary_vector): as text they were most of a write's cost
    conn.execute(
        statement,
        [
            {
                "id": r.id,
                "source": r.source,
                "sha": r.embeddings.image_sha256,
                "clip": binary_or_none(r.embeddings.clip),
                "clip_model": r.embeddings.clip_model,
                "fb": binary_or_none(r.embeddings.fallback),
                "fb_model": r.embeddings.fallback_model,
            }
            for r in rows
        ],
    )


def current_embeddings(
    conn: Connection, catalog: Catalog, sku: str, image_sha256: str, models: WantedModels
) -> Embeddings | None:
    """The row's stored vectors when they already describe this image by the wanted models."""
    t = catalog.sa_table
    row = conn.execute(
        select(t.c.image_embedding, t.c.image_model, t.c.fallback_embedding, t.c.fallback_model)
        .where(
            catalog.field("sku") == sku,
            t.c.image_sha256 == image_sha256,
            text(CLIP_CURRENT),
            text(FALLBACK_CURRENT),
        )
        .limit(1),
        _params(models),
    ).first()
    if row is None:
        return None
    return Embeddings(
        image_sha256, row.image_embedding, row.image_model, row.fallback_embedding, row.fallback_model
    )


def mark_unchanged(conn: Connection, catalog: Catalog, ids_and_sources: Sequence[tuple[Any, str]]) -> None:
    """The image behind the source is the one already embedded by current models: just note the source."""
    if not ids_and_sources:
        return
    conn.execute(
        text(
            f"UPDATE {catalog.qualified} SET embed_source = :source, embed_error = NULL "
            f"WHERE {catalog.key_sql} = :id"
        ),
        [{"id": i, "source": s} for i, s in ids_and_sources],
    )


def mark_failed(
    conn: Connection, catalog: Catalog, failures: Sequence[tuple[Any, str, str, str | None]]
) -> None:
    """(id, source, reason, sha256 of the bytes if any). Old vectors stay so search keeps serving;
    remembering the source stops retries until it changes, the sha lets ingest spot a fixed file."""
    if not failures:
        return
    conn.execute(
        text(
            f"""
            UPDATE {catalog.qualified}
            SET embed_error = :reason, embed_source = :source, embedded_at = now(),
                image_sha256 = coalesce(:sha, image_sha256)
            WHERE {catalog.key_sql} = :id
            """
        ),
        [{"id": i, "source": s, "reason": r, "sha": h} for i, s, r, h in failures],
    )


def reset_sources(
    conn: Connection, catalog: Catalog, *, failed_only: bool, skus: Sequence[str] | None = None
) -> int:
    """Forget the embedded source so the worker fetches these rows again and compares their sha256.

    ``failed_only``: the ``--retry-failed`` case. ``skus``: rows whose local file changed.
    Unchanged images cost a fetch and a hash, never a forward pass.
    """
    where = ["embed_source IS NOT NULL"]
    params: dict[str, Any] = {}
    if failed_only:
        where.append("embed_error IS NOT NULL")
    if skus is not None:
        where.append(f"{catalog.field_sql('sku')} = ANY(:skus)")
        params["skus"] = list(skus)
    sql = f"UPDATE {catalog.qualified} SET embed_source = NULL WHERE {' AND '.join(where)}"
    return int(conn.execute(text(sql), params).rowcount or 0)


def failure_reasons(conn: Connection, catalog: Catalog, limit: int = 10) -> list[tuple[str, int]]:
    """The most common error codes (the text before the first colon), for summaries and stats."""
    rows = conn.execute(
        text(
            f"""
            SELECT split_part(embed_error, ':', 1) AS code, count(*) AS n
            FROM {catalog.qualified} WHERE embed_error IS NOT NULL
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT :limit
            """
        ),
        {"limit": limit},
    ).all()
    return [(str(r.code), int(r.n)) for r in rows]
