"""ASGI-level guards that bound what one request may cost: body size and concurrent search work.

:func:`install` wires both into an app (``api.main.create_app``); :func:`admit_search` and
:func:`admit_writes` wrap the search and product services built in ``api.main.build_state``
around one gate (:func:`search_gate`).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.middleware.admission import (
    Gate,
    OverloadedError,
    ShedWhenFull,
    admit_search,
    admit_writes,
    install_overload_handler,
    search_gate,
)
from api.middleware.body_limit import BodyLimitMiddleware, request_body_limit
from api.settings import Settings

__all__ = [
    "BodyLimitMiddleware",
    "Gate",
    "OverloadedError",
    "ShedWhenFull",
    "admit_search",
    "admit_writes",
    "install",
    "request_body_limit",
    "search_gate",
]


def install(app: FastAPI, settings: Settings) -> None:
    """Body limits on every request, and the 503 ``overloaded`` answer for refused work."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=request_body_limit(settings))
    app.add_middleware(ShedWhenFull)  # outside the body limit: a shed request reads nothing
    install_overload_handler(app)
