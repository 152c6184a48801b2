"""Search orchestration: decode → cache → encode → one SQL query, with graceful fallback.

The mode ladder is the product's promise: image queries go CLIP → MobileNetV2, text queries
CLIP → PostgreSQL full-text, image+text hybrid → MobileNetV2 on the image. A text query served
by CLIP is fused with the words' own ranking (exact SKU, exact name, then reciprocal rank fusion;
api.db.search.fused_search) and answers ``clip_text`` when any product matched the words, ``clip``
when none did (the result is then CLIP's ranking unchanged). Each response names the mode that
served it and why it fell back. Result keys carry the catalog version, so no
result survives a catalog change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy.engine import Connection

from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.search import (
    Filters,
    FusedQuery,
    Hit,
    Page,
    TextQuery,
    VectorColumn,
    VectorQuery,
    fused_search,
    search,
    stored_vector,
)
from api.errors import ConflictError, NotFoundError, ProductNotFoundError
from api.services import relevance
from api.services.cache import Cache
from api.services.catalog_version import CatalogVersion
from api.services.embedding import sha256_hex
from api.services.encoders import EncoderHub, stored_model_id
from api.services.metrics import Metrics, StageTimer
from api.settings import Settings
from encoder.errors import EncoderUnavailableError
from encoder.images import decode_image

CACHE_PREFIX = "lookalike:v1"


class Mode(StrEnum):
    CLIP = "clip"
    CLIP_TEXT = "clip_text"
    """Words in CLIP mode, fused with the products whose SKU, name or text matched them."""
    HYBRID = "hybrid"
    MOBILENET = "mobilenet_fallback"
    FULLTEXT = "fulltext_fallback"


class NothingCanServeError(Exception):
    """No encoder or index can answer this query (e.g. CLIP down and MobileNet down for an image)."""


class QueryImage:
    """The query photo: hashed up front (cache keys), decoded only when a model must see it,
    so a cached repeat never pays for JPEG decoding. Bytes that fail to decode never produce a
    result or an embedding, so they can never be answered from the cache either."""

    def __init__(self, data: bytes, max_pixels: int, decode_size: int, timer: StageTimer) -> None:
        self.data = data
        self.sha = sha256_hex(data)
        self._max_pixels = max_pixels
        self._decode_size = decode_size
        self._timer = timer
        self._image: Image.Image | None = None

    def decoded(self) -> Image.Image:
        if self._image is None:
            with self._timer.stage("decode"):
                self._image = decode_image(
                    self.data, max_pixels=self._max_pixels, target_size=self._decode_size
                )
        return self._image


class SeenImage(QueryImage):
    """A query photo named only by its sha256 (a shared search link): served from the cached
    results and query embeddings of that photo while the server still has them, never stored."""

    def __init__(self, sha: str) -> None:
        self.data = b""
        self.sha = sha
        self._image = None

    def decoded(self) -> Image.Image:
        raise NotFoundError(
            "this server no longer has the photo with that sha256 (query photos are not kept); send the image",
            "photo_not_available",
        )


@dataclass(frozen=True)
class SearchQuery:
    image: bytes | None
    text: str | None
    alpha: float
    filters: Filters
    page: Page
    image_sha256: str | None = None


@dataclass
class SearchResult:
    mode: Mode
    hits: list[dict[str, Any]]
    cached: bool
    timing: dict[str, float]
    fallback_reason: str | None = None
    words_used: str | None = None
    """How the words of a photo + words search were used (None without words or without a photo)."""


def hit_to_dict(hit: Hit) -> dict[str, Any]:
    data = asdict(hit)
    if data["variants"] is None:  # only grouped catalogs (LOOKALIKE_FIELD_GROUP) say it
        del data["variants"]
    data["price"] = float(hit.price) if isinstance(hit.price, Decimal) else hit.price
    data["score"] = float(hit.score)
    return data


class SearchService:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        catalog: Catalog,
        hub: EncoderHub,
        cache: Cache,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.database = database
        self.catalog = catalog
        self.hub = hub
        self.cache = cache
        self.metrics = metrics
        self.catalog_version = CatalogVersion(database, catalog)

    # --- public ------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> SearchResult:
        timer = StageTimer()
        image = None
        if query.image is not None:
            image = QueryImage(query.image, self.settings.max_image_pixels, self.hub.decode_size, timer)
        elif query.image_sha256 is not None:
            image = SeenImage(query.image_sha256)
        text = query.text.strip() if query.text else None
        if image is not None and text:
            ladder = [Mode.HYBRID, Mode.MOBILENET]
        elif image is not None:
            ladder = [Mode.CLIP, Mode.MOBILENET]
        else:
            ladder = [Mode.CLIP, Mode.FULLTEXT]

        with timer.stage("cache"):
            version = self.catalog_version.current()
        reasons: list[str] = []
        for mode in ladder:
            # Words alone in CLIP mode: fused with the lexical ranking, which also decides the mode
            # the response names (cached with the hits, under a key of its own).
            fused = mode is Mode.CLIP and image is None and bool(text)
            try:
                model_id = self._model_id(mode)
                key = self._result_key(
                    Mode.CLIP_TEXT if fused else mode,
                    model_id,
                    image.sha if image else None,
                    text,
                    query,
                    version,
                )
                with timer.stage("cache"):
                    cached = self.cache.get(key)
                if cached is not None:
                    payload = json.loads(cached)
                    if fused:
                        served, payload = Mode(payload["mode"]), payload["hits"]
                    else:
                        served = mode
                    return self._words_used(self._finish(served, payload, True, timer, reasons), text)
                vector_query = self._vector_query(mode, model_id, query, image, text, timer)
            except EncoderUnavailableError as exc:
                reasons.append(f"{mode.value}: {exc}")
                continue
            served = mode
            with timer.stage("search"), self.database.read() as conn:
                if fused and isinstance(vector_query, VectorQuery) and text:
                    hits, served = self._fused(conn, vector_query, query, text)
                else:
                    hits = self._ranked(conn, mode, vector_query, query.filters, query, text)
            with timer.stage("cache"):
                stored: Any = {"mode": served.value, "hits": hits} if fused else hits
                self.cache.set(key, json.dumps(stored).encode(), self.settings.cache_ttl_s)
            return self._words_used(self._finish(served, hits, False, timer, reasons), text)
        raise NothingCanServeError("; ".join(reasons))

    def similar(self, sku: str, filters: Filters, page: Page) -> SearchResult:
        """ "More like this" from the stored vectors: no encoding at all."""
        timer = StageTimer()
        with timer.stage("cache"):
            version = self.catalog_version.current()
        key = self._key(
            "similar",
            sku,
            self.hub.clip_model_id,
            json.dumps(_filters_key(filters)),
            page.top_k,
            page.offset,
            page.score_threshold,
            self.settings.field_group,
            version,
        )
        with timer.stage("cache"):
            cached = self.cache.get(key)
        if cached is not None:
            payload = json.loads(cached)
            return self._finish(Mode(payload["mode"]), payload["hits"], True, timer, [])
        with timer.stage("search"), self.database.read() as conn:
            vectors = stored_vector(conn, self.catalog, sku)
            if vectors is None:
                raise ProductNotFoundError(sku)
            clip_vector, fallback_vector, clip_model = vectors
            if clip_vector is not None and clip_model == self.hub.clip_model_id:
                mode = Mode.CLIP
                vq = VectorQuery(VectorColumn.CLIP, np.asarray(clip_vector), self.hub.clip_model_id, sku)
            elif fallback_vector is not None:
                mode = Mode.MOBILENET
                vq = VectorQuery(
                    VectorColumn.FALLBACK, np.asarray(fallback_vector), self.hub.mobilenet_model_id, sku
                )
            else:
                raise ConflictError(f"product {sku!r} has no image embedding yet", "not_embedded")
            hits = self._ranked(conn, mode, vq, filters, SearchQuery(None, None, 1.0, filters, page), None)
        with timer.stage("cache"):
            payload = json.dumps({"mode": mode.value, "hits": hits}).encode()
            self.cache.set(key, payload, self.settings.cache_ttl_s)
        return self._finish(mode, hits, False, timer, [])

    # --- steps -------------------------------------------------------------------------

    def _ranked(
        self,
        conn: Connection,
        mode: Mode,
        vector_query: VectorQuery | TextQuery,
        filters: Filters,
        query: SearchQuery,
        text: str | None,
    ) -> list[dict[str, Any]]:
        """One page with honest matches, cut where the matches end (api.services.relevance); in a
        fallback photo + words search the words re-rank the photo's candidates."""

        def run(page: Page) -> list[dict[str, Any]]:
            return [
                hit_to_dict(h) for h in search(conn, self.catalog, vector_query, filters, self._page(page))
            ]

        if isinstance(vector_query, TextQuery):
            hits = run(query.page)
            best = None
            if hits and query.page.offset > 0:
                top = run(replace(query.page, top_k=1, offset=0))
                best = top[0]["score"] if top else None
            return relevance.text_page(hits, best)
        if mode is Mode.MOBILENET and text:
            return relevance.reranked_page(
                conn, self.catalog, vector_query, query.page, text, query.alpha, run
            )
        return relevance.vector_page(conn, self.catalog, vector_query, query.page, run)

    def _fused(
        self, conn: Connection, vector_query: VectorQuery, query: SearchQuery, text: str
    ) -> tuple[list[dict[str, Any]], Mode]:
        """A text page in CLIP mode fused with the words; ``clip_text`` only when some product
        matched the words, so a purely visual phrase answers ``clip`` with CLIP's own ranking."""
        found = fused_search(
            conn, self.catalog, FusedQuery(vector_query, text), query.filters, self._page(query.page)
        )
        hits = [hit_to_dict(hit) for hit in found]
        served = Mode.CLIP_TEXT if found and found[0].word_matches > 0 else Mode.CLIP
        return relevance.fused_page(conn, self.catalog, vector_query, query.page, hits), served

    @staticmethod
    def _words_used(result: SearchResult, text: str | None) -> SearchResult:
        """Say how the words shaped a photo + words search (the response's ``words_used``)."""
        if text and result.mode is Mode.HYBRID:
            result.words_used = "blended with the photo by CLIP"
        elif text and result.mode is Mode.MOBILENET:
            result.words_used = "re-ranked the visually similar items by their product text"
        return result

    def _page(self, page: Page) -> Page:
        """The page with the catalog's grouping (``LOOKALIKE_FIELD_GROUP``): one card per product."""
        return replace(page, group=self.settings.field_group)

    def _finish(
        self, mode: Mode, hits: list[dict[str, Any]], cached: bool, timer: StageTimer, reasons: list[str]
    ) -> SearchResult:
        timing = timer.report()
        self.metrics.record(mode.value, timing, cached, reasons)
        return SearchResult(mode, hits, cached, timing, "; ".join(reasons) or None)

    def _model_id(self, mode: Mode) -> str:
        """The model a mode depends on; raises EncoderUnavailableError when it is down."""
        if mode in (Mode.CLIP, Mode.HYBRID):
            return stored_model_id(self.hub.clip())
        if mode is Mode.MOBILENET:
            return stored_model_id(self.hub.mobilenet())
        return "fulltext"

    def _vector_query(
        self,
        mode: Mode,
        model_id: str,
        query: SearchQuery,
        image: QueryImage | None,
        text: str | None,
        timer: StageTimer,
    ) -> VectorQuery | TextQuery:
        if mode is Mode.FULLTEXT:
            assert text is not None
            return TextQuery(text)
        if mode is Mode.MOBILENET:
            assert image is not None
            vector = self._image_vector(self.hub.mobilenet(), model_id, image, timer)
            return VectorQuery(VectorColumn.FALLBACK, vector, model_id)
        clip = self.hub.clip()
        parts: list[np.ndarray] = []
        weights: list[float] = []
        if image is not None:
            parts.append(self._image_vector(clip, model_id, image, timer))
            weights.append(query.alpha if text else 1.0)
        if text:
            with timer.stage("encode"):
                parts.append(self._text_vector(clip, model_id, text))
            weights.append(1.0 - query.alpha if image is not None else 1.0)
        vector = sum(w * p for w, p in zip(weights, parts, strict=True))
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            vector = vector / norm
        return VectorQuery(VectorColumn.CLIP, np.asarray(vector, dtype=np.float32), model_id)

    def _image_vector(self, encoder: Any, model_id: str, image: QueryImage, timer: StageTimer) -> np.ndarray:
        def compute() -> np.ndarray:
            pixels = image.decoded()  # also validates: a bad upload is a 4xx, never an encoder failure
            with timer.stage("encode"):
                return encoder.encode_uploads([image.data], [pixels])[0]

        return self._cached_vector(self._key("emb", model_id, "img", image.sha), compute)

    def _text_vector(self, encoder: Any, model_id: str, text: str) -> np.ndarray:
        key = self._key(
            "emb", model_id, "txt", hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        )
        return self._cached_vector(key, lambda: encoder.encode_texts([text])[0])

    def _cached_vector(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Query embeddings by content hash: a repeated photo or phrase skips the model."""
        cached = self.cache.get(key)
        if cached is not None:
            return np.frombuffer(cached, dtype=np.float32)
        vector = np.asarray(compute(), dtype=np.float32)
        self.cache.set(key, vector.tobytes(), self.settings.cache_ttl_s)
        return vector

    def _result_key(
        self,
        mode: Mode,
        model_id: str,
        image_sha: str | None,
        text: str | None,
        query: SearchQuery,
        version: int,
    ) -> str:
        return self._key(
            "result",
            mode.value,
            model_id,
            image_sha,
            hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).hexdigest(),
            query.alpha if mode is Mode.HYBRID or (mode is Mode.MOBILENET and text) else None,
            json.dumps(_filters_key(query.filters)),
            query.page.top_k,
            query.page.offset,
            query.page.score_threshold,
            self.settings.field_group,
            self.catalog.qualified,
            version,
        )

    def _key(self, *parts: object) -> str:
        # surrogatepass: a key must exist for any str (an unpaired surrogate made this a 500).
        digest = hashlib.sha256(
            "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
        ).hexdigest()
        return f"{CACHE_PREFIX}:{parts[0]}:{digest}"


def _filters_key(filters: Filters) -> dict[str, Any]:
    return {
        "categories": sorted(filters.categories),
        "price_min": str(filters.price_min) if filters.price_min is not None else None,
        "price_max": str(filters.price_max) if filters.price_max is not None else None,
        "attributes": json.dumps(filters.attributes, sort_keys=True),
    }
