"""What a running API process holds: built once at startup, reached by routes via ``request``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from api.db.catalog import Catalog
from api.db.engine import Database
from api.settings import Settings


@dataclass
class AppState:
    settings: Settings
    database: Database
    catalog: Catalog


def app_state(request: Request) -> AppState:
    """FastAPI dependency: the process's AppState."""
    return request.app.state.lookalike
