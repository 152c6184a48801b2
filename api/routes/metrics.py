"""``GET /metrics``: the Prometheus exposition, for every API process sharing the metrics dir.

Gauges that describe shared state (queue depth, connections, circuits) are refreshed from
the source at scrape time by whichever process answers the scrape; counters and histograms
are kept by every process as requests happen.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.db.stats import queue_depth
from api.errors import DatabaseUnavailableError
from api.observability import instruments as m
from api.state import AppState, app_state

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)

_CIRCUIT_VALUE = {"closed": 0, "half_open": 1, "open": 2}


def _queue_depth(state: AppState) -> None:
    """New (no vector yet, has an image), stale (another model's vector) and failed rows."""
    catalog = state.catalog
    try:
        clip_model = state.hub.clip_model_id
    except Exception:  # the model is not loaded: nothing can be stale against it
        return
    try:
        with state.database.read() as conn:
            depth = queue_depth(conn, catalog, clip_model)
    except DatabaseUnavailableError:
        return
    except Exception as exc:  # e.g. a mapped image expression that fails on a new row: never fail a scrape
        log.debug("queue depth not available: %s", exc)
        return
    for name, rows in depth.items():
        m.QUEUE_DEPTH.labels(name).set(rows)


def _pools(state: AppState) -> None:
    databases: list[tuple[str, Any, Any]] = [("primary", state.database.engine, state.database.availability)]
    databases += [(r.name, r.engine, r.availability) for r in (state.database.replicas or ())]
    for name, engine, availability in databases:
        pool = engine.pool
        in_use = pool.checkedout() if hasattr(pool, "checkedout") else 0
        idle = pool.checkedin() if hasattr(pool, "checkedin") else 0
        m.DB_POOL.labels(name, "in_use").set(in_use)
        m.DB_POOL.labels(name, "idle").set(idle)
        m.DB_UP.labels(name).set(1 if availability.up else 0)


def _circuits(state: AppState) -> None:
    for instance, breaker in state.hub.circuits().items():
        m.CIRCUIT_STATE.labels(instance).set(_CIRCUIT_VALUE.get(breaker.state, 2))


def refresh_gauges(state: AppState) -> None:
    _queue_depth(state)
    _pools(state)
    _circuits(state)


@router.get("/metrics", include_in_schema=False)
def metrics(state: AppState = Depends(app_state)) -> Response:
    refresh_gauges(state)
    body, content_type = m.exposition()
    return Response(body, media_type=content_type)
