"""Request bodies are bounded while they are read, before any byte reaches a parser or the disk.

Starlette reads a whole JSON body into memory and spools multipart files to a temporary file
past 1 MiB, and only then did a route see that an upload was too big (what that cost is in
docs/benchmarks.md, "Request-edge checks"). Here a declared
``Content-Length`` over the limit is refused before reading anything, and a body without one
(chunked) is counted as it arrives and refused the moment it passes the limit, with the
connection closed so the rest is never read. Multipart files under the limit stay in memory
(the spool threshold is raised to the limit), so nothing of a request body reaches the disk.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.settings import Settings

OTHER_FIELDS_BYTES = 1024 * 1024
"""Room for the non-image fields (text, filters, attributes) of the largest legitimate request."""


def request_body_limit(settings: Settings) -> int:
    """The largest body any route needs: a ``max_upload_bytes`` image as base64 (4/3) in JSON."""
    if settings.max_request_bytes is not None:
        return settings.max_request_bytes
    return settings.max_upload_bytes * 4 // 3 + OTHER_FIELDS_BYTES


class BodyTooLargeError(HTTPException):
    """Raised into the route that was reading the body; the 413 has already been sent.

    An HTTPException, because FastAPI turns any other error while parsing a body into a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the {limit:,} byte limit")


def _too_large_response(limit: int) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "error": {
                "code": "request_too_large",
                "message": f"the request body is larger than the {limit:,} byte limit",
            }
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is never read, so this connection cannot carry another request.
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Multipart files up to the limit stay in memory: a refused upload never touches the disk,
        # and an accepted one is at most max_bytes of RAM (what the route reads into bytes anyway).
        MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_bytes + 1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            for message in _too_large_response(limit):
                await send(message)
            return

        received = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused, started
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        refused = True
                        started = True
                        for reply in _too_large_response(limit):
                            await send(reply)
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out already; whatever the route answers is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise  # the refusal was answered; whatever the route made of it needs no second answer


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
