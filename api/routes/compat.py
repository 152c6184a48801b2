"""``POST /api/image-search/find-similar``: the contract many shop front-ends already call.

A thin adapter over the v1 search: camelCase in, the legacy envelope out.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends

from api.db.search import Filters, Page
from api.schemas import FindSimilarRequest
from api.services.images.decode import decode_base64_image
from api.services.search import SearchQuery
from api.state import AppState, app_state

router = APIRouter(tags=["compatibility"])


def slugify(name: str | None, sku: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")
    return f"{base}-{sku.lower()}" if base else sku.lower()


@router.post("/api/image-search/find-similar")
def find_similar(body: FindSimilarRequest, state: AppState = Depends(app_state)) -> dict[str, Any]:
    image = decode_base64_image(body.image, state.settings.max_upload_bytes)
    page = Page(body.top_k, 0, body.score_threshold)
    result = state.search.search(SearchQuery(image, None, 0.5, Filters(), page))
    data = [
        {
            "variantId": hit["sku"],
            "productId": hit["id"],
            "score": hit["score"],
            "similarity": round(hit["score"] * 100, 1),
            "productName": hit["name"],
            "price": hit["price"],
            "currency": hit["currency"],
            "category": hit["category"],
            "mainImage": hit["image_url"],
            "urlSlug": slugify(hit["name"], hit["sku"]),
        }
        for hit in result.hits
    ]
    timing = result.timing
    return {
        "success": True,
        "data": data,
        "count": len(data),
        "cached": result.cached,
        "mode": result.mode.value,
        "timing": {
            "cacheCheck": timing.get("cache", 0.0),
            "clipEncode": timing.get("encode", 0.0),
            "vectorSearch": timing.get("search", 0.0),
            "total": timing["total"],
        },
    }
