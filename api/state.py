"""What a running API process holds: built once at startup, reached by routes via ``request``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from api.db.catalog import Catalog
from api.db.engine import Database
from api.services.cache import Cache
from api.services.encoders import EncoderHub
from api.services.metrics import Metrics
from api.services.products import ProductService
from api.services.search import SearchService
from api.settings import Settings


@dataclass
class AppState:
    settings: Settings
    database: Database
    catalog: Catalog
    hub: EncoderHub
    cache: Cache
    metrics: Metrics
    search: SearchService
    products: ProductService
    admin_token: str

    def close(self) -> None:
        self.hub.close()
        self.database.dispose()


async def app_state(request: Request) -> AppState:
    """FastAPI dependency: the process's AppState.

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in its thread
    pool, one thread hop per request for a dictionary lookup.
    """
    return request.app.state.lookalike
