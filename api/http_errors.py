"""Every error leaves the API as ``{"error": {"code", "message"}}`` with a 4xx (or 503) status.

Handlers translate the typed errors of the layers below, so routes never build error bodies.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import DatabaseUnavailableError, RequestError
from api.services.fetch import FetchError
from api.services.search import NothingCanServeError
from encoder.errors import EncoderUnavailableError, InvalidImageError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _respond(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status)


def _validation_message(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(
            str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")
        )
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


IMAGE_ERROR_STATUS = {"image_too_large": 413}
FETCH_ERROR_STATUS = {"url_forbidden": 400, "url_invalid": 400, "image_too_big": 413}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _api_error(_: Request, exc: RequestError) -> JSONResponse:
        return _respond(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _respond(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(ValidationError)
    async def _invalid_model(_: Request, exc: ValidationError) -> JSONResponse:
        # Models validated inside a route (multipart forms, JSON-or-multipart bodies) fail the same way.
        return _respond(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return _respond(exc.status_code, code, str(exc.detail))

    @app.exception_handler(InvalidImageError)
    async def _bad_image(_: Request, exc: InvalidImageError) -> JSONResponse:
        return _respond(IMAGE_ERROR_STATUS.get(exc.code, 422), exc.code, exc.message)

    @app.exception_handler(FetchError)
    async def _bad_url(_: Request, exc: FetchError) -> JSONResponse:
        return _respond(FETCH_ERROR_STATUS.get(exc.code, 422), exc.code, exc.message)

    @app.exception_handler(NothingCanServeError)
    async def _no_mode(_: Request, exc: NothingCanServeError) -> JSONResponse:
        return _respond(503, "search_unavailable", f"no search mode can serve this query: {exc}")

    @app.exception_handler(EncoderUnavailableError)
    async def _no_encoder(_: Request, exc: EncoderUnavailableError) -> JSONResponse:
        return _respond(503, "encoder_unavailable", str(exc))

    @app.exception_handler(DatabaseUnavailableError)
    async def _no_database(_: Request, exc: DatabaseUnavailableError) -> JSONResponse:
        return _respond(503, "database_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _respond(500, "internal_error", "an unexpected error occurred; it has been logged")
