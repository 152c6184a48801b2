"""Admission control: a bound on the encode + search work served at once, and a fast 503 beyond it.

Without it, every extra client of an overloaded server made every request slower (24 clients:
p99 1.1 s; several times capacity: latency without bound), because each admitted request shares
the same cores. A :class:`Gate` admits at most ``limit`` calls at once (default: as many as
encodes fit side by side on the cores, i.e. one when an encode's runtime takes every core, see
:func:`default_inflight`). A short queue absorbs bursts, but a caller joins it
only when it is predicted to get a slot within ``wait_s`` (its place in the queue times the
recent slot-holding time, over the limit); anyone else is refused at once with
:class:`OverloadedError`, which the API answers as 503 ``overloaded`` with ``Retry-After``. A
queued caller that still waits past ``wait_s`` (the work slowed down) is refused then. So
admitted requests keep close to their unloaded latency, and the excess learns so at once rather
than after a wait that ends in a refusal anyway.

The gate wraps the services (:func:`admit_search`, :func:`admit_writes`), not whole requests, so
the time a request spends downloading an ``image_url`` or uploading its body holds no slot (a
slow client cannot take the slots): those are bounded separately
(the download gates of :mod:`api.services.images.download`, the body-size limit). :class:`ShedWhenFull` asks the
same question before a gated request's body is read, so most of the excess costs no body read,
no multipart parse and no worker thread.
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

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.settings import Settings

T = TypeVar("T")

DEFAULT_THREADS = 40
"""anyio's default worker-thread count, which the other routes keep on top of the gated calls."""


class OverloadedError(Exception):
    """More concurrent work than the server admits; the client should retry after a pause."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class Gate:
    """At most ``limit`` calls at once, plus a short queue of at most ``queue`` callers that wait
    up to ``wait_s`` for a slot, joined only by callers predicted to get one in time; anyone
    else is refused at once. Counters for tests and ``stats()``."""

    HOLD_WEIGHT = 0.2
    """Weight of the newest slot-holding time in the running average the prediction uses:
    recent enough to follow a load change within a few calls, smooth enough to ignore one
    slow call."""

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
        self.timed_out = 0
        """Queued callers refused because their wait ran past ``wait_s`` (a misprediction)."""
        self.shed = 0
        """Requests refused by :class:`ShedWhenFull` before their body was read."""
        self.hold_s: float | None = None
        """Running average of how long an admitted call holds its slot; None before the first."""

    def _refuse(self) -> OverloadedError:
        self.refused += 1
        return OverloadedError(f"the server is busy ({self.limit} {self.name} at once); retry shortly")

    def predicted_wait_s(self) -> float:
        """How long a caller joining the queue now would wait for a slot: the callers ahead of it
        and itself, served ``limit`` at a time, each holding a slot for the recent average."""
        if self.hold_s is None:
            return 0.0
        return (self.waiting + 1) * self.hold_s / self.limit

    def full(self) -> bool:
        """A new caller would be refused at once: every slot taken, and the queue full or too
        slow for it to get a slot within ``wait_s``."""
        if self.inflight < self.limit:
            return False
        return self.waiting >= self.queue or self.predicted_wait_s() > self.wait_s

    @contextmanager
    def admit(self) -> Iterator[None]:
        with self._cond:
            if self.inflight >= self.limit:
                if self.full():
                    raise self._refuse()
                self.waiting += 1
                deadline = time.monotonic() + self.wait_s
                try:
                    while self.inflight >= self.limit:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            self.timed_out += 1
                            raise self._refuse()
                        self._cond.wait(remaining)
                finally:
                    self.waiting -= 1
            self.inflight += 1
            self.admitted += 1
        started = time.monotonic()
        try:
            yield
        finally:
            held = time.monotonic() - started
            with self._cond:
                self.inflight -= 1
                self.hold_s = (
                    held if self.hold_s is None else self.hold_s + self.HOLD_WEIGHT * (held - self.hold_s)
                )
                self._cond.notify()

    def stats(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "inflight": self.inflight,
            "waiting": self.waiting,
            "admitted": self.admitted,
            "refused": self.refused,
            "timed_out": self.timed_out,
            "shed": self.shed,
        }


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def encode_threads() -> int:
    """Cores one encode keeps busy: the encoders give their runtime every usable core
    (``encoder.devices.configure_cpu_threads``) unless ``OMP_NUM_THREADS`` says otherwise."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return usable_cores()


