"""How /api/v1/stats reads the Prometheus histograms, and the fallback reasons' few label values."""

from __future__ import annotations

import pytest

from api.services.metrics import fallback_reason, histogram_quantile


def test_quantiles_from_cumulative_buckets() -> None:
    buckets = [(0.001, 0.0), (0.002, 50.0), (0.004, 90.0), (0.008, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.002)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.006)
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(float("inf"), 0.0)]) is None


def test_fallback_reasons_stay_few() -> None:
    assert fallback_reason("clip: encoder service circuit is open after 3 failures") == (
        "clip",
        "circuit_open",
    )
    assert fallback_reason("clip: ReadTimeout: timed out") == ("clip", "timeout")
    assert fallback_reason("clip: CLIP is not loaded") == ("clip", "model_not_loaded")
    assert fallback_reason("mobilenet_fallback: boom") == ("mobilenet_fallback", "unavailable")
