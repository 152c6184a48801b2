"""ASGI-level guards that bound what one request may cost: body size and concurrent search work.

:func:`install` wires both into an app (``api.main.create_app``); :func:`admit_search` wraps
the search service built in ``api.main.build_state``.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.middleware.admission import (
    Gate,
    OverloadedError,
    ShedWhenFull,
    admit_search,
    install_overload_handler,
)
from api.middleware.body_limit import BodyLimitMiddleware, request_body_limit
from api.settings import Settings

__all__ = [
    "BodyLimitMiddleware",
    "Gate",
    "OverloadedError",
    "ShedWhenFull",
    "admit_search",
    "install",
    "request_body_limit",
]


def install(app: FastAPI, settings: Settings) -> None:
    """Body limits on every request, and the 503 ``overloaded`` answer for refused work."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=request_body_limit(settings))
    app.add_middleware(ShedWhenFull)  # outside the body limit: a shed request reads nothing
    install_overload_handler(app)
