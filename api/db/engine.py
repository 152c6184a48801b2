"""The one engine and session factory, and the checks that make a bad database a clear error."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from api.db.embedded import embedded_database_url
from api.db.replicas import ReplicaSet, build_replicas, replica_read
from api.errors import DatabaseUnavailableError
from api.settings import Settings

log = logging.getLogger(__name__)

MIN_PGVECTOR = (0, 8, 0)


@dataclass(frozen=True)
class ServerInfo:
    postgres_version: str
    pgvector_version: str


def sqlalchemy_url(url: str) -> str:
    """Accept the URL spellings hosting platforms hand out and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def ensure_pgvector(conn: Connection, where: str) -> str:
    """Make sure pgvector >= 0.8 is installed in this database (installing it if the server has it).

    Returns the installed version. 0.8 is the floor because search relies on iterative index
    scans (``hnsw.iterative_scan``) to fill pages under selective filters.
    """
    installed = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    available = conn.execute(
        text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    hint = (
        "Install pgvector >= 0.8 on that server (Debian/Ubuntu: apt install postgresql-<major>-pgvector; "
        "Docker: the pgvector/pgvector:pg17 image), or unset DATABASE_URL to use the embedded PostgreSQL."
    )
    if available is None and installed is None:
        raise DatabaseUnavailableError(f"the PostgreSQL server at {where} does not have pgvector. {hint}")
    target = installed
    if installed is None or _version_tuple(installed) < MIN_PGVECTOR:
        if available is None or _version_tuple(available) < MIN_PGVECTOR:
            raise DatabaseUnavailableError(
                f"the PostgreSQL server at {where} has pgvector {installed or available}, "
                f"Lookalike needs >= 0.8. {hint}"
            )
        statement = (
            "CREATE EXTENSION IF NOT EXISTS vector" if installed is None else "ALTER EXTENSION vector UPDATE"
        )
        try:
            with conn.begin_nested():
                conn.execute(text(statement))
        except ProgrammingError as exc:
            raise DatabaseUnavailableError(
                f"pgvector is available on {where} but `{statement}` failed ({exc.orig}). "
                "Run it once as a superuser or the database owner."
            ) from exc
        target = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    return str(target)


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
    if ctx.is_pre_ping:  # the pool pings, fails, and reconnects by itself: not our business
        return False
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


class Database:
    """Owns the engine (and the replicas' engines); one per process (API, CLI command, test session).

    The one way to a connection: ``connect`` (plain), ``begin`` (a transaction that commits),
    ``read`` / ``primary_read`` (shopper reads, ended by ROLLBACK; replicas when configured) and
    ``autocommit`` (DDL that cannot run in a transaction). Every one of them maps an unavailable
    server to DatabaseUnavailableError (503), see ``map_unavailability``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = settings.database_url or embedded_database_url(settings.data_dir)
        self.url = sqlalchemy_url(url)
        self.display_url = redacted(self.url)
        try:
            self.engine: Engine = create_engine(
                self.url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10, "application_name": "lookalike"},
            )
        except Exception as exc:  # malformed URL, unknown driver
            raise DatabaseUnavailableError(f"DATABASE_URL is not a usable PostgreSQL URL ({exc})") from exc
        self.availability = Availability(f"PostgreSQL at {self.display_url}")
        map_unavailability(self.engine, self.availability, self.display_url)
        self.replicas: ReplicaSet | None = None
        if settings.database_replica_urls:
            try:
                self.replicas = build_replicas(
                    settings.database_replica_urls,
                    lambda raw: (sqlalchemy_url(raw), redacted(sqlalchemy_url(raw))),
                    {
                        "pool_size": settings.db_pool_size,
                        "max_overflow": settings.db_pool_size,
                        "pool_pre_ping": True,
                        # Short: a replica that does not answer is skipped, the primary is right there.
                        "connect_args": {"connect_timeout": 2, "application_name": "lookalike-read"},
                    },
                    settings.replica_max_lag_s,
                    settings.replica_circuit_reset_s,
                )
            except DatabaseUnavailableError:
                raise
            except Exception as exc:
                raise DatabaseUnavailableError(
                    f"LOOKALIKE_DATABASE_REPLICA_URLS has an unusable PostgreSQL URL ({exc})"
                ) from exc

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection whose failure to open becomes a DatabaseUnavailableError with the reason.

        (Every connection of this engine maps failures the same way, see ``map_unavailability``;
        the message here is the one the CLI prints.)"""
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL at {self.display_url}: {reason}"
            ) from exc
        with conn:
            yield conn

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success: ``engine.begin()`` with the same
        unavailability mapping as every other way in."""
        with self.engine.begin() as conn:
            yield conn

    def read(self) -> AbstractContextManager[Connection]:
        """A transaction for reads only, ended by ROLLBACK: SET LOCALs still apply inside it, and
        no commit is counted as a catalog write (api.services.catalog_version).

        With read replicas configured this is where shopper reads leave the primary: the
        connection comes from the next usable replica, and moves to the primary mid-read if
        that replica goes away (api.db.replicas)."""
        if self.replicas:
            return replica_read(self.replicas, self.primary_read)
        return self.primary_read()

    @contextmanager
    def primary_read(self) -> Iterator[Connection]:
        """``read()`` on the primary whatever the replicas: for reads that must see the latest write."""
        with self.engine.connect() as conn:
            yield conn  # closing a connection mid-transaction rolls it back

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection outside any transaction: for ``CREATE/DROP INDEX CONCURRENTLY`` and
        session advisory locks, which must not sit in a transaction block."""
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def check(self) -> ServerInfo:
        """Connect, ensure pgvector, and say which versions serve us (for health and startup logs)."""
        with self.connect() as conn:
            pgvector = ensure_pgvector(conn, self.display_url)
            conn.commit()
            version = conn.execute(text("SHOW server_version")).scalar()
        return ServerInfo(postgres_version=str(version), pgvector_version=pgvector)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.replicas:
            self.replicas.dispose()
