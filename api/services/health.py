"""Component health: what each part of the service reports, and whether search can be served."""

from __future__ import annotations

from typing import Any

from api.errors import DatabaseUnavailableError
from api.state import AppState


def database_health(state: AppState) -> dict[str, Any]:
    try:
        info = state.database.check()
    except DatabaseUnavailableError as exc:
        return {"status": "down", "reason": str(exc)}
    return {
        "status": "ok",
        "postgres_version": info.postgres_version,
        "pgvector_version": info.pgvector_version,
        "products_table": f"{state.catalog.schema}.{state.catalog.table}",
    }


def health_report(state: AppState) -> tuple[bool, dict[str, Any]]:
    """Return (search can be served, report). Degraded = serving, but not at full strength."""
    components = {"database": database_health(state), **state.hub.health(), "cache": state.cache.health()}
    if state.database.replicas:
        # Each replica with its lag; one down or lagging is "degraded": the primary serves its reads.
        components["replicas"] = state.database.replicas.health()
    database_up = components["database"]["status"] == "ok"
    # Text search always has full-text; image search needs one of the two image encoders.
    image_search = components["clip"]["status"] == "ok" or components["fallback_encoder"]["status"] == "ok"
    serving = database_up and image_search
    healthy = serving and all(c["status"] == "ok" for c in components.values())
    status = "ok" if healthy else "degraded" if serving else "down"
    return serving, {"status": status, "components": components}
