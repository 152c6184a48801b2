"""Honest numbers for search results: a match shown relative to the best hit, pages that end where
the matches end, and words that still count when CLIP is down.

A raw cosine means different things per model and per query kind (CLIP photo-to-photo cosines of
unrelated products sit around 0.5, text-to-photo ones around 0.2, MobileNetV2 ones higher still,
random-weight test models near 0.9), so "29% match" from one and "80% match" from another say
nothing. Each vector search therefore measures its own background: the mean similarity of the
query to a fixed sample of the catalog, i.e. what "unrelated" scores for this model and query.
A hit's ``match`` is where it sits between that background (0) and the best hit (1). Hits below
``MATCH_FLOOR`` are not matches: the page stops there and ``next_offset`` is null, so "Load more"
ends when the matches end instead of paging through the whole catalog. The raw ``score`` stays in
every hit for API users, and a request that sets its own ``score_threshold`` gets that floor
instead of this one (``score_threshold: -1`` lists every row under the filters).

Words in CLIP mode (``clip_text``, api.db.search.fused_search) keep the same scale, with two
exceptions: a product whose SKU or name is exactly what was typed shows a full match, and no
product that matched the words is ever cut by the floor or by ``score_threshold`` (its cosine to
the phrase may be low: that is why the words are fused in at all).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from cachetools import TTLCache
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from api.db.catalog import Catalog
from api.db.search import Page, VectorColumn, VectorQuery

MATCH_FLOOR = 0.3
"""Hits whose match (0 = the catalog's background, 1 = the best hit) is below this end the list."""
BACKGROUND_SAMPLE = 256
"""Rows the background is measured on: enough for a stable mean (its spread is ~1/16 of the rows')."""
RERANK_POOL = 200
"""Photo candidates the words re-rank in a fallback hybrid search (each page re-ranks the same pool)."""

CENTROID_TTL_S = 30.0
"""How long a sample's mean vector is reused: the background moves with the catalog's first rows,
slowly, and a stale one only shifts where a list ends by a little."""

RunPage = Callable[[Page], list[dict[str, Any]]]

_centroid_lock = threading.Lock()  # cachetools' caches are not thread-safe
_centroids: TTLCache[tuple[Any, ...], np.ndarray] = TTLCache(
    maxsize=256, ttl=CENTROID_TTL_S, timer=time.monotonic
)


def background(conn: Connection, catalog: Catalog, query: VectorQuery) -> float | None:
    """Mean cosine similarity of the query vector to the first BACKGROUND_SAMPLE embedded rows.

    The rows are the table's first in physical order: arbitrary with respect to any query, the
    same for every page of a search, and read without a sort. The mean of the query's cosines to
    the sample is its unit vector's dot product with the mean of the sample's unit vectors, so only
    that mean is read (once per CENTROID_TTL_S once the sample is full) and a search pays a dot
    product instead of a query over 256 de-TOASTed vectors (docs/benchmarks.md, match floor).
    """
    centroid = _sample_centroid(conn, catalog, query.column, query.model_id)
    vector = np.asarray(query.vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if centroid is None or norm == 0.0:
        return None
    return float(centroid @ vector / norm)


def _sample_centroid(
    conn: Connection, catalog: Catalog, column: VectorColumn, model_id: str | None
) -> np.ndarray | None:
    key = (conn.engine.url, catalog, column, model_id)
    with _centroid_lock:
        cached = _centroids.get(key)
    if cached is not None:
        return cached
    model_column = "image_model" if column is VectorColumn.CLIP else "fallback_model"
    model_clause = f"AND {model_column} = :model" if model_id is not None else ""
    statement = text(
        f"SELECT CAST(avg(l2_normalize(CAST({column.value} AS vector))) AS text), count(*) FROM "
        f"(SELECT {column.value} FROM {catalog.qualified} WHERE {column.value} IS NOT NULL "
        f"{model_clause} LIMIT :n) AS sample"
    )
    params: dict[str, Any] = {"n": BACKGROUND_SAMPLE}
    if model_id is not None:
        params["model"] = model_id
    value, rows = conn.execute(statement, params).one()
    if value is None:
        return None
    centroid = np.asarray(json.loads(value), dtype=np.float64)
    if rows == BACKGROUND_SAMPLE:  # a catalog still filling its sample reads it again each time
        with _centroid_lock:
            _centroids[key] = centroid
    return centroid


def with_matches(
    hits: list[dict[str, Any]], best: float | None, floor_score: float | None, page: Page
) -> tuple[list[dict[str, Any]], bool]:
    """Give every hit its ``match`` and cut the page at MATCH_FLOOR (unless the caller set its own
    score_threshold); True when the list ended here."""
    cut = page.score_threshold is None
    if best is None:
        return hits, False
    ended = False
    kept: list[dict[str, Any]] = []
    for hit in hits:
        match = _match(hit["score"], best, floor_score)
        if cut and _below_floor(match, best, floor_score):
            ended = True
            break
        kept.append({**hit, "match": round(match, 4)})
    return kept, ended or len(hits) < page.top_k


def _match(score: float, best: float, floor_score: float | None) -> float:
    """Where ``score`` sits between the background (0) and the best hit (1), clamped to 0..1."""
    spread = best - floor_score if floor_score is not None else best
    if floor_score is None or spread <= 1e-9:
        match = score / best if best > 0 else 1.0
    else:
        match = (score - floor_score) / spread
    return min(1.0, max(0.0, match))


def _below_floor(match: float, best: float, floor_score: float | None) -> bool:
    """True when a hit is not a match (only measurable when the best hit stands above the background)."""
    return floor_score is not None and best - floor_score > 1e-9 and match < MATCH_FLOOR


FUSION_KEYS = ("exact", "words", "word_matches", "best")
"""What api.db.search.FusedHit adds for this module; not part of a hit the API shows."""


def fused_page(
    conn: Connection, catalog: Catalog, query: VectorQuery, page: Page, hits: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A fused text page (api.db.search.fused_search) with matches, ending where the matches end.

    The scale is the CLIP one: 0 is the phrase's background, 1 the best cosine among the
    candidates (carried by every row, so page 2 needs no extra query). A hit that matched no words
    ends the list when it falls below MATCH_FLOOR or the request's ``score_threshold``, exactly as
    in :func:`vector_page`, so a phrase that matched no words gets the plain CLIP page. A hit that
    matched the words is never cut, and an exact SKU or name shows match 1.
    """
    if not hits:
        return hits
    best = float(hits[0]["best"])
    floor = background(conn, catalog, query)
    out: list[dict[str, Any]] = []
    for hit in hits:
        match = _match(hit["score"], best, floor)
        if not hit["words"]:
            if page.score_threshold is not None and hit["score"] < page.score_threshold:
                break
            if page.score_threshold is None and _below_floor(match, best, floor):
                break
        if hit["exact"] is not None:
            match = 1.0
        shown = {k: v for k, v in hit.items() if k not in FUSION_KEYS}
        out.append({**shown, "match": round(match, 4)})
    return out


def vector_page(
    conn: Connection, catalog: Catalog, query: VectorQuery, page: Page, run: RunPage
) -> list[dict[str, Any]]:
    """One page of a vector search with matches; a page cut short by the floor has fewer rows than
    top_k, which is what tells the API (and "Load more") that the matches ended."""
    hits = run(page)
    if not hits:
        return hits
    best = hits[0]["score"] if page.offset == 0 else None
    if best is None:
        top = run(replace(page, top_k=1, offset=0))
        best = top[0]["score"] if top else hits[0]["score"]
    kept, _ = with_matches(hits, best, background(conn, catalog, query), page)
    return kept


def text_page(hits: list[dict[str, Any]], best: float | None) -> list[dict[str, Any]]:
    """Full-text hits all contain the words: their match is the rank relative to the best one."""
    top = best if best is not None else (hits[0]["score"] if hits else None)
    if not top:
        return [{**hit, "match": 1.0} for hit in hits]
    return [{**hit, "match": round(min(1.0, max(0.0, hit["score"] / top)), 4)} for hit in hits]


def word_ranks(conn: Connection, catalog: Catalog, keys: list[Any], words: str) -> dict[Any, float]:
    """ts_rank_cd of each candidate's text for the shopper's words (0 when they do not match)."""
    if not keys:
        return {}
    tsquery = text(catalog.tsquery_sql(":words")).bindparams(words=words)
    rank = func.ts_rank_cd(catalog.document(), tsquery)
    statement = select(catalog.key_column.label("id"), rank.label("rank")).where(catalog.key_column.in_(keys))
    return {row.id: float(row.rank or 0.0) for row in conn.execute(statement)}


def reranked_page(
    conn: Connection,
    catalog: Catalog,
    query: VectorQuery,
    page: Page,
    words: str,
    alpha: float,
    run: RunPage,
) -> list[dict[str, Any]]:
    """Photo + words when CLIP is down: MobileNetV2's photo candidates re-ranked by the words.

    The same pool (the RERANK_POOL nearest by the photo, under the filters) is re-ranked for every
    page, so pages follow each other. Each candidate's photo similarity and word rank are scaled to
    0..1 within the pool and mixed by the slider: alpha * photo + (1 - alpha) * words. A candidate
    whose text does not mention the words keeps its photo part only, so the words move matching
    products up without hiding the photo's best matches.
    """
    pool_size = max(RERANK_POOL, page.offset + page.top_k)
    pool = run(replace(page, top_k=pool_size, offset=0))
    if not pool:
        return pool
    ranks = word_ranks(conn, catalog, [hit["id"] for hit in pool], words)
    scores = [hit["score"] for hit in pool]
    low, high = min(scores), max(scores)
    top_rank = max(ranks.values(), default=0.0)

    def mixed(hit: dict[str, Any]) -> float:
        photo = (hit["score"] - low) / (high - low) if high > low else 1.0
        word = ranks.get(hit["id"], 0.0) / top_rank if top_rank > 0 else 0.0
        return alpha * photo + (1 - alpha) * word

    ordered = sorted(pool, key=mixed, reverse=True)
    best_mix = mixed(ordered[0]) or 1.0
    floor = background(conn, catalog, query)
    out: list[dict[str, Any]] = []
    for hit in ordered[page.offset : page.offset + page.top_k]:
        photo_match = (hit["score"] - floor) / (high - floor) if floor is not None and high > floor else 1.0
        if page.score_threshold is None and ranks.get(hit["id"], 0.0) <= 0 and photo_match < MATCH_FLOOR:
            break  # neither the words nor the photo make it a match: the list ends here
        out.append({**hit, "match": round(min(1.0, max(0.0, mixed(hit) / best_mix)), 4)})
    return out
