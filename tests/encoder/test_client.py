"""RemoteEncoder against a real encoder-service subprocess, plus the circuit breaker alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from encoder.base import Encoder
from encoder.circuit import CircuitBreaker, ManualClock, breaker_clock
from encoder.client import RemoteEncoder
from encoder.clip import ClipEncoder
from encoder.errors import EncoderUnavailableError, InvalidImageError
from encoder.images import decode_image
from tests.support import EncoderServiceProcess, free_port

pytestmark = pytest.mark.slow  # starts and kills an encoder service: not in `make test-fast`

CONNECT_TIMEOUT_S = 1.0
RESET_AFTER_S = 1.0
THRESHOLD = 2


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EncoderServiceProcess]:
    process = EncoderServiceProcess(free_port(), tmp_path_factory.mktemp("service") / "service.log")
    process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def clock() -> ManualClock:
    """The remote's breaker's clock: an open circuit waits until the test moves it on."""
    return ManualClock()


@pytest.fixture
def remote(service: EncoderServiceProcess, clock: ManualClock) -> Iterator[RemoteEncoder]:
    with breaker_clock(clock):
        client = RemoteEncoder(
            service.url,
            "clip",
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=30.0,
            failure_threshold=THRESHOLD,
            reset_after_s=RESET_AFTER_S,
        )
    with client:
        yield client


def test_remote_matches_in_process(
    remote: RemoteEncoder, clip_random: ClipEncoder, sample_jpegs: list[Path]
) -> None:
    assert isinstance(remote, Encoder)
    assert remote.model_id == clip_random.model_id and remote.dim == 512
    assert remote.weights_source == "random" and remote.device == "remote:cpu"
    blobs = [p.read_bytes() for p in sample_jpegs]
    images = [decode_image(b, max_pixels=40_000_000, target_size=clip_random.decode_size) for b in blobs]
    local = clip_random.encode_images(images)
    # Same seeded weights in another process: vectors must agree, via bytes and via PIL (PNG).
    assert np.abs(remote.encode_image_bytes(blobs) - local).max() <= 1e-5
    assert np.abs(remote.encode_images(images) - local).max() <= 1e-5
    texts = ["a red dress", "white sneakers"]
    assert np.abs(remote.encode_texts(texts) - clip_random.encode_texts(texts)).max() <= 1e-5
    assert remote.encode_images([]).shape == (0, 512)


def test_invalid_image_is_not_a_circuit_failure(remote: RemoteEncoder) -> None:
    for _ in range(THRESHOLD + 1):
        with pytest.raises(InvalidImageError) as caught:
            remote.encode_image_bytes([b"this is not an image"])
        assert caught.value.code == "not_an_image"
    assert remote.breaker.state == "closed"


def test_killed_service_opens_the_circuit_and_restart_closes_it(
    service: EncoderServiceProcess, remote: RemoteEncoder, clock: ManualClock, sample_jpegs: list[Path]
) -> None:
    blob = sample_jpegs[0].read_bytes()
    remote.encode_image_bytes([blob])  # healthy
    service.kill()
    for _ in range(THRESHOLD):
        start = time.perf_counter()
        with pytest.raises(EncoderUnavailableError, match="unreachable"):
            remote.encode_image_bytes([blob])
        assert time.perf_counter() - start < CONNECT_TIMEOUT_S + 0.5
    assert remote.breaker.state == "open"
    with pytest.raises(EncoderUnavailableError, match="circuit is open"):
        remote.encode_image_bytes([blob])
    assert remote.breaker.consecutive_failures == THRESHOLD  # no network attempt at all

    service.start()
    clock.advance(RESET_AFTER_S)
    assert remote.breaker.state == "half_open"
    assert remote.encode_image_bytes([blob]).shape == (1, 512)  # the probe succeeds
    assert remote.breaker.state == "closed" and remote.breaker.consecutive_failures == 0


def test_mobilenet_client_refuses_texts_without_network() -> None:
    client = RemoteEncoder("http://127.0.0.1:9", "mobilenet")
    with pytest.raises(NotImplementedError):
        client.encode_texts(["shoes"])
    assert client.breaker.consecutive_failures == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure("boom")
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.record_failure("boom")
    assert breaker.state == "open"
    with pytest.raises(EncoderUnavailableError):
        breaker.before_call()
    clock.now = 10.0
    breaker.before_call()  # the probe
    with pytest.raises(EncoderUnavailableError):
        breaker.before_call()  # a second caller while the probe is out
    breaker.record_failure("still down")
    assert breaker.state == "open"  # a failed probe re-opens for another full period
    clock.now = 15.0
    with pytest.raises(EncoderUnavailableError):
        breaker.before_call()
    clock.now = 20.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()
