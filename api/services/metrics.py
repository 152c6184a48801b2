"""Per-stage latency samples for ``/api/v1/stats`` (p50/p95 over a rolling window)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

WINDOW = 2000


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


class Metrics:
    def __init__(self) -> None:
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))
        self._modes: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def record(self, mode: str, timing: dict[str, float]) -> None:
        with self._lock:
            self._modes[mode] += 1
            for stage, ms in timing.items():
                self._samples[stage].append(ms)

    def summary(self) -> dict[str, object]:
        with self._lock:
            stages = {
                stage: {
                    "count": len(values),
                    "p50_ms": round(float(np.percentile(list(values), 50)), 3),
                    "p95_ms": round(float(np.percentile(list(values), 95)), 3),
                }
                for stage, values in self._samples.items()
                if values
            }
            return {"searches_by_mode": dict(self._modes), "latency": stages}
