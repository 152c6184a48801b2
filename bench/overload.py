"""Admission control under overload: photo searches at 1x, 2x and 4x the measured capacity.

    .venv/bin/python bench/overload.py [--products 20000] [--seconds 20] [--rounds 2]

Seeds a catalog like bench/http_search.py (its own data dir), then alternates two real
``lookalike serve`` processes: A with admission control as configured (``LOOKALIKE_MAX_INFLIGHT``
default, or ``--max-inflight``), B with it effectively off (a limit of 100000). Each run measures:

1. unloaded: one client, one request at a time (p50/p99);
2. capacity: a closed loop at the admission limit's concurrency (requests/s; measured in the
   first A run and reused, so every run gets the same offered loads);
3. open-loop arrivals (Poisson) at 1x, 2x and 4x that capacity for ``--seconds`` each: admitted
   requests' p50/p99, the 503 ``overloaded`` answers' p50/p99/max, and any other outcome.

Every request is an uncached upload (distinct JPEG bytes). The client runs on the same machine
as the server, as in the other HTTP benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.http_search import _multipart, query_images, seed  # noqa: E402
from bench.report import BLANK, print_table, write_results  # noqa: E402

OFF = 100_000
"""An admission limit no load here reaches: admission control effectively off (run B)."""


class Images:
    """Prebuilt multipart bodies, each used once per server run (a repeat would be a cache hit)."""

    def __init__(self, count: int, cache_dir: Path) -> None:
        started = time.perf_counter()
        # Kept between invocations: building them took minutes on a busy machine.
        cached = cache_dir / f"query-bodies-{count}.pickle"
        if cached.exists():
            self.bodies = pickle.loads(cached.read_bytes())
        else:
            self.bodies = [_multipart(image) for image in query_images(count)]
            cached.write_bytes(pickle.dumps(self.bodies))
        self.next = 0
        print(f"{count} distinct query images ready in {time.perf_counter() - started:.0f}s", flush=True)

    def reset(self) -> None:
        self.next = 0

    def take(self) -> tuple[bytes, str]:
        body = self.bodies[self.next % len(self.bodies)]
        self.next += 1
        return body


async def _one(client: httpx.AsyncClient, images: Images) -> tuple[str, float]:
    body, content_type = images.take()
    started = time.perf_counter()
    try:
        response = await client.post(
            "/api/v1/search/image", content=body, headers={"content-type": content_type}
        )
    except httpx.HTTPError as exc:
        return f"client error {type(exc).__name__}", (time.perf_counter() - started) * 1000
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code == 200:
        return "ok", elapsed
    if response.status_code == 503 and response.json().get("error", {}).get("code") == "overloaded":
        assert response.headers.get("retry-after"), "503 overloaded without Retry-After"
        return "overloaded", elapsed
    return f"HTTP {response.status_code}", elapsed


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    q = np.percentile(values, [50, 99])
    return {"p50_ms": round(float(q[0]), 1), "p99_ms": round(float(q[1]), 1), "max_ms": round(max(values), 1)}


async def closed_loop(base: str, images: Images, concurrency: int, total: int) -> dict[str, Any]:
    outcomes: list[tuple[str, float]] = []
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            for _ in counter:
                outcomes.append(await _one(client, images))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ok = [ms for kind, ms in outcomes if kind == "ok"]
    return {
        "concurrency": concurrency,
        "requests": total,
        "ok_per_s": round(len(ok) / wall, 1),
        "outcomes": dict(Counter(kind for kind, _ in outcomes)),
        **_quantiles(ok),
    }


BUCKET = re.compile(
    r"^lookalike_http_request_duration_seconds_bucket\{(?P<labels>[^}]*)\} (?P<count>[0-9.e+]+)$", re.M
)


def server_histograms(base: str) -> dict[str, dict[float, float]]:
    """Cumulative request-duration buckets the server itself recorded for POSTs, by status
    ("200", "503"): the server's side of each answer, without the client's own delays (the
    client shares the machine)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    out: dict[str, dict[float, float]] = {}
    for match in BUCKET.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("method") != "POST" or labels.get("status") not in ("200", "503"):
            continue
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        buckets = out.setdefault(labels["status"], {})
        buckets[le] = buckets.get(le, 0.0) + float(match["count"])
    return out


