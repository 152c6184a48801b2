"""Read replicas: shopper reads spread over streaming standbys, with the primary as the net.

``LOOKALIKE_DATABASE_REPLICA_URLS`` names the standbys. ``Database.read()`` (the one entry
point of search, "more like this", product reads, categories and the catalog version) hands
out a connection to the next usable replica in turn; writes, the embedding queue, migrations
and index maintenance use the primary's engine and never come here.

A replica is skipped when

- it failed: a connection error opens its circuit breaker (``encoder.circuit``, one failure is
  enough since the primary is always there) for ``LOOKALIKE_REPLICA_CIRCUIT_RESET_S``; then
  one read probes it, and a success closes the breaker again;
- it lags: its replay lag, measured at most once a second per process, is over
  ``LOOKALIKE_REPLICA_MAX_LAG_S``; the next measurement under it brings it back.

A replica that dies *during* a read costs the client nothing either: the connection handed
out is a :class:`FailoverConnection`, which on a connection failure replays the read's
statements so far (``SET LOCAL``s; reads have no other effects) on a primary connection and
runs the failed one there. Consistency: a replica serves data at most ``max_lag_s`` old, and
the catalog version that keys the result cache is read from the same replica as the results,
so a cached page is never newer-keyed than its data.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError

from api.db.availability import Availability, is_connection_failure
from api.db.liveness import discard_dead_connections
from api.errors import DatabaseUnavailableError

log = logging.getLogger(__name__)

LAG_CHECK_S = 1.0
"""How often (per process and replica) the replay lag is measured: one cheap query a second."""

# Lag is 0 when everything received has been replayed (an idle primary sends nothing, and
# now() - last replay time would grow without any lag). When behind, it is the larger of the
# age of the last replayed commit (NULL until one is replayed after a standby starts) and how
# long replay has been stuck at the same position (Replica.measure_lag keeps that clock).
LAG_SQL = text(
    """
    SELECT pg_is_in_recovery() AS standby,
           pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()
               AS behind,
           CAST(pg_last_wal_replay_lsn() AS text) AS replayed,
           EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) AS commit_age_s
    """
)


class ReplicaUnavailableError(DatabaseUnavailableError):
    """A replica's connection failed. Caught here and turned into a failover to the primary;
    should it ever escape, it is still a 503, never a 500."""


@dataclass
class LagReading:
    lag_s: float | None
    at: float
    error: str | None = None


class Replica:
    """One standby: its engine, breaker, last lag reading and how many reads it served."""

    def __init__(
        self, url: str, display_url: str, engine: Engine, max_lag_s: float, reset_after_s: float
    ) -> None:
        from encoder.circuit import CircuitBreaker

        self.url = url
        self.name = display_url
        self.engine = engine
        self.max_lag_s = max_lag_s
        self.breaker = CircuitBreaker(1, reset_after_s, name=f"replica {display_url}")
        self.availability = Availability(f"read replica {display_url}", log)
        self.lag = LagReading(None, 0.0)
        self.reads = 0
        self.failovers = 0
        self._lag_lock = threading.Lock()
        self._stuck: tuple[str, float] | None = None
        """(replay position, first seen there while behind): a replay that does not move lags."""
        self.lagging = False

    # --- state ---------------------------------------------------------------------------

    def failed(self, reason: str) -> None:
        self.breaker.record_failure(reason)
        self.availability.failed(f"{reason}; reads go to the other replicas or the primary")

    def succeeded(self) -> None:
        if self.breaker.consecutive_failures or self.breaker.state != "closed":
            self.breaker.record_success()
        self.availability.succeeded()

    def measure_lag(self) -> LagReading:
        """Measure now (on a pooled connection; a dead replica fails fast and opens the breaker)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(LAG_SQL).one()
            now = time.monotonic()
            if not row.behind:
                self._stuck = None
                lag = 0.0
            else:
                if self._stuck is None or self._stuck[0] != row.replayed:
                    self._stuck = (row.replayed, now)  # replay moved (or just fell behind)
                lag = max(now - self._stuck[1], float(row.commit_age_s or 0.0))
            reading = LagReading(lag, now)
        except (DatabaseUnavailableError, Exception) as exc:  # any failure: not usable now
            reading = LagReading(None, time.monotonic(), str(exc).splitlines()[0] if str(exc) else repr(exc))
            if not isinstance(exc, ReplicaUnavailableError):  # the hook already counted those
                self.failed(reading.error or "lag check failed")
        self.lag = reading
        lagging = reading.lag_s is not None and reading.lag_s > self.max_lag_s
        if lagging != self.lagging:
            self.lagging = lagging
            if lagging:
                log.warning(
                    "read replica %s lags %.1fs (> %.1fs): reads go elsewhere until it catches up",
                    self.name, reading.lag_s, self.max_lag_s,
                )  # fmt: skip
            else:
                log.warning("read replica %s caught up (lag %.1fs)", self.name, reading.lag_s or 0.0)
        return reading

    def usable(self) -> bool:
        """Breaker lets a call through and the lag (re-measured when over a second old) is fine."""
        if self.breaker.state == "open":  # failed recently: not even a lag check until the probe
            return False
        if time.monotonic() - self.lag.at >= LAG_CHECK_S and self._lag_lock.acquire(blocking=False):
            try:
                self.measure_lag()
            finally:
                self._lag_lock.release()
        if self.lag.lag_s is None or self.lagging:
            return False
        return self.breaker.allow()

    def health(self) -> dict[str, Any]:
        reading = self.measure_lag()
        if reading.lag_s is None:
            status = "down"
        elif self.lagging:
            status = "lagging"
        else:
            status = "ok"
        entry: dict[str, Any] = {
            "url": self.name,
            "status": status,
            "lag_s": None if reading.lag_s is None else round(reading.lag_s, 3),
            "max_lag_s": self.max_lag_s,
            "circuit": self.breaker.state,
            "reads": self.reads,
        }
        if reading.error:
            entry["reason"] = reading.error
        return entry


