"""``lookalike serve --workers N``: several API processes on one port, behaving as one service.

The parent migrates once (under the migration advisory lock, so even separate hosts starting
together migrate once), then uvicorn's supervisor starts N worker processes that each build
their own state through :func:`app`. What they share lives outside them: the database (the
embedding queue is claimed with ``FOR UPDATE SKIP LOCKED``; category-index maintenance takes
an advisory lock), Redis (the result cache keys carry the catalog version, so a write in
one process invalidates every process's entries), and the Prometheus metrics directory
(``PROMETHEUS_MULTIPROC_DIR``), which ``/metrics`` in any worker sums over all of them.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""(Also in api.observability.instruments; not imported from there, since importing it loads
prometheus_client, which must first see this variable set.)"""


def prepare_metrics_dir() -> Path | None:
    """Point every worker at one metrics folder before any of them imports prometheus_client.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used (emptied: prometheus_client's files from
    a previous run would be summed in); otherwise a fresh temporary folder, returned so the
    caller removes it when the service stops.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    folder = Path(tempfile.mkdtemp(prefix="lookalike-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def remove_metrics_dir(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def app() -> FastAPI:
    """uvicorn's factory in each worker process (``api.workers:app``, ``factory=True``)."""
    from api.main import build_state, create_app
    from api.observability import logs
    from api.settings import get_settings

    settings = get_settings()
    logs.configure(settings.log_format)
    state = build_state(settings, migrate_database=False)  # the parent migrated, once
    pid = os.getpid()

    def _leave() -> None:
        state.close()
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)  # its live gauges stop counting

    atexit.register(_leave)
    app = create_app(settings, state, embed_worker=True)
    served = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        async with served(app_) as value:
            yield value
        # uvicorn ends a worker by re-raising the SIGTERM it caught once shutdown is done, with
        # the default handler back in place: the process dies without running its exit hooks.
        # Run them now: this worker's state, its metrics files, and its place on the embedded
        # PostgreSQL's list of users (the last user stops the server). atexit then has none left.
        atexit._run_exitfuncs()

    app.router.lifespan_context = lifespan
    log.info("API worker %d ready", pid)
    return app
