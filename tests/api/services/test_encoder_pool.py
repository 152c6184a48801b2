"""An encoder pool (``LOOKALIKE_ENCODER_URL=u1,u2``) behind the real API: calls spread over
both instances, killing one under load costs no client error and no MobileNet fallback, and
an instance restarted with another CLIP model is noticed by the next health probe and left out."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from api.main import build_state, create_app
from api.settings import Settings
from api.state import AppState
from tests.live_api import serve_in_thread
from tests.support import EncoderServiceProcess, free_port

pytestmark = pytest.mark.slow  # runs two encoder services under load: not in `make test-fast`

CLIENTS = 4


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EncoderServiceProcess]]:
    folder = tmp_path_factory.mktemp("encoders")
    processes = [EncoderServiceProcess(free_port(), folder / f"encoder-{i}.log") for i in range(2)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.kill()


@pytest.fixture(scope="module")
def pooled_api(
    encoders: list[EncoderServiceProcess],
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
) -> Iterator[tuple[str, AppState]]:
    settings = make_settings(
        database_url=create_database(),
        encoder_url=",".join(e.url for e in encoders),
        encoder_circuit_reset_s=1.0,
        encoder_timeout_s=60.0,  # a shared 2-core machine can be slow; a kill is a refused connect
        admin_token="pool-token",
    )
    state = build_state(settings)
    try:
        with serve_in_thread(create_app(settings, state, embed_worker=False)) as url:
            yield url, state
    finally:
        state.close()


def _load(url: str, stop: threading.Event, modes: Counter[str], errors: list[str], tag: str) -> None:
    n = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            n += 1
            response = client.post("/api/v1/search", json={"text": f"{tag} linen dress {n}", "top_k": 5})
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
            else:
                modes[response.json()["mode"]] += 1


CLIP_MODES = {"clip", "clip_text"}
"""The modes CLIP serves a text query in (clip_text: fused with name/SKU matches, issue 16)."""


def _run_load(
    url: str, seconds_before: float, action: Callable[[], None], seconds_after: float, tag: str
) -> tuple[Counter[str], list[str]]:
    modes: Counter[str] = Counter()
    errors: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=(url, stop, modes, errors, f"{tag}{i}")) for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(seconds_before)
        action()
        time.sleep(seconds_after)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    return modes, errors


def test_killing_one_of_two_under_load_costs_nothing(
    encoders: list[EncoderServiceProcess], pooled_api: tuple[str, AppState]
) -> None:
    url, state = pooled_api
    remote = state.hub.remote
    assert remote is not None and len(remote.instances) == 2
    served_before = [i.served for i in remote.instances]
    modes, errors = _run_load(url, 4, encoders[1].kill, 4, "kill")
    assert not errors, errors[:5]
    # Served by CLIP every time (clip_text: CLIP fused with name matches), never by a fallback.
    assert set(modes) <= CLIP_MODES, modes
    assert sum(modes.values()) > 10
    survivor, killed = remote.instances
    assert survivor.served > served_before[0] and killed.served > served_before[1]  # both took calls
    assert killed.breaker.state in ("open", "half_open")
    health = httpx.get(f"{url}/api/v1/health", timeout=30).json()
    assert health["components"]["clip"]["status"] == "ok"


def test_a_restart_with_another_model_is_noticed_on_the_next_probe(
    encoders: list[EncoderServiceProcess], pooled_api: tuple[str, AppState]
) -> None:
    url, state = pooled_api
    remote = state.hub.remote
    assert remote is not None
    encoders[1].kill()
    encoders[1].start("--clip-model", "ViT-B-32__openai")  # same width, other meaning: must not be mixed
    health = remote.health()  # what GET /api/v1/health runs
    listing = {entry["url"]: entry for entry in health["instances"]}
    assert listing[encoders[1].url]["status"] == "down"
    assert "ViT-B-32__openai" in listing[encoders[1].url]["reason"]
    assert listing[encoders[0].url]["status"] == "ok"
    served = remote.instances[1].served
    modes, errors = _run_load(url, 3, lambda: None, 0, "model")
    assert not errors and set(modes) <= CLIP_MODES, (errors[:5], modes)
    assert remote.instances[1].served == served  # no search went to the misfit
    assert httpx.get(f"{url}/api/v1/health", timeout=30).json()["components"]["clip"]["status"] == "ok"
