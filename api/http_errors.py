"""Every error leaves the API as ``{"error": {"code", "message"}}`` with a 4xx (or 503) status.

Handlers translate the typed errors of the layers below, so routes never build error bodies.
:class:`ExceptionBoundary` is the last resort around them: a request path that can name nothing
is refused before routing, and an exception no handler knows becomes a JSON 500 *that keeps the
connection open*. (Starlette's own last resort re-raises after answering, and uvicorn then drops the
keep-alive connection without ``Connection: close``, so a pooling client's next request on it
failed with ECONNRESET.) The goal is that it never fires: each cause found so far has a typed 4xx.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import (
    BadImageInputError,
    ConflictError,
    CropOutsideImageError,
    DatabaseUnavailableError,
    DomainError,
    FileTooLargeError,
    NotFoundError,
    RequestError,
)
from api.input_checks import path_problem
from api.openapi import install_openapi
from api.services.fetch import FetchError
from api.services.search import NothingCanServeError
from encoder.errors import EncoderUnavailableError, InvalidImageError

log = logging.getLogger(__name__)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    # Messages may quote client input; an unpaired surrogate in it would make the JSON encoder fail.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
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


HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}
"""Codes for the errors Starlette raises itself (routing, body parsing)."""

DOMAIN_ERROR_STATUS: dict[type[DomainError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    BadImageInputError: 400,
    FileTooLargeError: 413,
    CropOutsideImageError: 422,
}
"""The one place a service's domain error gets its HTTP status (the nearest listed base class wins)."""


def domain_error_status(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        status = DOMAIN_ERROR_STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return 422


IMAGE_ERROR_STATUS = {"image_too_large": 413}
FETCH_ERROR_STATUS = {"url_forbidden": 400, "url_invalid": 400, "image_too_big": 413}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _api_error(_: Request, exc: RequestError) -> JSONResponse:
        return _respond(exc.status, exc.code, exc.message)

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return _respond(domain_error_status(exc), exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _respond(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(ValidationError)
    async def _invalid_model(_: Request, exc: ValidationError) -> JSONResponse:
        # Models validated inside a route (multipart forms, JSON-or-multipart bodies) fail the same way.
        return _respond(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        response = _respond(exc.status_code, code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            # A mount (the /ui assets) matches every method: its own Allow is the one to trust.
            response.headers["Allow"] = allowed_methods(request) or (exc.headers or {}).get("Allow", "")
        return response

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
        # Logged once per outage by api.db.engine.Availability, never here per request.
        response = _respond(503, "database_unavailable", str(exc))
        response.headers["Retry-After"] = str(getattr(exc, "retry_after_s", 5))
        return response

    app.add_middleware(ExceptionBoundary)
    install_openapi(app)  # documents these answers (api/openapi.py)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (RFC 9110 requires ``Allow`` on a 405).

    Starlette's own header names only the first route that matched the path, so
    ``POST /api/v1/products/{sku}`` would have claimed only GET although PATCH and DELETE exist.
    Each method is tried against the router (FastAPI nests included routers, so the routes
    cannot simply be listed).
    """
    routes = request.app.router.routes
    allowed = [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return ", ".join(allowed)


class ExceptionBoundary:
    """Pure ASGI middleware: the edge checks every request gets, and the last-resort 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = path_problem(scope.get("path", ""), scope.get("query_string", b""))
        if problem is not None:
            await _respond(*problem)(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half an answer is out; the connection cannot be saved
            response = _respond(500, "internal_error", "an unexpected error occurred; it has been logged")
            await response(scope, receive, send)
