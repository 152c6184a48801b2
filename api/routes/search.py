"""Search endpoints: JSON, multipart upload (for ``curl -F``), and "more like this"."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, ValidationError

from api.db.search import Filters, Page
from api.errors import RequestError
from api.input_checks import check_text
from api.schemas import CropBox, Price, SearchFilters, SearchRequest, SearchResponse
from api.services.images.decode import crop_image, decode_base64_image, read_upload
from api.services.images.download import image_from_url
from api.services.search import SearchQuery, SearchResult
from api.state import AppState, app_state

router = APIRouter(tags=["search"])


def to_filters(filters: SearchFilters) -> Filters:
    return Filters(
        categories=filters.categories(),
        price_min=filters.price_min,
        price_max=filters.price_max,
        attributes=filters.attributes or {},
    )


def to_response(result: SearchResult, page: Page) -> JSONResponse:
    """Built by hand and returned as a Response: the shape is SearchResponse (what /docs shows),
    but re-validating every hit through pydantic cost more than the cached search itself."""
    results = [{**hit, "similarity": round(hit["score"] * 100, 2)} for hit in result.hits]
    full_page = len(results) == page.top_k
    return JSONResponse(
        {
            "mode": result.mode.value,
            "cached": result.cached,
            "fallback_reason": result.fallback_reason,
            "words_used": result.words_used,
            "timing": result.timing,
            "count": len(results),
            "top_k": page.top_k,
            "offset": page.offset,
            "next_offset": page.offset + page.top_k if full_page else None,
            "results": results,
        }
    )


@router.post("/api/v1/search", response_model=SearchResponse)
def search(body: SearchRequest, state: AppState = Depends(app_state)) -> JSONResponse:
    image = None
    if body.image is not None:
        image = decode_base64_image(body.image, state.settings.max_upload_bytes)
    elif body.image_url is not None:
        image = image_from_url(body.image_url, state.settings)
    if image is not None and body.crop is not None:
        image = crop_image(image, body.crop, state.settings.max_image_pixels)
    page = Page(body.top_k, body.offset, body.score_threshold)
    query = SearchQuery(image, body.text, body.alpha, to_filters(body.filters), page, body.image_sha256)
    return to_response(state.search.search(query), page)


def _form_filters(
    category: list[str] | None, price_min: str | None, price_max: str | None, attributes: str | None
) -> SearchFilters:
    try:
        parsed_attributes = json.loads(attributes) if attributes else None
    except json.JSONDecodeError as exc:
        raise RequestError(422, "invalid_request", f"attributes: not valid JSON ({exc.msg})") from exc
    if parsed_attributes is not None and not isinstance(parsed_attributes, dict):
        raise RequestError(422, "invalid_request", "attributes: must be a JSON object")
    try:
        return SearchFilters(
            category=category or None,
            price_min=Decimal(price_min) if price_min else None,
            price_max=Decimal(price_max) if price_max else None,
            attributes=parsed_attributes,
        )
    except InvalidOperation as exc:
        raise RequestError(422, "invalid_request", "price_min/price_max: not a number") from exc


def _form_crop(crop: str | None) -> CropBox | None:
    if not crop:
        return None
    try:
        return CropBox.model_validate_json(crop)
    except ValidationError as exc:
        raise RequestError(422, "invalid_request", f"crop: {exc.errors()[0]['msg']}") from exc


@router.post("/api/v1/search/image", response_model=SearchResponse)
async def search_image(
    file: Annotated[UploadFile, File(description="the query image")],
    text: Annotated[str | None, Form(max_length=512), AfterValidator(check_text)] = None,
    alpha: Annotated[float, Form(ge=0, le=1)] = 0.5,
    top_k: Annotated[int, Form(ge=1, le=100)] = 12,
    offset: Annotated[int, Form(ge=0, le=10_000)] = 0,
    score_threshold: Annotated[float | None, Form(ge=-1, le=1)] = None,
    category: Annotated[list[str] | None, Form()] = None,
    price_min: Annotated[str | None, Form()] = None,
    price_max: Annotated[str | None, Form()] = None,
    attributes: Annotated[str | None, Form(description='JSON object, e.g. {"color": "red"}')] = None,
    crop: Annotated[
        str | None,
        Form(description='JSON box in image pixels, e.g. {"x": 0, "y": 0, "width": 200, "height": 300}'),
    ] = None,
    state: AppState = Depends(app_state),
) -> JSONResponse:
    image = await read_upload(file, state.settings.max_upload_bytes)
    box = _form_crop(crop)
    if box is not None:
        image = await run_in_threadpool(crop_image, image, box, state.settings.max_image_pixels)
    filters = _form_filters(category, price_min, price_max, attributes)
    page = Page(top_k, offset, score_threshold)
    query = SearchQuery(image, text, alpha, to_filters(filters), page)
    result = await run_in_threadpool(state.search.search, query)
    return to_response(result, page)


@router.get("/api/v1/products/{sku:path}/similar", response_model=SearchResponse)
def similar(
    sku: str,
    top_k: Annotated[int, Query(ge=1, le=100)] = 12,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    category: Annotated[list[str] | None, Query()] = None,
    price_min: Annotated[Price | None, Query()] = None,
    price_max: Annotated[Price | None, Query()] = None,
    state: AppState = Depends(app_state),
) -> JSONResponse:
    filters = SearchFilters(category=category or None, price_min=price_min, price_max=price_max)
    page = Page(top_k, offset)
    return to_response(state.search.similar(sku, to_filters(filters), page), page)
