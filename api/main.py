"""The FastAPI application: built from settings, migrates and wires services at startup."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.cors import CorsMiddleware
from api.db import migrate
from api.db.catalog import Catalog
from api.db.engine import Database
from api.http_errors import install_error_handlers
from api.middleware import admit_search, admit_writes, search_gate
from api.middleware import install as install_guards
from api.observability.middleware import ObservabilityMiddleware
from api.routes import browse, catalog, compat, duplicates, health, products, search, web
from api.routes import metrics as metrics_routes
from api.services.cache import build_cache
from api.services.encoders import EncoderHub
from api.services.ingest.worker import start_embedding_worker
from api.services.metrics import Metrics
from api.services.products import ProductService
from api.services.search import SearchService
from api.settings import Settings, get_settings
from api.state import AppState

log = logging.getLogger(__name__)


def build_state(settings: Settings, *, migrate_database: bool = True, load_models: bool = True) -> AppState:
    """Connect, check pgvector, migrate, load models: everything that must hold before the first request."""
    database = Database(settings)
    if migrate_database:
        info = database.check()
        log.info(
            "database %s: PostgreSQL %s, pgvector %s",
            database.display_url,
            info.postgres_version,
            info.pgvector_version,
        )
        migrate.upgrade(database)
    catalog_ = Catalog.from_settings(settings)
    hub = EncoderHub(settings)
    if load_models:
        hub.load()
    cache = build_cache(settings.redis_url)
    metrics = Metrics()
    gate = search_gate(settings)  # searches and product writes share the encoders, so one bound
    admin_token = settings.admin_token
    if admin_token is None:
        admin_token = secrets.token_urlsafe(24)
        log.warning("LOOKALIKE_ADMIN_TOKEN is not set; this run's admin token is %s", admin_token)
    return AppState(
        settings=settings,
        database=database,
        catalog=catalog_,
        hub=hub,
        cache=cache,
        metrics=metrics,
        search=admit_search(SearchService(settings, database, catalog_, hub, cache, metrics), settings, gate),
        products=admit_writes(ProductService(settings, database, catalog_, hub), gate),
        admin_token=admin_token,
    )


def create_app(
    settings: Settings | None = None, state: AppState | None = None, *, embed_worker: bool | None = None
) -> FastAPI:
    """``embed_worker``: run the background embedding worker (default: only when the app builds
    its own state, i.e. a real server; tests that pass a state get no thread touching their rows)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = state is None
        app.state.lookalike = state or build_state(settings)
        worker = None
        if embed_worker if embed_worker is not None else owned:
            worker = start_embedding_worker(app.state.lookalike)
        app.state.embedding_worker = worker
        try:
            yield
        finally:
            if worker is not None:
                worker.close()
            if owned:
                app.state.lookalike.close()

    app = FastAPI(
        title="Lookalike",
        version="0.1.0",
        summary="Visual product search on PostgreSQL + pgvector",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_guards(app, settings)  # body-size limits, 503 overloaded (api.middleware)
    for module in (health, metrics_routes, search, products, catalog, compat, web):
        app.include_router(module.router)
    app.include_router(duplicates.router)  # admin: near-identical photos (issue 16)
    app.include_router(browse.router)  # shoppers browse a category without a query (issue 15)
    # Outside the guards, so error answers of public reads (413, 503, 4xx) carry the CORS headers too.
    app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    # Outermost: the request id and the HTTP metrics cover every answer, CORS and 503s included.
    app.add_middleware(ObservabilityMiddleware, access_log_lines=settings.log_format == "json")
    return app
