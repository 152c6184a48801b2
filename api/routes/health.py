"""``GET /api/v1/health``: 200 while search can be served (even degraded), 503 when it cannot."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.services.health import health_report
from api.state import AppState, app_state

router = APIRouter(tags=["health"])


@router.get("/api/v1/health")
def health(state: AppState = Depends(app_state)) -> JSONResponse:
    serving, report = health_report(state)
    body: dict[str, Any] = report
    return JSONResponse(body, status_code=200 if serving else 503)