def default_inflight(workers: int = 1) -> int:
    """As many encode + search calls as encodes fit side by side on the cores, at least one.

    One image encode already keeps every core busy (the runtime's own threads), so a second
    call at once mostly waits for the cores: it adds little throughput and stretches every
    admitted call's latency (docs/benchmarks.md, the overload section, has the measurements
    behind this default). Several server processes (``workers``) share the same cores. On a
    GPU the cores are not what bounds an encode: set ``LOOKALIKE_MAX_INFLIGHT`` there.
    """
    return max(1, usable_cores() // (encode_threads() * max(1, workers)))


def search_gate(settings: Settings) -> Gate:
    limit = settings.max_inflight
    if limit is None and settings.encoder_url:
        # Remote encoders (LOOKALIKE_ENCODER_URL): this process only decodes, queries and answers,
        # and its cores are not what an encode waits for; bound that work at two calls per core.
        limit = 2 * max(1, usable_cores() // max(1, settings.workers))
    limit = limit or default_inflight(settings.workers)
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


class AdmittedWrites:
    """The product service with its writes admitted through the searches' gate.

    A product write embeds its image with the same encoders on the same cores as a search, so it
    takes a slot from the same bound; reads pass as is.
    """

    def __init__(self, service: Any, gate: Gate) -> None:
        self._service = service
        self.gate = gate

    def upsert(self, *args: Any, **kwargs: Any) -> Any:
        with self.gate.admit():
            return self._service.upsert(*args, **kwargs)

    def patch(self, *args: Any, **kwargs: Any) -> Any:
        with self.gate.admit():
            return self._service.patch(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        with self.gate.admit():
            return self._service.delete(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)


def admit_search(service: T, settings: Settings, gate: Gate | None = None) -> T:
    """Wrap a SearchService so its queries pass the admission gate (typed as the service itself)."""
    return cast(T, AdmittedSearch(service, gate or search_gate(settings)))


def admit_writes(service: T, gate: Gate) -> T:
    """Wrap a ProductService so its writes pass ``gate`` (the searches' one), typed as the service."""
    return cast(T, AdmittedWrites(service, gate))


SEARCH_PATHS = ("/api/v1/search", "/api/v1/search/image", "/api/image-search/find-similar")
PRODUCTS = "/api/v1/products"


def _is_gated(scope: Scope) -> bool:
    """Requests whose work passes the gate: searches, "more like this", and product writes."""
    path, method = scope.get("path", ""), scope.get("method")
    if method == "POST":
        return path in SEARCH_PATHS or path == PRODUCTS
    if method in ("PATCH", "DELETE"):
        return path.startswith(PRODUCTS + "/")
    return method == "GET" and path.startswith(PRODUCTS + "/") and path.endswith("/similar")


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
    """Refuse gated work before reading its body when the admission gate would refuse it anyway.

    A refusal inside the route came after the upload was read and parsed and a worker thread
    was found: on a saturated machine that was most of a refused request's cost. Here it costs
    a look at the gate's counters. Requests the gate might still take (a slot free, or a queue
    place that would come in time) go on, and the gate decides.

    It also makes sure the worker-thread pool (anyio's default limiter, 40 threads) has room
    for every admitted and queued call on top of its default: gated calls wait for their slot
    on worker threads, and on a many-core machine (limit + queue > 40) they would otherwise
    queue for a thread first, where no admission rule bounds the wait.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._threads_sized = False

    def _size_thread_pool(self, gate: Gate) -> None:
        limiter = to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, DEFAULT_THREADS + gate.limit + gate.queue)
        self._threads_sized = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = getattr(getattr(scope.get("app"), "state", None), "lookalike", None)
            gate = getattr(getattr(state, "search", None), "gate", None)
            if isinstance(gate, Gate):
                if not self._threads_sized:
                    self._size_thread_pool(gate)
                if _is_gated(scope) and gate.full():
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
