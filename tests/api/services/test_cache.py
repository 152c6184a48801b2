"""The result cache with a real Redis server, Redis dying under load, and the in-process fallback."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from api.services.cache import MemoryCache, RedisCache
from api.settings import Settings
from tests.api.conftest import ADMIN, ADMIN_TOKEN, b64, running_api, seed_catalog
from tests.support import free_port

pytestmark = pytest.mark.slow  # starts and kills Redis: not in `make test-fast`


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/system-deps.sh installs it)")
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


def test_redis_caches_results_and_search_survives_redis_dying(
    redis_server: RedisServer,
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
) -> None:
    settings = make_settings(
        database_url=create_database(), redis_url=redis_server.url, admin_token=ADMIN_TOKEN
    )
    with running_api(settings) as (client, state):
        products = seed_catalog(state, clothing_dataset)
        assert isinstance(state.cache, RedisCache)
        query = {"image": b64(products["dress-0"].read_bytes()), "top_k": 5}
        first = client.post("/api/v1/search", json=query).json()
        second = client.post("/api/v1/search", json=query).json()
        assert (first["cached"], second["cached"]) == (False, True)
        assert second["results"] == first["results"]
        keys = redis.Redis.from_url(redis_server.url).keys("lookalike:v1:*")
        assert any(k.startswith(b"lookalike:v1:result:") for k in keys)
        assert any(k.startswith(b"lookalike:v1:emb:") for k in keys)
        assert client.get("/api/v1/health").json()["components"]["cache"] == {
            "status": "ok",
            "backend": "redis",
        }

        # a write through the API bumps the catalog version: the cached page is not served again
        client.patch("/api/v1/products/dress-0", json={"description": "changed"}, headers=ADMIN)
        assert client.post("/api/v1/search", json=query).json()["cached"] is False

        redis_server.stop()
        started = time.monotonic()
        during = client.post("/api/v1/search", json=query)
        assert during.status_code == 200 and during.json()["cached"] is False
        assert [r["sku"] for r in during.json()["results"]] == [r["sku"] for r in first["results"]]
        assert time.monotonic() - started < 2.0
        health = client.get("/api/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["components"]["cache"]["status"] == "degraded"

        redis_server.start()
        state.cache.RETRY_AFTER_S = 0.0  # type: ignore[attr-defined]  # retry now instead of in 5 s
        assert client.get("/api/v1/health").json()["components"]["cache"]["status"] == "ok"
        client.post("/api/v1/search", json=query)
        assert client.post("/api/v1/search", json=query).json()["cached"] is True


def test_memory_cache_expires_and_stays_bounded() -> None:
    cache = MemoryCache(max_entries=3)
    cache.set("short", b"1", ttl_s=0)
    assert cache.get("short") is None
    for key in "abcd":
        cache.set(key, key.encode(), ttl_s=60)
    assert cache.get("a") is None  # least recently used went first
    assert cache.get("d") == b"d"
    assert (cache.hits, cache.misses) == (1, 2)


def test_shop_writes_that_bypass_the_api_invalidate_cached_results(
    create_database: Callable[[], str], make_settings: Callable[..., Settings], clothing_dataset: Path
) -> None:
    from sqlalchemy import text

    settings = make_settings(database_url=create_database(), admin_token=ADMIN_TOKEN)
    with running_api(settings) as (client, state):
        seed_catalog(state, clothing_dataset)
        query = {"text": "a hat", "top_k": 3}
        client.post("/api/v1/search", json=query)
        assert client.post("/api/v1/search", json=query).json()["cached"] is True
        with state.database.engine.begin() as conn:  # the shop's own admin tool, straight into PostgreSQL
            conn.execute(text("UPDATE products SET price = price + 1 WHERE sku = 'hat-0'"))
        assert client.post("/api/v1/search", json=query).json()["cached"] is False
