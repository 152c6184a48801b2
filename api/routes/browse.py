"""Browse: the catalog's products without a query (a category click), public and paginated."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.db.browse import BadCursorError, Sort, browse
from api.db.catalog import Listing
from api.errors import RequestError
from api.routes.search import _form_filters, to_filters
from api.state import AppState, app_state

router = APIRouter(tags=["products"])


def listing_json(product: Listing) -> dict[str, Any]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "price": float(product.price) if isinstance(product.price, Decimal) else product.price,
        "currency": product.currency,
        "attributes": product.attributes,
        "image_url": product.image_url,
        "url": product.url,
    }


@router.get("/api/v1/products")
async def browse_products(
    category: Annotated[list[str] | None, Query(description="one or more categories")] = None,
    price_min: Annotated[str | None, Query()] = None,
    price_max: Annotated[str | None, Query()] = None,
    attributes: Annotated[str | None, Query(description='JSON object, e.g. {"color": "red"}')] = None,
    sort: Annotated[Sort, Query(description="name (A-Z), price (low first) or -price")] = Sort.NAME,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
    state: AppState = Depends(app_state),
) -> JSONResponse:
    """Products under the filters, in `sort` order, `limit` at a time. `total` (first page only)
    counts every product the filters keep; `next_cursor` is null on the last page. Hidden rows of
    an attached shop catalog (its visibility rule) never appear."""
    filters = to_filters(_form_filters(category, price_min, price_max, attributes))

    def read() -> Any:
        with state.database.read() as conn:
            return browse(conn, state.catalog, filters, sort, limit, cursor)

    try:
        page = await run_in_threadpool(read)
    except BadCursorError as exc:
        raise RequestError(422, "invalid_cursor", str(exc)) from exc
    results = [listing_json(p) for p in page.products]
    return JSONResponse(
        {
            "results": results,
            "count": len(results),
            "total": page.total,
            "sort": sort.value,
            "next_cursor": page.next_cursor,
        }
    )
