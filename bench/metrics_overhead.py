"""What the metrics and request-id instrumentation adds per request, measured in isolation.

    .venv/bin/python bench/metrics_overhead.py [--requests 20000] [--rounds 3]

A FastAPI app with one small JSON route is called through ASGI directly (no sockets, so no
network or client noise), once bare and once wrapped in ``ObservabilityMiddleware``; each
search also records its stage timings (``Metrics.record``), timed separately. Rounds alternate
bare and instrumented. The difference is the instrumentation's cost on the hot path, to be
read against a cached repeat's 1.2-2.2 ms end to end (benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from fastapi import FastAPI  # noqa: E402

from api.observability.middleware import ObservabilityMiddleware  # noqa: E402
from api.services.metrics import Metrics  # noqa: E402
from bench.report import write_results  # noqa: E402


def build(instrumented: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/products/{sku:path}")
    async def product(sku: str) -> dict[str, Any]:
        return {"sku": sku, "name": "Linen dress", "price": 49.9}

    if instrumented:
        app.add_middleware(ObservabilityMiddleware)
    return app


async def drive(app: FastAPI, requests: int) -> float:
    """Mean microseconds per request through the whole ASGI stack."""
    scope_base = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000), "headers": [(b"host", b"127.0.0.1:8000")],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    # lifespan-free: FastAPI builds its middleware stack on the first call
    start = time.perf_counter()
    for i in range(requests):
        path = f"/api/v1/products/DR-{i % 500}"
        await app({**scope_base, "path": path, "raw_path": path.encode()}, receive, send)
    return (time.perf_counter() - start) / requests * 1e6


def record_cost(calls: int) -> float:
    metrics = Metrics()
    timing = {"decode": 3.1, "cache": 0.2, "encode": 24.0, "search": 4.2, "total": 32.0}
    start = time.perf_counter()
    for _ in range(calls):
        metrics.record("clip", timing, False, ())
    return (time.perf_counter() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/metrics_overhead.json")
    args = parser.parse_args()
    bare, instrumented = build(False), build(True)
    asyncio.run(drive(bare, 2000))  # warm up both stacks
    asyncio.run(drive(instrumented, 2000))
    rows = []
    for round_ in range(1, args.rounds + 1):
        for side, app in (("bare", bare), ("instrumented", instrumented)):
            rows.append(
                {
                    "round": round_,
                    "side": side,
                    "us_per_request": round(asyncio.run(drive(app, args.requests)), 2),
                }
            )
            print(rows[-1], flush=True)
        rows.append(
            {"round": round_, "side": "Metrics.record", "us_per_search": round(record_cost(args.requests), 2)}
        )
        print(rows[-1], flush=True)
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