class ReplicaSet:
    """The replicas of one primary, picked round-robin among the usable ones."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self._turn = itertools.count()

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def __len__(self) -> int:
        return len(self.replicas)

    def pick(self) -> Replica | None:
        count = len(self.replicas)
        start = next(self._turn)
        for offset in range(count):
            replica = self.replicas[(start + offset) % count]
            if replica.usable():
                return replica
        return None

    def health(self) -> dict[str, Any]:
        entries = [replica.health() for replica in self.replicas]
        status = "ok" if all(e["status"] == "ok" for e in entries) else "degraded"
        return {"status": status, "replicas": entries}

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()


def build_replicas(
    urls: tuple[str, ...], make_url: Callable[[str], tuple[str, str]], engine_options: dict[str, Any],
    max_lag_s: float, reset_after_s: float,
) -> ReplicaSet:  # fmt: skip
    """One engine per replica URL; connection failures on it become ReplicaUnavailableError."""
    replicas = []
    for raw in urls:
        url, display = make_url(raw)
        engine = create_engine(url, **engine_options)
        discard_dead_connections(engine)
        replica = Replica(url, display, engine, max_lag_s, reset_after_s)

        def _gone(ctx: ExceptionContext, replica: Replica = replica) -> None:
            if is_connection_failure(ctx):
                reason = str(ctx.original_exception).strip().splitlines()[0] if ctx.original_exception else ""
                replica.failed(reason or type(ctx.original_exception).__name__)
                raise ReplicaUnavailableError(f"read replica {replica.name} is unavailable: {reason}")

        event.listen(engine, "handle_error", _gone)
        replicas.append(replica)
    return ReplicaSet(replicas)


_REPLAYED = ("execute", "exec_driver_sql", "scalar", "scalars")


class FailoverConnection:
    """A replica connection that moves to the primary, mid-read, if the replica goes away.

    Quacks like ``sqlalchemy.Connection`` for reads (everything not overridden is delegated).
    psycopg fetches a statement's whole result when it runs (client-side cursors), so a
    replica that dies shows up in ``execute`` and the statement can be re-run elsewhere.
    """

    def __init__(self, conn: Connection, replica: Replica, open_primary: Callable[[], Connection]) -> None:
        self._conn = conn
        self._replica: Replica | None = replica
        self._open_primary = open_primary
        self._history: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    @property
    def on_replica(self) -> bool:
        return self._replica is not None

    def _run(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            result = getattr(self._conn, method)(*args, **kwargs)
        except ReplicaUnavailableError:
            if self._replica is None:
                raise
            self._fail_over()
            result = getattr(self._conn, method)(*args, **kwargs)
        if self._replica is not None:
            self._history.append((method, args, kwargs))
        return result

    def _fail_over(self) -> None:
        replica, self._replica = self._replica, None
        assert replica is not None
        replica.failovers += 1
        self._conn = self._open_primary()
        for method, args, kwargs in self._history:  # SET LOCALs and earlier reads: no side effects
            getattr(self._conn, method)(*args, **kwargs)
        self._history.clear()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("execute", args, kwargs)

    def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("exec_driver_sql", args, kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("scalar", args, kwargs)

    def scalars(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("scalars", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _close_quietly(conn: Connection) -> None:
    """Close a replica connection whose read is done: the closing ROLLBACK fails if the replica
    went away meanwhile, which must not turn an answered read into an error."""
    try:
        conn.close()
    except (ReplicaUnavailableError, DBAPIError):
        # A failed ROLLBACK of a connection SQLAlchemy saw die may already have closed (and
        # invalidated) it; invalidating it again would raise ResourceClosedError.
        if not conn.closed:
            conn.invalidate()


def replica_read(
    replicas: ReplicaSet, primary_read: Callable[[], AbstractContextManager[Connection]]
) -> AbstractContextManager[Connection]:
    """The context manager behind ``Database.read()`` when replicas are configured."""
    from contextlib import ExitStack, contextmanager

    @contextmanager
    def read() -> Iterator[Connection]:
        with ExitStack() as stack:
            replica = replicas.pick()
            conn: Connection | None = None
            if replica is not None:
                try:
                    conn = replica.engine.connect()
                    stack.callback(_close_quietly, conn)
                except ReplicaUnavailableError:
                    replica = None  # counted by the hook; the primary serves this one
            if replica is None or conn is None:
                yield stack.enter_context(primary_read())
                return
            failover = FailoverConnection(conn, replica, lambda: stack.enter_context(primary_read()))
            try:
                yield failover  # type: ignore[misc]
            finally:
                # The replica answered (a 404 or a bad filter is still an answer): close its
                # breaker if this was the probe. A failover already recorded the failure.
                if failover.on_replica:
                    replica.reads += 1
                    replica.succeeded()

    return read()
