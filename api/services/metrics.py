"""Search timings: per-request stage timers, recorded into the Prometheus instruments.

``/api/v1/stats`` used to keep its own rolling percentile deques per process, which were
wrong as soon as two processes served. It now reads the same histograms ``/metrics`` exposes
(aggregated over processes in multiprocess mode) and estimates p50/p95 from their buckets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from api.observability import instruments as m


class StageTimer:
    """Accumulates milliseconds per stage for one request (a stage may run more than once)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - start) * 1000

    def report(self) -> dict[str, float]:
        total = (time.perf_counter() - self.started) * 1000
        return {**{k: round(v, 3) for k, v in self.stages.items()}, "total": round(total, 3)}


def fallback_reason(reason: str) -> tuple[str, str]:
    """``"clip: <error>"`` -> (``clip``, a low-cardinality cause) for the fallback counter."""
    mode, _, message = reason.partition(": ")
    lowered = message.lower()
    if "circuit is open" in lowered:
        cause = "circuit_open"
    elif "timed out" in lowered or "timeout" in lowered:
        cause = "timeout"
    elif "not loaded" in lowered or "weights" in lowered:
        cause = "model_not_loaded"
    else:
        cause = "unavailable"
    return mode or "unknown", cause


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile from cumulative ``(upper bound, count)`` pairs (linear within a bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


class Metrics:
    """The search service's window onto the instruments; one per AppState, shared instruments."""

    def record(
        self, mode: str, timing: dict[str, float], cached: bool = False, reasons: Iterable[str] = ()
    ) -> None:
        m.SEARCHES_BY.get(mode, "true" if cached else "false").inc()
        m.CACHE_LOOKUPS_BY.get("hit" if cached else "miss").inc()
        for stage, ms in timing.items():
            m.SEARCH_STAGE_BY.get(stage, mode).observe(ms / 1000)
        for reason in reasons:
            skipped, cause = fallback_reason(reason)
            m.FALLBACKS.labels(skipped, mode, cause).inc()

    def summary(self) -> dict[str, object]:
        """``searches_by_mode`` and p50/p95 per stage, over every process sharing the metrics dir."""
        modes: dict[str, int] = {}
        cumulative: dict[str, dict[float, float]] = {}
        counts: dict[str, float] = {}
        for family in m.collect_registry().collect():
            if family.name == "lookalike_searches":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        mode = sample.labels["mode"]
                        modes[mode] = modes.get(mode, 0) + int(sample.value)
            elif family.name == "lookalike_search_stage_seconds":
                for sample in family.samples:
                    stage = sample.labels["stage"]
                    if sample.name.endswith("_bucket"):
                        bound = float(sample.labels["le"])
                        per_stage = cumulative.setdefault(stage, {})
                        per_stage[bound] = per_stage.get(bound, 0.0) + sample.value
                    elif sample.name.endswith("_count"):
                        counts[stage] = counts.get(stage, 0.0) + sample.value
        latency: dict[str, dict[str, float | int]] = {}
        for stage, by_bound in cumulative.items():
            buckets = sorted(by_bound.items())
            p50, p95 = histogram_quantile(0.5, buckets), histogram_quantile(0.95, buckets)
            if not counts.get(stage) or p50 is None or p95 is None:
                continue
            latency[stage] = {
                "count": int(counts[stage]),
                "p50_ms": round(p50 * 1000, 3),
                "p95_ms": round(p95 * 1000, 3),
            }
        return {"searches_by_mode": modes, "latency": latency}
