"""``lookalike serve --workers 2``: two real API processes on one port behave as one service.

One migration run (by the parent), a shared queue of 500 rows embedded exactly once by the
two processes' embedding workers, and ``/metrics`` summed over both processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.support import LOOKALIKE, REPO_ROOT, clean_env, free_port, wait_for_http

ROWS = 500


def metric(url: str, name: str, **labels: str) -> float:
    body = httpx.get(f"{url}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and set(labels.items()) <= set(sample.labels.items()):
                total += sample.value
    return total


def per_process(metrics_dir: Path, name: str, **labels: str) -> dict[str, float]:
    """The same series read from each process's own file (the sum is what /metrics shows)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out: dict[str, float] = {}
    for file in metrics_dir.glob("counter_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        for family in MultiProcessCollector.merge([str(file)], accumulate=True):
            for sample in family.samples:
                if sample.name == name and set(labels.items()) <= set(sample.labels.items()):
                    out[pid] = out.get(pid, 0.0) + sample.value
    return out


@pytest.mark.slow
def test_two_processes_share_the_queue_and_the_metrics(
    create_database: Callable[[], str], clothing_dataset: Path, tmp_path: Path
) -> None:
    database_url = create_database()
    photos = sorted((clothing_dataset / "train").rglob("*.jpg"))[:ROWS]
    assert len(photos) == ROWS
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    env = clean_env(
        DATABASE_URL=database_url,
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="1",
        LOOKALIKE_CLIP_RUNTIME="torch",
        LOOKALIKE_IMAGE_ROOT=str(clothing_dataset),
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_ADMIN_TOKEN="workers-token",
        LOOKALIKE_LOG_FORMAT="json",
        LOOKALIKE_PREWARM="false",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    log_path = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as out:
        server = subprocess.Popen(
            [*LOOKALIKE, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"{url}/api/v1/health", server, timeout=240)
            # The queue: 500 products with photos and no vectors, written behind the API's back.
            engine = create_engine(database_url)
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO products (sku, name, category, image_url) VALUES (:s, :n, :c, :u)"),
                    [
                        {
                            "s": f"q-{i}",
                            "n": p.stem,
                            "c": p.parent.name,
                            "u": str(p.relative_to(clothing_dataset)),
                        }
                        for i, p in enumerate(photos)
                    ],
                )
            # Both workers' embedding loops poll; wake them now instead of in 30 s: restart-free,
            # the loops also run right after start-up, so poll until every row has vectors.
            deadline = time.monotonic() + 600
            done = 0
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(
                        text("SELECT count(*) FROM products WHERE image_embedding IS NOT NULL")
                    ).scalar_one()
                if done == ROWS:
                    break
                time.sleep(2)
            engine.dispose()
            assert done == ROWS

            # Exactly once: the two processes' counters sum to the queue's length, no more.
            assert metric(url, "lookalike_embedded_images_total") == ROWS
            # /metrics is the sum over both processes, whichever one answers the scrape.
            before = metric(url, "lookalike_http_requests_total", route="/api/v1/categories")
            ids = set()
            with httpx.Client(base_url=url) as client:
                for _ in range(30):
                    with httpx.Client(base_url=url) as fresh:  # new connections: both workers answer
                        response = fresh.get("/api/v1/categories")
                    assert response.status_code == 200
                    ids.add(response.headers["x-request-id"])
                assert client.get("/api/v1/health").status_code == 200
            after = metric(url, "lookalike_http_requests_total", route="/api/v1/categories")
            assert after - before == 30
            served = per_process(metrics_dir, "lookalike_http_requests_total", route="/api/v1/categories")
            print("categories requests per process:", served)
            assert sum(served.values()) == after
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, log_path.read_text()[-2000:]
    # One migration run: every alembic line comes from one process (the parent).
    migrators = {line["pid"] for line in lines if line["logger"].startswith("alembic")}
    assert len(migrators) == 1, migrators
    workers = {line["pid"] for line in lines if line["message"].startswith("API worker")}
    assert len(workers) == 2
    # Each request's access line carries the id the client got back.
    logged_ids = {line.get("request_id") for line in lines if line["logger"] == "lookalike.access"}
    assert ids <= logged_ids
