"""Whether a pooled connection is still alive, asked of the kernel instead of the server.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` at every checkout: one more round trip per
request, which the search step pays in full (docs/benchmarks.md, issue 20 item 2). A connection
the server has ended while it sat in the pool (restart, ``pg_terminate_backend``, crash, idle
timeout) has input waiting on its socket: the server's FATAL message, end-of-file, or both. A
healthy idle connection has nothing to read. So each checkout polls the socket (no I/O, a few
microseconds) and hands back a readable one as dead; SQLAlchemy then opens a fresh connection
(the "checkout" event's ``DisconnectionError`` contract).

What it cannot see, like the ping could not without waiting out a timeout: a server gone without
closing the socket (host lost, network cut). The first statement then fails, and is mapped to a
503 like any outage (:mod:`api.db.availability`).
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

_INPUT = select.POLLIN | select.POLLPRI  # POLLHUP and POLLERR are always reported


def has_input(fd: int) -> bool:
    """Whether the socket has something to read (or hung up / failed) right now, without reading."""
    poller = select.poll()
    poller.register(fd, _INPUT)
    return bool(poller.poll(0))


def discard_dead_connections(engine: Engine) -> None:
    """Check each checkout of ``engine``'s pool with :func:`has_input` (instead of pool_pre_ping)."""
    event.listen(engine, "checkout", _check_out)


def _check_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.closed or has_input(dbapi_connection.fileno()):
        raise DisconnectionError("the server ended this pooled connection while it was idle")
