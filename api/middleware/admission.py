"""Admission control: a bound on the encode + search work served at once, and a fast 503 beyond it.

Without it, every extra client of an overloaded server made every request slower (24 clients:
p99 1.1 s; several times capacity: latency without bound), because each admitted request shares
the same two cores. A :class:`Gate` admits at most ``limit`` calls at once; a short queue (as many
callers as the limit, by default) absorbs bursts, each waiting at most ``wait_s`` for a slot;
a caller that finds the queue full is refused at once with :class:`OverloadedError`, which the
API answers as 503 ``overloaded`` with ``Retry-After`` in milliseconds, so admitted requests
keep their latency and clients know to come back.

The gate wraps the search service (:func:`admit_search`), not whole requests, so the time a
request spends downloading an ``image_url`` or uploading its body holds no admission slot: those
are bounded separately (``api.services.image_input.download_slot``, the body-size limit).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.settings import Settings

T = TypeVar("T")


class OverloadedError(Exception):
    """More concurrent work than the server admits; the client should retry after a pause."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class Gate:
    """At most ``limit`` calls at once, plus a short queue of at most ``queue`` callers that wait
    up to ``wait_s`` for a slot; anyone beyond the queue is refused at once. Counters for tests."""

    def __init__(self, name: str, limit: int, wait_s: float = 0.0, queue: int = 0) -> None:
        if limit < 1:
            raise ValueError("a gate must admit at least one call")
        self.name = name
        self.limit = limit
        self.wait_s = wait_s
        self.queue = queue if wait_s > 0 else 0
        self._cond = threading.Condition()
        self.inflight = 0
        self.waiting = 0
        self.admitted = 0
        self.refused = 0
        self.shed = 0
        """Requests refused by :class:`ShedWhenFull` before their body was read."""

    def _refuse(self) -> OverloadedError:
        self.refused += 1
        return OverloadedError(f"the server is busy ({self.limit} {self.name} at once); retry shortly")

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._cond:
            if self.inflight >= self.limit:
                if self.waiting >= self.queue:
                    raise self._refuse()
                self.waiting += 1
                deadline = time.monotonic() + self.wait_s
                try:
                    while self.inflight >= self.limit:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise self._refuse()
                        self._cond.wait(remaining)
                finally:
                    self.waiting -= 1
            self.inflight += 1
            self.admitted += 1
        try:
            yield
        finally:
            with self._cond:
                self.inflight -= 1
                self._cond.notify()

    def full(self) -> bool:
        """Every slot taken and the queue full: a new caller would be refused at once."""
        return self.inflight >= self.limit and self.waiting >= self.queue

    def stats(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "inflight": self.inflight,
            "waiting": self.waiting,
            "admitted": self.admitted,
            "refused": self.refused,
            "shed": self.shed,
        }


def default_inflight() -> int:
    """Two searches per core: enough for the encoders to merge concurrent calls into shared
    passes, few enough that each admitted search keeps close to its unloaded latency."""
    return 2 * (os.cpu_count() or 1)


def search_gate(settings: Settings) -> Gate:
    limit = settings.max_inflight or default_inflight()
    queue = limit if settings.admission_queue is None else settings.admission_queue
    return Gate("searches", limit, settings.admission_wait_ms / 1000, queue)


class AdmittedSearch:
    """The search service with ``search`` and ``similar`` admitted through a gate; the rest as is."""

    def __init__(self, service: Any, gate: Gate) -> None:
        self._service = service
        self.gate = gate

    def search(self, *args: Any, **kwargs: Any) -> Any:
        with self.gate.admit():
            return self._service.search(*args, **kwargs)

    def similar(self, *args: Any, **kwargs: Any) -> Any:
        with self.gate.admit():
            return self._service.similar(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)


def admit_search(service: T, settings: Settings) -> T:
    """Wrap a SearchService so its queries pass the admission gate (typed as the service itself)."""
    return cast(T, AdmittedSearch(service, search_gate(settings)))


SEARCH_PATHS = ("/api/v1/search", "/api/v1/search/image", "/api/image-search/find-similar")


def _is_search(scope: Scope) -> bool:
    path = scope.get("path", "")
    if scope.get("method") == "POST":
        return path in SEARCH_PATHS
    return scope.get("method") == "GET" and path.startswith("/api/v1/products/") and path.endswith("/similar")


def _overloaded_messages(gate: Gate) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": f"the server is busy ({gate.limit} {gate.name} at once); retry shortly",
            }
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            # The body is not read, so this connection cannot carry another request.
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class ShedWhenFull:
    """Refuse a search before reading its body when the admission gate could not take it anyway.

    A refusal inside the route came after the upload was read and parsed and a worker thread
    was found: on a saturated machine that was most of a refused request's cost. Here it costs
    a look at two counters. Requests the gate might still take (a slot or a queue place free)
    go on, and the gate decides.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_search(scope):
            state = getattr(getattr(scope.get("app"), "state", None), "lookalike", None)
            gate = getattr(getattr(state, "search", None), "gate", None)
            if isinstance(gate, Gate) and gate.full():
                gate.shed += 1
                for message in _overloaded_messages(gate):
                    await send(message)
                return
        await self.app(scope, receive, send)


def install_overload_handler(app: FastAPI) -> None:
    @app.exception_handler(OverloadedError)
    async def _overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "overloaded", "message": exc.message}},
            status_code=503,
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
        )
