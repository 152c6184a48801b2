"""uvicorn's HTTP protocol with a lingering close, so a refused upload's client reads its 4xx.

When the service answers before it has read a request's body (413 for a 1 GiB upload, 503 from
admission) it ends the connection. uvicorn closes the socket at once; with the client's unread
bytes still in the kernel's receive buffer, that close sends a TCP reset, and a reset makes the
client's kernel drop the response it had not read yet: the client sees "connection reset"
instead of the JSON error (now and then, by timing). Web servers solve this with a lingering
close (nginx's ``lingering_close``, Apache's ``lingering_close``): send the response, half-close
the write side (FIN), discard what still arrives for a short while, then close. This does that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LINGER_S = 2.0
"""How long a closing connection keeps discarding the client's bytes before it is closed anyway."""


class _LingeringTransport:
    """The connection's transport, whose ``close()`` half-closes, drains and closes later."""

    def __init__(self, transport: asyncio.Transport, protocol: LingeringHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        transport = self._transport
        if self._protocol.lingering or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        self._protocol.lingering = True
        transport.write_eof()  # after the buffered response: the client reads all of it, then EOF
        transport.resume_reading()  # keep taking (and dropping) its bytes, so nothing is reset
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LingeringHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (its default when httptools is installed) with the lingering
    close: what every uvicorn server of this service runs (``lookalike serve``, workers, tests)."""

    lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the rest of a refused body, or anything after it: dropped unread
        super().data_received(data)
