"""The Prometheus instruments every part of the service records into.

One set per process, defined at import. With several API processes (``lookalike serve
--workers N``) ``PROMETHEUS_MULTIPROC_DIR`` must be set *before* prometheus_client is first
imported: each process then writes its samples to memory-mapped files in that folder and
``/metrics`` (any process) sums them, so a scrape sees the whole service, not one worker.
``api.cli`` sets it up for ``--workers``; ``/api/v1/stats`` reads these same instruments.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Dense where the service lives (1-100 ms) so /api/v1/stats can read p50/p95 from
# the buckets to within a few percent, sparse beyond (timeouts, overload).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025,
    0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    "lookalike_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "lookalike_http_request_duration_seconds",
    "Time from request to response, by route template, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
SEARCHES = Counter(
    "lookalike_searches_total", "Searches served, by mode and whether the result cache served them.",
    ["mode", "cached"],
)  # fmt: skip
SEARCH_STAGE = Histogram(
    "lookalike_search_stage_seconds",
    "Time per search stage (decode, cache, encode, search, total), by search mode.",
    ["stage", "mode"],
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "lookalike_cache_lookups_total", "Result-cache lookups of searches, by result (hit, miss).", ["result"]
)
FALLBACKS = Counter(
    "lookalike_fallbacks_total",
    "Searches served by a fallback mode, by the mode that could not serve and why.",
    ["skipped_mode", "served_mode", "reason"],
)
CIRCUIT_STATE = Gauge(
    "lookalike_encoder_circuit_state",
    "Encoder-service circuit breaker per instance: 0 closed, 1 half-open, 2 open.",
    ["instance"],
    multiprocess_mode="max",
)
QUEUE_DEPTH = Gauge(
    "lookalike_embedding_queue_rows",
    "Products waiting for the embedding worker (new, stale model, failed), read at scrape time.",
    ["state"],
    multiprocess_mode="mostrecent",
)
EMBEDDED = Counter(
    "lookalike_embedded_images_total", "Images embedded by the embedding workers (rate() = embed rate)."
)
EMBED_FAILURES = Counter("lookalike_embed_failures_total", "Images the embedding workers could not embed.")
DB_POOL = Gauge(
    "lookalike_db_pool_connections",
    "Database connections held by the pool, by state (in_use, idle), per database role.",
    ["database", "state"],
    multiprocess_mode="livesum",
)
DB_UP = Gauge(
    "lookalike_database_up",
    "1 while the database answers, 0 during an outage, per database role.",
    ["database"],
    multiprocess_mode="min",
)


class Children:
    """Label children of one metric, looked up once: ``metric.labels(...)`` validates and locks on
    every call, which on the hot path (every request, every search stage) costs more than the
    observation itself."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def get(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


HTTP_REQUESTS_BY = Children(HTTP_REQUESTS)
HTTP_LATENCY_BY = Children(HTTP_LATENCY)
SEARCHES_BY = Children(SEARCHES)
SEARCH_STAGE_BY = Children(SEARCH_STAGE)
CACHE_LOOKUPS_BY = Children(CACHE_LOOKUPS)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> tuple[bytes, str]:
    """The text a scrape gets: this process's registry, or every process's in multiprocess mode."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


def collect_registry() -> CollectorRegistry:
    """A registry to read values from (for /api/v1/stats): aggregated over processes when shared."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return DEFAULT_REGISTRY
