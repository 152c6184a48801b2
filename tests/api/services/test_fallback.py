"""Graceful degradation: CLIP gone (no weights, or its service killed) → fallback modes → recovery."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.settings import Settings
from encoder.circuit import ManualClock, breaker_clock
from tests.api.conftest import ADMIN_TOKEN, b64, running_api
from tests.support import LOOKALIKE, REPO_ROOT, clean_env, free_port, wait_for_http

pytestmark = pytest.mark.slow  # stops and restarts an encoder service: not in `make test-fast`


def start_encoder_service(port: int) -> subprocess.Popen[bytes]:
    """``lookalike encoder serve``, as an operator runs it (random-weight CLIP, same seed as ours)."""
    process = subprocess.Popen(
        [*LOOKALIKE, "encoder", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-mobilenet"],
        cwd=REPO_ROOT,
        env=clean_env(LOOKALIKE_CLIP_RANDOM_WEIGHTS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    response = wait_for_http(f"http://127.0.0.1:{port}/health", process)
    assert response.status_code == 200
    return process


def photos(dataset: Path, per_class: int = 2) -> dict[str, Path]:
    chosen = {}
    for class_dir in sorted(p for p in (dataset / "train").iterdir() if p.is_dir()):
        for i, photo in enumerate(sorted(class_dir.glob("*.jpg"))[:per_class]):
            chosen[f"{class_dir.name}-{i}"] = photo
    return chosen


@pytest.fixture
def encoder_port() -> Iterator[int]:
    yield free_port()


def test_encoder_service_stopped_mid_run_falls_back_then_recovers(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    encoder_port: int,
) -> None:
    service = start_encoder_service(encoder_port)
    settings = make_settings(
        database_url=create_database(),
        admin_token=ADMIN_TOKEN,
        encoder_url=f"http://127.0.0.1:{encoder_port}",
        encoder_timeout_s=2.0,
        encoder_circuit_failures=2,
        encoder_circuit_reset_s=1.0,
    )
    try:
        # The API's breaker reads this clock: the circuit stays open until the test moves it on.
        with breaker_clock(ManualClock()) as clock, running_api(settings) as (client, state):
            catalog = photos(clothing_dataset)
            for sku, photo in catalog.items():
                state.products.upsert(
                    sku, {"name": f"{sku} item", "category": sku.rsplit("-", 1)[0]}, photo.read_bytes()
                )
            query = {"image": b64(catalog["shoes-1"].read_bytes()), "top_k": 3}

            assert client.post("/api/v1/search", json=query).json()["mode"] == "clip"
            # the words match product names: CLIP fused with them (issue 16 item 3)
            assert client.post("/api/v1/search", json={"text": "shoes item"}).json()["mode"] == "clip_text"
            assert client.get("/api/v1/health").json()["components"]["clip"]["status"] == "ok"

            service.send_signal(signal.SIGKILL)
            service.wait()
            # a query embedding cached before the crash still serves in clip mode: that is a feature
            assert client.post("/api/v1/search", json={**query, "top_k": 2}).json()["mode"] == "clip"
            started = time.monotonic()
            query = {"image": b64(catalog["shoes-0"].read_bytes()), "top_k": 3}
            image = client.post("/api/v1/search", json={**query, "top_k": 4}).json()
            text = client.post("/api/v1/search", json={"text": "item shoes", "top_k": 5}).json()
            assert time.monotonic() - started < 2 * settings.encoder_timeout_s + 2
            assert image["mode"] == "mobilenet_fallback" and image["results"][0]["sku"] == "shoes-0"
            assert "encoder service" in image["fallback_reason"]
            assert text["mode"] == "fulltext_fallback" and text["results"][0]["name"].startswith("shoes")
            # the circuit is open now: further fallbacks do not wait for the dead service at all
            fallback = client.post("/api/v1/search", json={**query, "top_k": 5}).json()
            assert fallback["mode"] == "mobilenet_fallback"
            assert "circuit is open" in fallback["fallback_reason"]  # refused without a connection
            health = client.get("/api/v1/health")
            assert health.status_code == 200
            assert (
                health.json()["status"] == "degraded"
                and health.json()["components"]["clip"]["status"] == "down"
            )

            service = start_encoder_service(encoder_port)
            clock.advance(settings.encoder_circuit_reset_s)  # the open circuit's wait is over
            recovered = client.post("/api/v1/search", json={**query, "top_k": 6}).json()
            assert recovered["mode"] == "clip" and recovered["results"][0]["sku"] == "shoes-0"
            assert client.get("/api/v1/health").json()["components"]["clip"]["status"] == "ok"
    finally:
        service.kill()
        service.wait()


def test_without_clip_weights_search_serves_in_fallback_modes(
    create_database: Callable[[], str],
    make_settings: Callable[..., Settings],
    clothing_dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # like this machine: real CLIP weights cannot be had
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    settings = make_settings(
        database_url=create_database(), admin_token=ADMIN_TOKEN, clip_random_weights=False
    )
    with running_api(settings) as (client, state):
        health = client.get("/api/v1/health")
        assert health.status_code == 200  # degraded, but search can be served
        clip = health.json()["components"]["clip"]
        assert clip["status"] == "down" and "weights unavailable" in clip["reason"]
        catalog = photos(clothing_dataset, per_class=1)
        for sku, photo in catalog.items():
            product, _ = state.products.upsert(
                sku, {"name": f"{sku} thing", "category": sku[:-2]}, photo.read_bytes()
            )
            assert product.image_model is None and product.fallback_model == state.hub.mobilenet_model_id
        image = b64(catalog["hat-0"].read_bytes())
        by_image = client.post("/api/v1/search", json={"image": image}).json()
        assert by_image["mode"] == "mobilenet_fallback" and by_image["results"][0]["sku"] == "hat-0"
        assert "weights unavailable" in by_image["fallback_reason"]
        by_text = client.post("/api/v1/search", json={"text": "hat"}).json()
        assert by_text["mode"] == "fulltext_fallback" and by_text["results"][0]["sku"] == "hat-0"
        hybrid = client.post("/api/v1/search", json={"image": image, "text": "hat"}).json()
        assert hybrid["mode"] == "mobilenet_fallback"
        similar = client.get("/api/v1/products/hat-0/similar").json()
        assert similar["mode"] == "mobilenet_fallback" and "hat-0" not in [
            r["sku"] for r in similar["results"]
        ]
