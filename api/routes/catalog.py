"""Public catalog facts the UI needs (categories for filters), stats for admins, and product images."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from api.db.catalog_objects import accent_folding
from api.db.products import categories
from api.db.stats import embedding_stats
from api.errors import RequestError
from api.input_checks import resolve_under
from api.routes.auth import require_admin
from api.services.ingest.worker import embedding_worker_stats
from api.state import AppState, app_state

router = APIRouter(tags=["catalog"])


@router.get("/api/v1/categories")
def list_categories(state: AppState = Depends(app_state)) -> dict[str, Any]:
    with state.database.read() as conn:  # a shopper read: a replica when there are some
        rows = categories(conn, state.catalog)
    return {"categories": [{"name": name, "count": count} for name, count in rows]}


@router.get("/api/v1/stats", dependencies=[Depends(require_admin)])
def stats(request: Request, state: AppState = Depends(app_state)) -> dict[str, Any]:
    with state.database.connect() as conn:
        catalog = embedding_stats(conn, state.catalog, state.hub.clip_model_id, state.hub.mobilenet_model_id)
        folding = accent_folding(conn, state.catalog)
    cache = state.cache
    lookups = cache.hits + cache.misses
    return {
        **catalog,
        "catalog": {
            "table": state.catalog.qualified,
            # Where products are edited: the admin page says so instead of offering an upload form.
            "managed_by": "shop" if state.catalog.attached else "lookalike",
            "mapped_fields": sorted(state.catalog.mapped),
            "visible_where": state.catalog.visible_where,
            "text_language": state.catalog.text_language,
            "accent_folding": folding,
        },
        "cache": {
            **cache.health(),
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_rate": round(cache.hits / lookups, 4) if lookups else None,
        },
        "ingest": embedding_worker_stats(getattr(request.app.state, "embedding_worker", None)),
        **state.metrics.summary(),
    }


@router.get("/api/v1/images/{path:path}", include_in_schema=True)
def product_image(path: str, state: AppState = Depends(app_state)) -> FileResponse:
    """Serve a product image stored under the media dir (uploads and relative image paths)."""
    file = resolve_under(state.settings.media_dir, path)  # None also for NUL or over-long names
    if file is None:
        raise RequestError(404, "image_not_found", f"no image at {path!r}")
    return FileResponse(file, headers={"Cache-Control": "public, max-age=86400"})
