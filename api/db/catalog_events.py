"""Wake the embedding worker when the shop writes rows: ``LISTEN`` for the catalog trigger's NOTIFY.

A shop's backend writes products with its own ORM, never through our API, so without this a
new product waits for the worker's next poll (30 s). The trigger (api.db.catalog_objects) sends
a NOTIFY on commit of any insert, delete or image change; the worker waits on this listener
instead of sleeping, and the poll stays as the safety net (a lost connection, images that are
expressions into other tables).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import psycopg
from sqlalchemy.engine import make_url

from api.db.catalog_objects import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

CHECK_STOP_S = 0.5
"""Longest a wait goes without looking at the stop flag."""
SETTLE_S = 0.05
"""After a notification, collect the rest of a burst (a bulk import notifies per statement)."""


def libpq_url(sqlalchemy_url: str) -> str:
    """The connection string psycopg takes, from the SQLAlchemy URL the engine uses."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class CatalogListener:
    """One dedicated autocommit connection that LISTENs; reconnects lazily after a failure."""

    def __init__(self, url: str, channel: str = NOTIFY_CHANNEL) -> None:
        self._url = libpq_url(url)
        self._channel = channel
        self._conn: psycopg.Connection | None = None
        self._warned = False

    def _connection(self) -> psycopg.Connection | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=10, application_name="lookalike-listen"
            )
            conn.execute(f'LISTEN "{self._channel}"')
        except psycopg.Error as exc:
            if not self._warned:
                log.warning("cannot LISTEN for catalog changes (%s): polling only", exc)
                self._warned = True
            return None
        self._conn, self._warned = conn, False
        return conn

    def start(self) -> bool:
        """Connect and LISTEN now; notifications from then on are queued for the next wait."""
        return self._connection() is not None

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Block until a notification, ``stop``, or ``timeout``; True when notified."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            conn = self._connection()
            if conn is None:
                stop.wait(min(left, CHECK_STOP_S))
                continue
            try:
                got = any(True for _ in conn.notifies(timeout=min(left, CHECK_STOP_S), stop_after=1))
                if got:
                    # Drain the rest of a burst so one import is one round, not one per statement.
                    for _ in conn.notifies(timeout=SETTLE_S):
                        pass
                    return True
            except psycopg.Error as exc:
                log.warning("catalog listener lost its connection (%s); reconnecting", exc)
                self.close()
        return False

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
