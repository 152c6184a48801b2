"""The encoder service in-process: shared forward passes, the error contract, /health."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from encoder.clip import ClipEncoder
from encoder.images import decode_image
from encoder.mobilenet import MobileNetEncoder
from encoder.service import create_app

MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def app(clip_random: ClipEncoder, mobilenet: MobileNetEncoder) -> FastAPI:
    return create_app(clip_random, mobilenet, max_upload_bytes=2_000_000, max_pixels=MAX_PIXELS)


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://encoder")


def _files(*payloads: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"f{i}.jpg", data, "image/jpeg")) for i, data in enumerate(payloads)]


def test_concurrent_requests_share_forward_passes(
    app: FastAPI, mobilenet: MobileNetEncoder, sample_jpegs: list[Path]
) -> None:
    payloads = [p.read_bytes() for p in sample_jpegs] * 2  # 8 requests, one image each
    stats = app.state.slots["mobilenet"].images.stats
    passes_before, requests_before = stats.forward_passes, stats.requests

    async def run() -> list[httpx.Response]:
        async with await _client(app) as client:
            return await asyncio.gather(
                *(
                    client.post("/embed/images", data={"model": "mobilenet"}, files=_files(d))
                    for d in payloads
                )
            )

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    requests = stats.requests - requests_before
    passes = stats.forward_passes - passes_before
    assert requests == len(payloads)
    assert passes < requests, f"{requests} requests took {passes} forward passes"
    # Batching must not change anyone's answer.
    served = np.array([r.json()["embeddings"][0] for r in responses], dtype=np.float32)
    direct = mobilenet.encode_images(
        [decode_image(d, max_pixels=MAX_PIXELS, target_size=256) for d in payloads]
    )
    assert np.abs(served - direct).max() <= 1e-5
    health = asyncio.run(_get(app, "/health"))
    assert health["batching"]["mobilenet"]["images"]["forward_passes"] == stats.forward_passes


async def _get(app: FastAPI, path: str) -> dict:
    async with await _client(app) as client:
        response = await client.get(path)
        assert response.status_code == 200
        return response.json()


async def _post(app: FastAPI, path: str, **kwargs: object) -> httpx.Response:
    async with await _client(app) as client:
        return await client.post(path, **kwargs)


def test_health_describes_each_model(app: FastAPI) -> None:
    health = asyncio.run(_get(app, "/health"))
    assert health["status"] == "ok"
    clip = health["models"]["clip"]
    assert clip["model_id"] == "ViT-B-32__laion2b_s34b_b79k" and clip["dim"] == 512
    assert clip["weights_source"] == "random" and clip["device"] == "cpu" and clip["supports_texts"]
    mobile = health["models"]["mobilenet"]
    assert mobile["dim"] == 1280 and not mobile["supports_texts"]


def test_several_files_in_one_request_keep_their_order(app: FastAPI, sample_jpegs: list[Path]) -> None:
    payloads = [p.read_bytes() for p in sample_jpegs[:3]]
    one = asyncio.run(_post(app, "/embed/images", files=_files(*payloads)))
    assert one.status_code == 200
    body = one.json()
    assert body["model"] == "ViT-B-32__laion2b_s34b_b79k" and body["dim"] == 512
    rows = np.array(body["embeddings"], dtype=np.float32)
    assert rows.shape == (3, 512)
    last = asyncio.run(_post(app, "/embed/images?model=clip", files=_files(payloads[2])))
    assert np.abs(np.array(last.json()["embeddings"][0], dtype=np.float32) - rows[2]).max() <= 1e-5


def test_texts(app: FastAPI, clip_random: ClipEncoder) -> None:
    response = asyncio.run(_post(app, "/embed/texts", json=["a red dress", "shoes"]))
    assert response.status_code == 200
    served = np.array(response.json()["embeddings"], dtype=np.float32)
    assert np.abs(served - clip_random.encode_texts(["a red dress", "shoes"])).max() <= 1e-5
    refused = asyncio.run(_post(app, "/embed/texts?model=mobilenet", json=["shoes"]))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "texts_not_supported"
    malformed = asyncio.run(_post(app, "/embed/texts", json={"texts": [1, 2]}))
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_request"


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 422, "empty_image"),
        (b"GIF89a but not really", 422, "not_an_image"),
        (b"hello, world" * 50, 422, "not_an_image"),
        (b"\x00" * 2_000_001, 413, "upload_too_large"),
    ],
)
def test_bad_uploads_get_json_errors(
    app: FastAPI, sample_jpegs: list[Path], payload: bytes, status: int, code: str
) -> None:
    good = sample_jpegs[0].read_bytes()
    response = asyncio.run(_post(app, "/embed/images", files=_files(good, payload)))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_pixel_limit_and_unknown_model(clip_random: ClipEncoder) -> None:
    small_limit = create_app(clip_random, None, max_upload_bytes=1_000_000, max_pixels=10_000)
    too_big = asyncio.run(_post(small_limit, "/embed/images", files=_files(_png((200, 200)))))
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "image_too_large"
    missing = asyncio.run(_post(small_limit, "/embed/images?model=mobilenet", files=_files(_png((8, 8)))))
    assert missing.status_code == 503 and missing.json()["error"]["code"] == "model_unavailable"
    unknown = asyncio.run(_post(small_limit, "/embed/images?model=resnet", files=_files(_png((8, 8)))))
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_model"
    health = asyncio.run(_get(small_limit, "/health"))
    assert health["models"]["mobilenet"]["available"] is False
