"""The one engine, the one way to a connection, and the checks that make a bad database a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, ProgrammingError

from api.db.availability import Availability, map_unavailability
from api.db.embedded import embedded_database_url
from api.db.liveness import discard_dead_connections
from api.db.replicas import ReplicaSet, build_replicas, replica_read
from api.errors import DatabaseUnavailableError
from api.settings import Settings

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
                connect_args={"connect_timeout": 10, "application_name": "lookalike"},
            )
            discard_dead_connections(self.engine)  # instead of pool_pre_ping's round trip
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
