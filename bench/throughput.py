"""Image-query throughput by topology: 1 vs 2 API processes, 1 vs 2 encoder instances.

    .venv/bin/python bench/throughput.py [--products 20000] [--requests 150] [--concurrency 8] [--rounds 2]

Same catalog (seeded like ``bench/http_search.py``: CLIP vectors from real clothing photos through
random-weight ViT-B-32, perturbed to the catalog size) and the same client for every topology:

- ``api x1``: ``lookalike serve --workers 1``, models in process;
- ``api x2``: ``lookalike serve --workers 2``;
- ``api + encoder x1``: ``lookalike encoder serve`` and ``LOOKALIKE_ENCODER_URL`` naming it;
- ``api + encoder x2``: two encoder services, both in ``LOOKALIKE_ENCODER_URL``.

Topologies run in turn and in reversed order on every other round, each from fresh processes
(empty in-process caches: every query is an uncached image upload, the same images each run).
Each run reports queries/s, p50/p99, errors (any non-200 is counted, not raised) and the modes
that served, plus where the requests went: per API process (``PROMETHEUS_MULTIPROC_DIR`` files,
one per pid, as ``/metrics`` sums them) and per encoder instance (its ``/health`` counters).
Admission control is opened wide (``LOOKALIKE_MAX_INFLIGHT`` etc.) so the numbers are capacity,
not shedding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.http_search import query_images, seed  # noqa: E402
from bench.report import print_table, write_results  # noqa: E402

SERVE = [sys.executable, "-m", "api.cli"]
TOPOLOGIES: dict[str, tuple[int, int]] = {
    "api x1": (1, 0),
    "api x2": (2, 0),
    "api + encoder x1": (1, 1),
    "api + encoder x2": (1, 2),
}
"""name -> (API worker processes, encoder instances)."""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_") and k != "DATABASE_URL"}
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up in {timeout:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


def per_process_requests(metrics_dir: Path, route: str) -> dict[str, float]:
    """``lookalike_http_requests_total{route=...}`` from each process's own file (pid -> count)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out: dict[str, float] = {}
    for file in metrics_dir.glob("counter_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        for family in MultiProcessCollector.merge([str(file)], accumulate=True):
            for sample in family.samples:
                if sample.name == "lookalike_http_requests_total" and sample.labels.get("route") == route:
                    out[pid] = out.get(pid, 0.0) + sample.value
    return {pid: count for pid, count in out.items() if count}


async def load(base: str, images: list[bytes], concurrency: int) -> dict[str, Any]:
    """Every image once, ``concurrency`` at a time; errors counted, never raised."""
    latencies: list[float] = []
    modes: dict[str, int] = {}
    errors: dict[str, int] = {}
    counter = iter(range(len(images)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/api/v1/search/image", files={"file": ("q.jpg", images[i], "image/jpeg")}
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    continue
                mode = response.json()["mode"]
                modes[mode] = modes.get(mode, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    q = np.percentile(latencies, [50, 99]) if latencies else [float("nan")] * 2
    return {
        "qps": round(sum(modes.values()) / wall, 2),
        "p50_ms": round(float(q[0]), 1),
        "p99_ms": round(float(q[1]), 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "modes": modes,
        "requests": len(images),
    }


def run_topology(
    name: str, args: argparse.Namespace, warm: list[bytes], timed: list[bytes], port: int
) -> dict[str, Any]:
    workers, encoders = TOPOLOGIES[name]
    processes: list[subprocess.Popen[bytes]] = []
    metrics_dir = Path(tempfile.mkdtemp(prefix="lookalike-throughput-metrics-"))
    encoder_urls = [f"http://127.0.0.1:{port + 1 + i}" for i in range(encoders)]
    common = {"LOOKALIKE_DATA_DIR": str(args.data_dir), "LOOKALIKE_CLIP_RANDOM_WEIGHTS": "1"}
    try:
        for url in encoder_urls:
            enc_port = url.rsplit(":", 1)[1]
            process = subprocess.Popen(
                [*SERVE, "encoder", "serve", "--port", enc_port, "--random-weights", "--no-mobilenet"],
                cwd=REPO_ROOT,
                env=_env(**common),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(process)
            _wait(f"{url}/health", process)
        api_env = _env(
            **common,
            LOOKALIKE_WORKERS=str(workers),
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            LOOKALIKE_MAX_INFLIGHT=str(args.concurrency),
            LOOKALIKE_ADMISSION_QUEUE="256",
            LOOKALIKE_ADMISSION_WAIT_MS="60000",
        )
        if encoder_urls:
            api_env["LOOKALIKE_ENCODER_URL"] = ",".join(encoder_urls)
        log = (args.log_dir / f"{name.replace(' ', '_')}-{time.strftime('%H%M%S')}.log").open("wb")
        api = subprocess.Popen(
            [*SERVE, "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=api_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(api)
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/api/v1/health", api)
        # Model warm-up, not timed; with several workers, until every one of them has answered
        # (a worker still loading its models accepts no connections, and the kernel hands them
        # all to the others).
        deadline = time.monotonic() + 300
        while True:
            asyncio.run(load(base, warm, args.concurrency))
            serving = len(per_process_requests(metrics_dir, "/api/v1/search/image"))
            if serving >= workers or time.monotonic() > deadline:
                break
        before_encoders = [_encoder_requests(url) for url in encoder_urls]
        before_api = per_process_requests(metrics_dir, "/api/v1/search/image")
        result = asyncio.run(load(base, timed, args.concurrency))
        after_api = per_process_requests(metrics_dir, "/api/v1/search/image")
        result["per_api_process"] = sorted(
            int(after_api[pid] - before_api.get(pid, 0.0)) for pid in after_api
        )
        result["per_encoder"] = [
            _encoder_requests(url) - before for url, before in zip(encoder_urls, before_encoders, strict=True)
        ]
        return {"topology": name, **result}
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _encoder_requests(url: str) -> int:
    """Image requests this encoder instance has answered (its /health counters)."""
    health = httpx.get(f"{url}/health", timeout=30).json()
    return int(health["batching"]["clip"]["images"]["requests"])


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--sources", type=int, default=300, help="real photos the vectors derive from")
    parser.add_argument("--requests", type=int, default=150, help="timed image queries per run")
    parser.add_argument("--warmup", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(TOPOLOGIES), help="run these topologies only")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/lookalike-bench-throughput"))
    parser.add_argument("--port", type=int, default=8785, help="API port; encoders use the next ones")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/lookalike-bench-throughput/logs"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/throughput.json")
    args = parser.parse_args()

    args.data_dir.mkdir(parents=True, exist_ok=True)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    seed(args.data_dir, args.products, args.sources)
    images = query_images(args.warmup + args.requests)
    warm, timed = images[: args.warmup], images[args.warmup :]
    names = args.only or list(TOPOLOGIES)
    rows: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        for name in names if round_no % 2 == 0 else list(reversed(names)):
            load_before = _loadavg()
            row = {"round": round_no + 1, **run_topology(name, args, warm, timed, args.port)}
            row["load_before"], row["load_after"] = load_before, _loadavg()
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_results(args.out, rows, products=args.products)
    keys = ("round", "topology", "qps", "p50_ms", "p99_ms", "errors", "modes", "per_api_process")
    print_table(
        "| round | topology | queries/s | p50 ms | p99 ms | errors | modes | per API process | per encoder | load |",
        [
            [
                *(row[k] for k in keys),
                row["per_encoder"] or "-",
                f"{row['load_before']} -> {row['load_after']}",
            ]
            for row in rows
        ],
    )
    print(f"\n(raw: {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
