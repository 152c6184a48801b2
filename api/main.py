"""The FastAPI application: built from settings, migrates and wires services at startup."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.db import migrate
from api.db.catalog import Catalog
from api.db.engine import Database
from api.routes import health
from api.settings import Settings, get_settings
from api.state import AppState

log = logging.getLogger(__name__)


def build_state(settings: Settings) -> AppState:
    """Connect, check pgvector, migrate: everything that must hold before the first request."""
    database = Database(settings)
    info = database.check()
    log.info(
        "database %s: PostgreSQL %s, pgvector %s",
        database.display_url,
        info.postgres_version,
        info.pgvector_version,
    )
    migrate.upgrade(database)
    return AppState(settings=settings, database=database, catalog=Catalog.from_settings(settings))


def create_app(settings: Settings | None = None, state: AppState | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = state is None
        app.state.lookalike = state or build_state(settings)
        try:
            yield
        finally:
            if owned:
                app.state.lookalike.database.dispose()

    app = FastAPI(
        title="Lookalike",
        version="0.1.0",
        summary="Visual product search on PostgreSQL + pgvector",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    return app
