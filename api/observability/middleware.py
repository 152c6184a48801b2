"""Per-request bookkeeping at the outermost layer: a request id and the HTTP metrics.

A plain ASGI middleware (not ``BaseHTTPMiddleware``): it adds a header and two metric
updates to each request, and must not add a task hop to the hot path (see
docs/benchmarks.md, "Metrics overhead").
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observability import instruments as m
from api.observability.logs import REQUEST_ID

access_log = logging.getLogger("lookalike.access")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/products/{sku:path}``): bounded label values,
    whatever the URLs; ``unmatched`` for 404s that matched nothing."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, access_log_lines: bool = False) -> None:
        self.app = app
        self.access_log_lines = access_log_lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _CLIENT_ID.match(candidate):
                    request_id = candidate  # a proxy's id: keep it so logs join up
                break
        request_id = request_id or os.urandom(16).hex()  # a uuid4's randomness, without the object
        token = REQUEST_ID.set(request_id)
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "OTHER"
            route = route_template(scope)
            labels = (route, method, str(status))
            m.HTTP_REQUESTS_BY.get(*labels).inc()
            m.HTTP_LATENCY_BY.get(*labels).observe(elapsed)
            if self.access_log_lines:
                access_log.info(
                    "%s %s %d %.1fms",
                    method,
                    scope.get("path", ""),
                    status,
                    elapsed * 1000,
                    extra={"route": route, "status": status, "duration_ms": round(elapsed * 1000, 3)},
                )
            REQUEST_ID.reset(token)