def server_side(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, Any]:
    """Per status: answers during the load, the bucket bound holding their p99, and the share
    answered within 50 ms, from the server's histogram."""
    summary: dict[str, Any] = {}
    for status, buckets in after.items():
        delta = {le: n - before.get(status, {}).get(le, 0.0) for le, n in sorted(buckets.items())}
        total = delta.get(float("inf"), 0.0)
        if total <= 0:
            continue
        p99 = next(le for le, n in delta.items() if n >= 0.99 * total)
        within_50 = max((n for le, n in delta.items() if le <= 0.05), default=0.0)
        summary[status] = {
            "count": int(total),
            "p99_le_ms": None if p99 == float("inf") else round(p99 * 1000, 1),
            "share_within_50ms": round(within_50 / total, 3),
        }
    return summary


async def open_loop(base: str, images: Images, rate: float, seconds: float) -> dict[str, Any]:
    """Poisson arrivals at ``rate`` per second, whatever the server's answers take."""
    outcomes: list[tuple[str, float]] = []
    rng = random.Random(0)
    limits = httpx.Limits(max_connections=2048, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        tasks = []
        started = time.perf_counter()
        at = 0.0
        while at < seconds:
            delay = started + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(client, images)))
            at += rng.expovariate(rate)
        outcomes = list(await asyncio.gather(*tasks))
        wall = time.perf_counter() - started
    ok = [ms for kind, ms in outcomes if kind == "ok"]
    refused = [ms for kind, ms in outcomes if kind == "overloaded"]
    return {
        "offered_per_s": round(rate, 1),
        "requests": len(outcomes),
        "ok_per_s": round(len(ok) / wall, 1),
        "outcomes": dict(Counter(kind for kind, _ in outcomes)),
        "admitted": _quantiles(ok),
        "overloaded": _quantiles(refused),
    }


