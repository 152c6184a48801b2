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
    """Return (search can be served, per-component report)."""
    components = {"database": database_health(state)}
    serving = components["database"]["status"] == "ok"
    overall = "ok" if serving else "down"
    return serving, {"status": overall, "components": components}
