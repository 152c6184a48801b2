"""``GET /api/v1/duplicates``: the duplicate finder for admins (clusters of near-identical photos).

A plain ``def`` route: the walk is many short SQL statements, so it runs in FastAPI's thread
pool and never blocks the event loop. It reads every product, which is why it needs the admin
token like ``/api/v1/stats`` does.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from api.errors import LookalikeError, RequestError
from api.routes.auth import require_admin
from api.services.duplicate_pixels import MIN_SIMILARITY
from api.services.duplicates import DEFAULT_NEIGHBOURS, MAX_THRESHOLD, DuplicateQuery, find_duplicates
from api.state import AppState, app_state

router = APIRouter(tags=["catalog"])


@router.get(
    "/api/v1/duplicates",
    dependencies=[Depends(require_admin)],
    response_model=None,
    responses={200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}},
)
def duplicates(
    threshold: float | None = Query(
        None, ge=0, le=MAX_THRESHOLD, description="cosine distance cut (default: per vectors)"
    ),
    category: str | None = Query(None, min_length=1, max_length=200),
    vectors: Literal["mobilenet", "clip"] = "mobilenet",
    neighbours: int = Query(DEFAULT_NEIGHBOURS, ge=1, le=100),
    verify: bool = Query(True, description="compare the candidates' pixels (false: vectors only)"),
    min_similarity: float = Query(MIN_SIMILARITY, gt=0, le=1),
    format: Literal["json", "csv"] = "json",
    state: AppState = Depends(app_state),
) -> dict[str, Any] | PlainTextResponse:
    query = DuplicateQuery(
        threshold=threshold,
        category=category,
        vectors=vectors,
        neighbours=neighbours,
        verify=verify,
        min_similarity=min_similarity,
    )
    try:
        query.check()
    except LookalikeError as exc:
        raise RequestError(422, "invalid_request", str(exc)) from exc
    report = find_duplicates(state.database, state.catalog, state.settings, query)
    if format == "csv":
        return PlainTextResponse(report.to_csv(), media_type="text/csv")
    return report.as_dict()
