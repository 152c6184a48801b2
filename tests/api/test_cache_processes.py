"""Two real API processes on one database and one Redis serve one cache, and stay correct.

A result cached by process A is a hit in process B (same key, same page), and a product write
through either process changes the catalog version (a trigger bumps it, see
``api.services.catalog_version``), so the other process stops serving the older page: its next
answer is computed afresh, without the deleted product, within the version's short memory.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.services.test_cache import RedisServer
from tests.support import LOOKALIKE, REPO_ROOT, clean_env, free_port, wait_for_http

TOKEN = "cache-processes-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CLASSES = 4
PER_CLASS = 3


@pytest.fixture
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/system-deps.sh installs it)")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class Process:
    """One ``lookalike serve`` process on its own port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.server = subprocess.Popen(
            [*LOOKALIKE, "serve", "--port", str(self.port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def ready(self) -> None:
        wait_for_http(f"{self.url}/api/v1/health", self.server, timeout=240)

    def search(self, query: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/api/v1/search", json=query)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stop(self) -> None:
        self.client.close()
        self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self.log.close()


def _skus(page: dict[str, Any]) -> list[str]:
    return [hit["sku"] for hit in page["results"]]


def _fresh_on(process: Process, query: dict[str, Any], deadline_s: float = 5.0) -> dict[str, Any]:
    """The next page that ``process`` computes afresh. The catalog version a process remembers
    for at most 100 ms after another process's write is the only delay allowed."""
    deadline = time.monotonic() + deadline_s
    while True:
        page = process.search(query)
        if not page["cached"] or time.monotonic() > deadline:
            return page
        time.sleep(0.05)


@pytest.mark.slow
def test_two_processes_share_cached_results_and_see_each_others_writes(
    create_database: Callable[[], str], clothing_dataset: Path, redis_url: str, tmp_path: Path
) -> None:
    env = clean_env(
        DATABASE_URL=create_database(),
        REDIS_URL=redis_url,
        LOOKALIKE_CLIP_RANDOM_WEIGHTS="1",
        LOOKALIKE_CLIP_RUNTIME="torch",
        LOOKALIKE_DATA_DIR=str(tmp_path / "data"),
        LOOKALIKE_ADMIN_TOKEN=TOKEN,
        LOOKALIKE_PREWARM="false",
        LOOKALIKE_MAX_INFLIGHT="8",
    )
    a = Process(env, tmp_path / "a.log")
    b: Process | None = None
    try:
        a.ready()  # A migrates first; B then finds the schema at head
        b = Process(env, tmp_path / "b.log")
        b.ready()
        classes = sorted(p for p in (clothing_dataset / "train").iterdir() if p.is_dir())[:CLASSES]
        photos: dict[str, Path] = {}
        for class_dir in classes:
            for i, photo in enumerate(sorted(class_dir.glob("*.jpg"))[:PER_CLASS]):
                sku = f"{class_dir.name}-{i}"
                body = {
                    "sku": sku,
                    "name": f"{class_dir.name} no. {i}",
                    "category": class_dir.name,
                    "price": 10 + i,
                    "image": base64.b64encode(photo.read_bytes()).decode(),
                }
                response = a.client.post("/api/v1/products", json=body, headers=ADMIN)
                assert response.status_code == 201, response.text
                photos[sku] = photo
        sku, photo = next(iter(photos.items()))
        query = {"image": base64.b64encode(photo.read_bytes()).decode(), "top_k": 5}

        # A computes and caches the page; B is served A's entry from Redis, the same page.
        first = a.search(query)
        assert (first["cached"], first["mode"]) == (False, "clip")
        assert _skus(first)[0] == sku
        from_b = b.search(query)
        assert from_b["cached"] is True
        assert _skus(from_b) == _skus(first)

        # A write through A: B's next page is computed afresh, without the deleted product.
        gone = _skus(first)[1]
        assert a.client.delete(f"/api/v1/products/{gone}", headers=ADMIN).status_code == 204
        after_delete = _fresh_on(b, query)
        assert after_delete["cached"] is False, "B kept serving the page from before A's write"
        assert gone not in _skus(after_delete) and _skus(after_delete)[0] == sku
        # ... which B cached for A in turn.
        assert a.search(query)["cached"] is True
        assert _skus(a.search(query)) == _skus(after_delete)

        # A write through B (a price change): A stops serving its cached page too.
        response = b.client.patch(f"/api/v1/products/{sku}", json={"price": 99}, headers=ADMIN)
        assert response.status_code == 200, response.text
        after_patch = _fresh_on(a, query)
        assert after_patch["cached"] is False, "A kept serving the page from before B's write"
        top = after_patch["results"][0]
        assert top["sku"] == sku and float(top["price"]) == 99
        assert b.search(query)["cached"] is True
    finally:
        a.stop()
        if b is not None:
            b.stop()
