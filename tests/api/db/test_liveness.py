"""A pooled connection the server ended is replaced at checkout, without a ping on the way."""

from __future__ import annotations

import socket

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.db.engine import Database
from api.db.liveness import has_input
from tests.api.services.net_servers import wait_until


def test_an_idle_socket_has_no_input_and_a_closed_peer_shows() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert not has_input(ours.fileno())
        theirs.close()
        assert has_input(ours.fileno())
    finally:
        ours.close()


def _backend(database: Database) -> int:
    with database.read() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_ended_in_the_pool_is_replaced_and_a_live_one_reused(migrated_database: Database) -> None:
    database = migrated_database
    assert not database.engine.pool._pre_ping  # no SELECT 1 round trip on each checkout
    database.engine.dispose()
    first = _backend(database)
    assert _backend(database) == first  # a healthy pooled connection is kept
    admin = create_engine(database.url, poolclass=NullPool)  # not from the pool under test
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
            gone = text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid")
            # Once the backend is gone, its goodbye is on the pooled socket.
            wait_until(lambda: conn.execute(gone, {"pid": first}).scalar(), 5)
    finally:
        admin.dispose()
    # The pool's one connection is the ended one: the next reads must not see it.
    for _ in range(3):
        assert _backend(database) != first
