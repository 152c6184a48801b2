"""``GET /metrics``: the series issue 17 lists exist and move with requests; request ids come
back in ``X-Request-ID``; ``/api/v1/stats`` reads the same histograms."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import build_state, create_app
from api.observability.logs import JsonFormatter, RequestIdFilter
from api.settings import Settings
from api.state import AppState
from tests.support import free_port

ADMIN = {"Authorization": "Bearer metrics-token"}


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for (n, lab), v in samples.items() if n == name and set(labels.items()) <= set(dict(lab).items())
    )


@pytest.fixture(scope="module")
def app(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> Iterator[tuple[TestClient, AppState]]:
    # CLIP served by an encoder service that is not there: text searches fall back to full-text,
    # which is what makes the fallback and circuit series move.
    settings = make_settings(
        database_url=create_database(),
        admin_token="metrics-token",
        encoder_url=f"http://127.0.0.1:{free_port()}",
        encoder_circuit_failures=1,
    )
    state = build_state(settings)
    state.products.upsert("m-1", {"name": "Red summer dress", "category": "dress", "price": 20}, None)
    with TestClient(create_app(settings, state)) as client:
        yield client, state
    state.close()


def test_metrics_lists_the_series_and_they_move(app: tuple[TestClient, AppState]) -> None:
    client, _ = app
    before = scrape(client)
    for _ in range(3):
        response = client.post("/api/v1/search", json={"text": "red dress", "top_k": 5})
        assert response.status_code == 200
        assert response.json()["mode"] == "fulltext_fallback"
    assert client.get("/api/v1/products/m-1").status_code == 200
    after = scrape(client)

    route = "/api/v1/search"
    ok = {"route": route, "method": "POST", "status": "200"}
    assert (
        value(after, "lookalike_http_requests_total", **ok)
        - value(before, "lookalike_http_requests_total", **ok)
        == 3
    )
    assert value(after, "lookalike_http_request_duration_seconds_count", **ok) >= 3
    assert value(after, "lookalike_http_request_duration_seconds_bucket", le="+Inf", **ok) >= 3
    mode = {"mode": "fulltext_fallback"}
    assert (
        value(after, "lookalike_searches_total", **mode) - value(before, "lookalike_searches_total", **mode)
        == 3
    )
    for stage in ("cache", "total"):
        assert value(after, "lookalike_search_stage_seconds_count", stage=stage, **mode) >= 3, stage
    assert value(after, "lookalike_search_stage_seconds_count", stage="search", **mode) >= 1  # the miss
    # First search: a miss; the two repeats come from the result cache.
    assert (
        value(after, "lookalike_cache_lookups_total", result="hit")
        - value(before, "lookalike_cache_lookups_total", result="hit")
        == 2
    )
    assert value(after, "lookalike_cache_lookups_total", result="miss") >= 1
    assert (
        value(after, "lookalike_fallbacks_total", skipped_mode="clip", served_mode="fulltext_fallback") >= 1
    )
    assert value(after, "lookalike_encoder_circuit_state") == 2  # open: the service is not there
    for state_ in ("new", "stale", "failed"):
        assert ("lookalike_embedding_queue_rows", (("state", state_),)) in after
    assert ("lookalike_embedded_images_total", ()) in after
    assert value(after, "lookalike_db_pool_connections", database="primary", state="idle") >= 1
    assert value(after, "lookalike_database_up", database="primary") == 1
    # A route template, never the raw path: one series however many SKUs are asked for.
    assert (
        value(after, "lookalike_http_requests_total", route="/api/v1/products/{sku:path}") >= 1
        or value(after, "lookalike_http_requests_total", route="/api/v1/products/{sku}") >= 1
    )


def test_request_id_is_made_or_echoed(app: tuple[TestClient, AppState]) -> None:
    client, _ = app
    made = client.get("/api/v1/categories").headers["x-request-id"]
    assert len(made) == 32
    assert (
        client.get("/api/v1/categories", headers={"X-Request-ID": "edge-42.a"}).headers["x-request-id"]
        == "edge-42.a"
    )
    # A hostile id (header injection, megabytes) is replaced, not echoed.
    replaced = client.get("/api/v1/categories", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
    assert replaced != "x" * 500 and len(replaced) == 32
    assert client.get("/nope").headers["x-request-id"]  # 404s too


def test_stats_reads_the_same_histograms(app: tuple[TestClient, AppState]) -> None:
    client, _ = app
    client.post("/api/v1/search", json={"text": "summer", "top_k": 3})
    stats = client.get("/api/v1/stats", headers=ADMIN).json()
    samples = scrape(client)
    assert stats["searches_by_mode"]["fulltext_fallback"] == value(
        samples, "lookalike_searches_total", mode="fulltext_fallback"
    )
    total = stats["latency"]["total"]
    assert total["count"] == value(samples, "lookalike_search_stage_seconds_count", stage="total")
    assert 0 < total["p50_ms"] <= total["p95_ms"]


def test_json_log_lines_carry_the_request_id() -> None:
    from api.observability.logs import REQUEST_ID

    record = logging.makeLogRecord(
        {"name": "x", "levelno": 20, "levelname": "INFO", "msg": "hello %s", "args": ("you",)}
    )
    token = REQUEST_ID.set("abc123")
    try:
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "hello you" and line["request_id"] == "abc123" and line["level"] == "info"