def start_server(
    data_dir: Path, port: int, max_inflight: int | None, queue: int | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_") and k != "DATABASE_URL"}
    env.update(LOOKALIKE_DATA_DIR=str(data_dir), LOOKALIKE_CLIP_RANDOM_WEIGHTS="1")
    if max_inflight is not None:
        env["LOOKALIKE_MAX_INFLIGHT"] = str(max_inflight)
    if queue is not None:
        env["LOOKALIKE_ADMISSION_QUEUE"] = str(queue)
    try:
        httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
        raise SystemExit(f"something already listens on port {port}; pick another with --port")
    except httpx.TransportError:
        pass
    log = (data_dir / "serve.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.terminate()
            server.wait(30)
            raise SystemExit(f"server did not come up; see {data_dir / 'serve.log'}")
        time.sleep(0.5)


async def one_run(
    base: str, images: Images, limit: int, capacity: float | None, args: argparse.Namespace
) -> tuple[dict[str, Any], float]:
    images.reset()
    load_before = os.getloadavg()[0]
    await closed_loop(base, images, 2, 20)  # warm-up: first passes, connections, caches
    unloaded = await closed_loop(base, images, 1, args.unloaded_requests)
    print(f"  unloaded      {unloaded}", flush=True)
    measured = await closed_loop(base, images, limit, args.capacity_requests)
    print(f"  capacity c={limit:<3} {measured}", flush=True)
    capacity = capacity or measured["ok_per_s"]
    loads = {}
    for factor in args.factors:
        before = server_histograms(base)
        result = await open_loop(base, images, capacity * factor, args.seconds)
        result["server"] = server_side(before, server_histograms(base))
        loads[f"{factor}x"] = result
        print(f"  {factor}x = {capacity * factor:5.1f}/s {result}", flush=True)
        await asyncio.sleep(2)  # let a backlog (run B) drain before the next load
    # The machine's 1-minute load average around the run: other work on a shared machine
    # inflates every figure, so it goes into the table beside them.
    loadavg = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    print(f"  load average {loadavg[0]} -> {loadavg[1]}", flush=True)
    return {"unloaded": unloaded, "capacity_run": measured, "loads": loads, "loadavg": loadavg}, capacity


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument(
        "--max-inflight", type=int, default=None, help="run A's limit (default: the server's)"
    )
    parser.add_argument(
        "--queue", type=int, default=None, help="run A's admission queue (default: the server's)"
    )
    parser.add_argument("--only-a", action="store_true", help="skip run B (admission off)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per offered load")
    parser.add_argument("--factors", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs, alternated")
    parser.add_argument("--unloaded-requests", type=int, default=100)
    parser.add_argument("--capacity-requests", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-overload"))
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/overload.json")
    args = parser.parse_args()

    args.data_dir.mkdir(parents=True, exist_ok=True)
    seed(args.data_dir, args.products, args.sources)
    from api.middleware.admission import default_inflight

    limit = args.max_inflight or default_inflight()
    expected = args.unloaded_requests + args.capacity_requests + 20
    expected += int(sum(args.factors) * args.seconds * 50)  # capacity is unknown yet: ~35/s on 2 cores
    images = Images(min(expected, 12_000), args.data_dir)
    base = f"http://127.0.0.1:{args.port}"
    runs: list[dict[str, Any]] = []
    capacity: float | None = None
    for round_ in range(args.rounds):
        servers = [("A admission", args.max_inflight), ("B no admission", OFF)][: 1 if args.only_a else 2]
        for name, server_limit in servers:
            print(f"round {round_ + 1}, {name} (limit {server_limit or limit})", flush=True)
            server = start_server(
                args.data_dir, args.port, server_limit, args.queue if server_limit != OFF else None
            )
            try:
                result, measured = asyncio.run(one_run(base, images, limit, capacity, args))
            finally:
                server.terminate()
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:  # buried under a backlog (run B)
                    server.kill()
                    server.wait(30)
            capacity = capacity or measured
            runs.append(
                {
                    "round": round_ + 1,
                    "server": name,
                    "limit": server_limit or limit,
                    "queue": args.queue,
                    **result,
                }
            )
    write_results(args.out, runs, key="runs", products=args.products, capacity_per_s=capacity)
    table: list[list[object]] = []
    for run in runs:
        label = f"{run['round']} {run['server']} ({run['limit']})"
        loadavg = "-".join(str(x) for x in run["loadavg"])
        unloaded = run["unloaded"]
        ok, p50, p99 = unloaded["ok_per_s"], unloaded["p50_ms"], unloaded["p99_ms"]
        table.append([label, loadavg, "unloaded", "-", ok, p50, p99, *[BLANK] * 6])
        for load, row in run["loads"].items():
            other = sum(n for kind, n in row["outcomes"].items() if kind not in ("ok", "overloaded"))
            a, o = row["admitted"], row["overloaded"]
            ratio = f"{a['p99_ms'] / unloaded['p99_ms']:.1f}x" if a["p99_ms"] and unloaded["p99_ms"] else ""
            admitted = [row["offered_per_s"], row["ok_per_s"], a["p50_ms"], a["p99_ms"], ratio]
            refused = [row["outcomes"].get("overloaded", 0), o["p50_ms"], o["p99_ms"], o["max_ms"], other]
            table.append([label, loadavg, load, *admitted, *refused])
    print_table(
        "| run | loadavg | load | offered/s | ok/s | admitted p50 | admitted p99 | p99 / unloaded p99 "
        "| 503s | 503 p50 | 503 p99 | 503 max | other |",
        table,
    )
    print(f"\n(raw: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
