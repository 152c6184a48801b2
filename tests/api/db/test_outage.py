"""PostgreSQL stopped under load: only 503 ``database_unavailable`` with ``Retry-After``, one
log line when it goes and one when it is back, no traceback, and recovery without a restart
(issue 14 item 5). The server is test-owned (tests/pg_cluster.py) so stopping it harms no one."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from api.main import build_state, create_app
from api.settings import Settings
from tests.live_api import serve_in_thread
from tests.pg_cluster import LocalPostgres

pytestmark = pytest.mark.slow  # stops PostgreSQL under load: not in `make test-fast`

CLIENTS = 4


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    server = LocalPostgres.create()
    server.start()
    yield server
    server.destroy()


def _load(
    url: str, stop: threading.Event, phase: list[int], results: list[Counter[tuple[int, str]]], bad: list[str]
) -> None:
    """One client: a text search, a product read and the category list, round and round;
    each answer is counted under the phase it was sent in."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            for method, path, body in (
                ("POST", "/api/v1/search", {"text": "red dress", "top_k": 5}),
                ("GET", "/api/v1/products/sku-1", None),
                ("GET", "/api/v1/categories", None),
            ):
                sent_in = phase[0]
                response = client.request(method, path, json=body)
                code = ""
                if response.status_code >= 400:
                    code = response.json()["error"]["code"]
                    if response.status_code == 503 and "Retry-After" not in response.headers:
                        bad.append(f"{path}: 503 without Retry-After")
                results[sent_in][(response.status_code, code)] += 1


def test_postgres_stopped_under_load_answers_503_logs_once_and_recovers(
    own_postgres: LocalPostgres, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        database_url=own_postgres.create_database("shop"),
        admin_token="t",
        max_inflight=64,  # admission is not under test here (tests/api/test_overload.py)
    )
    state = build_state(settings)
    state.products.upsert("sku-1", {"name": "Red dress", "category": "dress", "price": 10}, None)
    caplog.set_level(logging.INFO)
    phase = [0]
    results: list[Counter[tuple[int, str]]] = [Counter(), Counter(), Counter()]
    bad: list[str] = []
    stop = threading.Event()
    try:
        with serve_in_thread(create_app(settings, state, embed_worker=False)) as url:
            threads = [
                threading.Thread(target=_load, args=(url, stop, phase, results, bad)) for _ in range(CLIENTS)
            ]
            for thread in threads:
                thread.start()
            time.sleep(2)
            caplog.clear()
            phase[0] = 1
            own_postgres.stop("fast")  # under load: live connections die mid-use
            time.sleep(3)
            own_postgres.start()
            phase[0] = 2
            time.sleep(3)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    finally:
        stop.set()
        state.close()
    before, during, after = results

    assert not bad
    # Before the stop: all served (a request in flight when it landed may be a 503, one per client).
    assert set(before) <= {(200, ""), (503, "database_unavailable")}, before
    assert before[(200, "")] > 0 and before[(503, "database_unavailable")] <= CLIENTS
    # While it is down, nothing but 503 database_unavailable (plus, at the very start, answers
    # to requests that got through before the stop landed).
    outage = {key for key in during if key[0] != 200}
    assert outage == {(503, "database_unavailable")}, during
    assert during[(503, "database_unavailable")] > 20
    assert after[(200, "")] > 20  # recovered without a restart
    assert set(after) <= {(200, ""), (503, "database_unavailable")}

    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    gone = [r for r in records if "is unavailable" in r.getMessage()]
    back = [r for r in records if "is back after" in r.getMessage()]
    assert len(gone) == 1, [r.getMessage() for r in records]
    assert len(back) == 1, [r.getMessage() for r in records]
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks during an outage"
    assert not [r for r in records if r not in gone and r not in back], [r.getMessage() for r in records]
