"""Category-index maintenance never runs twice at once: with several API processes each one
syncs after its embedding rounds, and the advisory lock makes all but one step aside."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import text

from api.db.category_indexes import SYNC_LOCK_KEY, existing_indexes, sync
from api.settings import Settings
from tests.api.db.test_category_indexes import POLICY, _catalog

pytestmark = pytest.mark.slow  # builds indexes from two processes: not in `make test-fast`


def test_a_sync_held_elsewhere_is_skipped_then_runs_once_free(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> None:
    database, catalog, _, _ = _catalog(create_database, make_settings)
    try:
        lock = {"k": SYNC_LOCK_KEY, "t": catalog.qualified}
        with database.autocommit() as holder:  # "another process" mid-sync
            holder.execute(text("SELECT pg_advisory_lock(CAST(:k AS integer), hashtext(:t))"), lock)
            skipped = sync(database, catalog, POLICY)
            assert skipped.skipped and not skipped.created
            assert "another process" in skipped.render()
            holder.execute(text("SELECT pg_advisory_unlock(CAST(:k AS integer), hashtext(:t))"), lock)

        # Two at once: exactly one builds, the other steps aside (or finds them built).
        reports = []
        threads = [
            threading.Thread(target=lambda: reports.append(sync(database, catalog, POLICY))) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        created = [r.created for r in reports if r.created]
        assert len(created) == 1 and len(created[0]) == 3
        with database.engine.connect() as conn:
            assert len(existing_indexes(conn, catalog)) == 3
    finally:
        database.dispose()
