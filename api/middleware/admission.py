"""Admission control: a bound on the encode + search work served at once, and a fast 503 beyond it.

Without it, every extra client of an overloaded server made every request slower (24 clients:
p99 1.1 s; several times capacity: latency without bound), because each admitted request shares
the same two cores. A :class:`Gate` admits at most ``limit`` calls at once; a caller that finds it
full waits at most ``wait_s`` (a short queue that absorbs bursts) and is then refused with
:class:`OverloadedError`, which the API answers as 503 ``overloaded`` with ``Retry-After``, in
milliseconds, so admitted requests keep their latency and clients know to come back.

The gate wraps the search service (:func:`admit_search`), not whole requests, so the time a
request spends downloading an ``image_url`` or uploading its body holds no admission slot: those
are bounded separately (``api.services.image_input.download_slot``, the body-size limit).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.settings import Settings

T = TypeVar("T")


class OverloadedError(Exception):
    """More concurrent work than the server admits; the client should retry after a pause."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class Gate:
    """A counting semaphore with a bounded wait and counters for health and tests."""

    def __init__(self, name: str, limit: int, wait_s: float = 0.0) -> None:
        if limit < 1:
            raise ValueError("a gate must admit at least one call")
        self.name = name
        self.limit = limit
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.inflight = 0
        self.admitted = 0
        self.refused = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.wait_s > 0:
            acquired = self._slots.acquire(timeout=self.wait_s)
        else:
            acquired = self._slots.acquire(blocking=False)
        if not acquired:
            with self._lock:
                self.refused += 1
            raise OverloadedError(f"the server is busy ({self.limit} {self.name} at once); retry shortly")
        with self._lock:
            self.inflight += 1
            self.admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self.inflight -= 1
            self._slots.release()

    def stats(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "inflight": self.inflight,
            "admitted": self.admitted,
            "refused": self.refused,
        }


def default_inflight() -> int:
    """Two searches per core (at least 8): enough for the encoders to merge concurrent calls into
    shared passes, few enough that each admitted search still gets its share of a core."""
    return max(8, 2 * (os.cpu_count() or 1))


def search_gate(settings: Settings) -> Gate:
    return Gate("searches", settings.max_inflight or default_inflight(), settings.admission_wait_ms / 1000)


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


def install_overload_handler(app: FastAPI) -> None:
    @app.exception_handler(OverloadedError)
    async def _overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "overloaded", "message": exc.message}},
            status_code=503,
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))},
        )
