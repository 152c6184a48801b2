"""Read replicas over real streaming replication (issue 17): a primary and a ``pg_basebackup -R``
standby on this machine, both test-owned (tests/pg_cluster.py).

Proves that shopper reads run on the standby (they keep answering with the primary stopped,
and ``read()`` lands where ``pg_is_in_recovery()`` is true), that stopping the standby under
load costs no client an error, that reads return to it once it is back, and that a replica
lagging past ``LOOKALIKE_REPLICA_MAX_LAG_S`` is skipped until it catches up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from api.db import migrate
from api.db.engine import Database
from api.main import build_state, create_app
from api.services.encoders import RANDOM_SUFFIX
from api.settings import Settings
from api.state import AppState
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text
from tests.live_api import serve_in_thread
from tests.pg_cluster import LocalPostgres, wait_until

pytestmark = pytest.mark.slow  # runs real streaming replication: not in `make test-fast`

ROWS = 300
CLIENTS = 4


@dataclass
class Cluster:
    primary: LocalPostgres
    standby: LocalPostgres
    primary_url: str
    standby_url: str


def _sql(url: str, query: str) -> object:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cluster(make_settings: Callable[..., Settings]) -> Iterator[Cluster]:
    primary = LocalPostgres.create()
    primary.start()
    standby: LocalPostgres | None = None
    try:
        primary_url = primary.create_database("shop")
        settings = make_settings(database_url=primary_url)
        database = Database(settings)
        migrate.upgrade(database)
        vectors = clustered_unit_vectors(np.random.default_rng(7), ROWS)
        model = settings.clip_model + RANDOM_SUFFIX
        copy_products(
            database,
            "sku, name, category, price, image_embedding, image_model",
            (
                (
                    f"r-{i}",
                    f"Product {i} red dress",
                    ["dress", "shirt", "hat"][i % 3],
                    10 + i,
                    vector_text(v),
                    model,
                )
                for i, v in enumerate(vectors)
            ),
        )
        database.dispose()
        standby = primary.standby()
        standby.start()
        standby_url = standby.url("shop")
        wait_until(lambda: _sql(standby_url, "SELECT count(*) FROM products") == ROWS, timeout=60)
        yield Cluster(primary, standby, primary_url, standby_url)
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


@pytest.fixture(scope="module")
def replicated_api(
    cluster: Cluster, make_settings: Callable[..., Settings]
) -> Iterator[tuple[str, AppState]]:
    settings = make_settings(
        database_url=cluster.primary_url,
        max_inflight=64,  # admission is not under test here (tests/api/test_overload.py)
        database_replica_urls=(cluster.standby_url,),
        replica_max_lag_s=2.0,
        replica_circuit_reset_s=1.0,
        admin_token="replica-token",
    )
    state = build_state(settings)
    try:
        with serve_in_thread(create_app(settings, state, embed_worker=False)) as url:
            yield url, state
    finally:
        state.close()


def shopper_reads(client: httpx.Client, n: int) -> list[httpx.Response]:
    """Search (words, so uncached each time), "more like this", a product, the categories."""
    return [
        client.post("/api/v1/search", json={"text": f"red dress {n}", "top_k": 5}),
        client.get(f"/api/v1/products/r-{n % ROWS}/similar", params={"top_k": 5, "offset": n % 7}),
        client.get(f"/api/v1/products/r-{n % ROWS}"),
        client.get("/api/v1/categories"),
    ]


def test_reads_run_on_the_standby(cluster: Cluster, replicated_api: tuple[str, AppState]) -> None:
    url, state = replicated_api
    with state.database.read() as conn:
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
    with state.database.primary_read() as conn:
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
    # The strongest proof: with the primary stopped, every shopper read still answers.
    cluster.primary.stop("fast")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for n in range(5):
                for response in shopper_reads(client, n):
                    assert response.status_code == 200, response.text
                    if "mode" in response.json():
                        assert response.json()["mode"] in ("clip", "clip_text")  # served by CLIP
                        assert response.json()["count"] > 0
    finally:
        cluster.primary.start()
    health = httpx.get(f"{url}/api/v1/health", timeout=30).json()
    replicas = health["components"]["replicas"]["replicas"]
    assert len(replicas) == 1 and replicas[0]["status"] == "ok" and replicas[0]["lag_s"] is not None


def _load(url: str, stop: threading.Event, results: Counter[int], errors: list[str]) -> None:
    n = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            n += 1
            for response in shopper_reads(client, n):
                results[response.status_code] += 1
                if response.status_code != 200:
                    errors.append(
                        f"{response.request.url.path}: {response.status_code} {response.text[:200]}"
                    )


def test_standby_stopped_under_load_costs_no_client_error_and_reads_return(
    cluster: Cluster, replicated_api: tuple[str, AppState]
) -> None:
    url, state = replicated_api
    replica = next(iter(state.database.replicas or ()))
    results: Counter[int] = Counter()
    errors: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(url, stop, results, errors)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        served_before = replica.reads
        assert served_before > 0
        cluster.standby.stop("fast")  # mid-read for some of the clients
        time.sleep(3)
        during = replica.reads
        cluster.standby.start()
        # Back within the breaker's reset (1 s) plus a lag check: reads go to it again.
        wait_until(lambda: replica.reads > during + 10, timeout=30)
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors[:5]
    assert results[200] > 50
    assert replica.breaker.state == "closed"


def test_a_standby_gone_after_the_read_answered_keeps_the_answer(
    cluster: Cluster, replicated_api: tuple[str, AppState]
) -> None:
    """The standby's backend ends between the read's last statement and its closing ROLLBACK
    (what stopping it under load hits now and then): the caller keeps its rows, no error."""
    _, state = replicated_api

    def read_on_standby() -> bool:  # after the tests above, the replica may still be on probation
        with state.database.read() as conn:
            return conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True

    wait_until(read_on_standby, timeout=30)
    with state.database.read() as conn:
        pid, standby = conn.execute(text("SELECT pg_backend_pid(), pg_is_in_recovery()")).one()
        assert standby is True
        assert conn.execute(text("SELECT count(*) FROM products")).scalar() == ROWS
        assert _sql(cluster.standby_url, f"SELECT pg_terminate_backend({int(pid)})") is True
    with state.database.read() as conn:  # the pool hands out a live connection afterwards
        assert conn.execute(text("SELECT count(*) FROM products")).scalar() == ROWS


def test_a_lagging_standby_is_skipped_until_it_catches_up(
    cluster: Cluster, replicated_api: tuple[str, AppState]
) -> None:
    url, state = replicated_api
    replica = next(iter(state.database.replicas or ()))
    _sql(cluster.standby_url, "SELECT pg_wal_replay_pause()")
    try:
        state.products.upsert("fresh-1", {"name": "Fresh", "category": "dress", "price": 5}, None)
        time.sleep(2.5)  # past max_lag_s (2 s) of unreplayed WAL
        with httpx.Client(base_url=url, timeout=30) as client:
            wait_until(lambda: client.get("/api/v1/products/fresh-1").status_code == 200, timeout=10)
            health = client.get("/api/v1/health").json()
        entry = health["components"]["replicas"]["replicas"][0]
        assert entry["status"] == "lagging" and entry["lag_s"] > 2.0
        assert health["status"] == "degraded"
    finally:
        _sql(cluster.standby_url, "SELECT pg_wal_replay_resume()")
    wait_until(lambda: replica.measure_lag().lag_s is not None and not replica.lagging, timeout=30)
    with state.database.read() as conn:
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        assert conn.execute(text("SELECT count(*) FROM products WHERE sku = 'fresh-1'")).scalar() == 1
