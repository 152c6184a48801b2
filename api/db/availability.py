"""Whether a database is reachable: failures that mean "server gone" become 503s, logged per outage.

Apart from :mod:`api.db.engine` so that the replica set (:mod:`api.db.replicas`), which the
engine module builds, uses the same rules without importing the engine module back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import InterfaceError, OperationalError

from api.errors import DatabaseUnavailableError

log = logging.getLogger("api.db.engine")

RETRY_AFTER_S = 5
"""What a 503 ``database_unavailable`` tells clients to wait: PostgreSQL restarts and fail-overs
take seconds, and the pool reconnects on the first request after the server is back."""

# SQLSTATEs that mean "the server or the connection is gone", not "this statement failed":
# class 08 (connection exception), admin/crash shutdown, and "starting up / shutting down".
_GONE_SQLSTATES = ("57P01", "57P02", "57P03")


class DatabaseOutageError(DatabaseUnavailableError):
    """PostgreSQL went away (or never answered) while serving: a 503 with ``Retry-After``."""

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def is_connection_failure(ctx: ExceptionContext) -> bool:
    """Whether a DBAPI error means the server is unreachable, as opposed to a bad statement.

    Connect failures arrive without a connection; a server that dies mid-query shows up as a
    disconnect (SQLAlchemy's ``is_disconnect``) or as an admin/crash-shutdown SQLSTATE. A
    statement timeout (57014) or a constraint violation stays what it is.
    """
    error = ctx.sqlalchemy_exception
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    if ctx.is_disconnect or ctx.connection is None:
        return True
    sqlstate = getattr(ctx.original_exception, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in _GONE_SQLSTATES


class Availability:
    """Up/down state of one database, so an outage is logged twice (gone, back), not per request.

    Every request during an outage fails the same way; logging each one (with a traceback)
    wrote 78 MB during a 30 s outage (issue 14). State changes are what an operator needs.
    A shutdown flaps at its edges (a connection accepted while others are being terminated,
    then "the database system is starting up"), so the outage only ends on a success at least
    ``settle_s`` after its last failure: one line when it goes, one when it is back.
    """

    def __init__(self, name: str, logger: logging.Logger = log, settle_s: float = 1.0) -> None:
        self.name = name
        self.log = logger
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.last_failure_at = 0.0
        self.last_error: str | None = None
        self.outages = 0

    @property
    def up(self) -> bool:
        return self.down_since is None

    def failed(self, reason: str) -> None:
        with self._lock:
            self.last_error = reason
            self.last_failure_at = time.monotonic()
            if self.down_since is not None:
                return
            self.down_since = self.last_failure_at
            self.outages += 1
        self.log.warning("%s is unavailable: %s; answering 503 until it is back", self.name, reason)

    def succeeded(self) -> None:
        if self.down_since is None:  # the common case: no lock taken
            return
        with self._lock:
            now = time.monotonic()
            if self.down_since is None or now - self.last_failure_at < self.settle_s:
                return
            down_for = now - self.down_since
            self.down_since = None
        self.log.warning("%s is back after %.1fs", self.name, down_for)


def _first_line(error: BaseException | None) -> str:
    text_ = str(error).strip() if error is not None else ""
    return text_.splitlines()[0] if text_ else type(error).__name__


def map_unavailability(engine: Engine, availability: Availability, display_url: str) -> None:
    """Turn every connection failure on this engine into a DatabaseOutageError (-> 503).

    Done with SQLAlchemy's ``handle_error`` hook rather than in ``Database.connect``/``read``
    so that ``engine.connect()`` and ``engine.begin()`` users, and failures in the middle of
    a query, are covered too; the pool's ``connect`` and ``checkout`` events say when it is back.
    """

    @event.listens_for(engine, "handle_error")
    def _outage(ctx: ExceptionContext) -> None:
        if not is_connection_failure(ctx):
            return
        reason = _first_line(ctx.original_exception)
        availability.failed(reason)
        if ctx.connection is None:
            raise DatabaseOutageError(f"cannot connect to PostgreSQL at {display_url}: {reason}")
        raise DatabaseOutageError(f"lost the connection to PostgreSQL at {display_url}: {reason}")

    @event.listens_for(engine, "connect")
    def _connected(*_: Any) -> None:
        availability.succeeded()

    @event.listens_for(engine, "checkout")
    def _checked_out(*_: Any) -> None:
        availability.succeeded()  # an attribute check while up; ends an outage that has settled
