"""The standalone encoder service: models behind HTTP, so several API processes share one GPU.

Run it with ``lookalike encoder serve --port 8001`` (its flags default to the API's settings)
and point ``LOOKALIKE_ENCODER_URL`` at it; :class:`encoder.client.RemoteEncoder` is its client.
Concurrent requests for the same model share forward passes through the encoders' own
:class:`encoder.inference.ForwardQueue`, which merges whatever queued behind a running pass and
never holds a lone request back; the service adds no batching layer of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile

from encoder.base import Encoder, QueueStats
from encoder.errors import EncoderUnavailableError, InvalidImageError
from encoder.images import decode_image

MODELS = ("clip", "mobilenet")
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FILES = 64
_TOO_LARGE_CODES = {"image_too_large", "upload_too_large"}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one error shape, shared with the API: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@dataclass
class LaneStats:
    """Requests of one input kind, and the forward passes they (and any other caller) ran."""

    requests: int = 0
    items: int = 0
    queue: QueueStats | None = None
    """The encoder's forward queue for this kind (None: the model has none, e.g. MobileNet texts)."""

    @property
    def forward_passes(self) -> int:
        return self.queue.passes if self.queue is not None else 0

    @property
    def largest_batch(self) -> int:
        return self.queue.largest_pass if self.queue is not None else 0

    def as_dict(self) -> dict[str, int]:
        counts = {"requests": self.requests, "items": self.items}
        return {**counts, "forward_passes": self.forward_passes, "largest_batch": self.largest_batch}


class _Lane:
    """One input kind of a model: its encode runs on a worker thread, so the event loop keeps
    accepting uploads, and concurrent calls meet in the encoder's forward queue."""

    def __init__(self, encode: Callable[[list[Any]], np.ndarray], queue: QueueStats | None) -> None:
        self._encode = encode
        self.stats = LaneStats(queue=queue)

    async def submit(self, items: Sequence[Any]) -> np.ndarray:
        self.stats.requests += 1
        self.stats.items += len(items)
        return await asyncio.to_thread(self._encode, list(items))


class _ModelSlot:
    """A loaded encoder with its image and text lanes (or the reason it is missing)."""

    def __init__(self, encoder: Encoder | None, reason: str | None) -> None:
        self.encoder = encoder
        self.reason = reason
        self.images: _Lane | None = None
        self.texts: _Lane | None = None
        if encoder is not None:
            queues = encoder.description().forward_passes
            self.images = _Lane(encoder.encode_images, queues.get("image"))
            self.texts = _Lane(encoder.encode_texts, queues.get("text"))

    def describe(self) -> dict[str, Any]:
        if self.encoder is None:
            return {"available": False, "reason": self.reason or "not loaded"}
        described = self.encoder.description()
        return {
            "available": True,
            "model_id": described.model_id,
            "dim": described.dim,
            "device": described.device,
            "weights_source": described.weights_source,
            "supports_texts": described.supports_texts,
            "batch_size": described.batch_size,
        }

    def stats(self) -> dict[str, Any]:
        return {
            kind: lane.stats.as_dict()
            for kind, lane in (("images", self.images), ("texts", self.texts))
            if lane is not None
        }


def create_app(
    clip: Encoder | None,
    mobilenet: Encoder | None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_files: int = DEFAULT_MAX_FILES,
    unavailable: dict[str, str] | None = None,
) -> FastAPI:
    """Build the app around already-loaded encoders (either may be None: reported by /health).

    ``unavailable`` carries the load-failure reason per model name so /health can say why.
    Request and forward-pass counters live on ``app.state.slots[name].images.stats`` and in /health.
    """
    reasons = unavailable or {}
    slots = {
        "clip": _ModelSlot(clip, reasons.get("clip")),
        "mobilenet": _ModelSlot(mobilenet, reasons.get("mobilenet")),
    }
    app = FastAPI(title="Lookalike encoder service", version="1")
    app.state.slots = slots

    def pick(name: str) -> _ModelSlot | JSONResponse:
        if name not in slots:
            return error_response(400, "unknown_model", f"model must be one of {', '.join(MODELS)}")
        slot = slots[name]
        if slot.encoder is None:
            return error_response(503, "model_unavailable", f"{name} is not available: {slot.reason}")
        return slot

    @app.get("/health")
    async def health() -> dict[str, Any]:
        models = {name: slot.describe() for name, slot in slots.items()}
        status = "ok" if any(slot.encoder is not None for slot in slots.values()) else "unavailable"
        return {
            "status": status,
            "models": models,
            "batching": {name: slot.stats() for name, slot in slots.items() if slot.encoder is not None},
        }

    @app.post("/embed/images")
    async def embed_images(request: Request) -> JSONResponse:
        declared = int(request.headers.get("content-length") or 0)
        if declared > max_upload_bytes * max_files:
            return error_response(413, "upload_too_large", "request body is larger than the upload limit")
        form = await request.form(max_files=max_files)
        try:
            uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            model = str(form.get("model") or request.query_params.get("model") or "clip")
            picked = pick(model)
            if isinstance(picked, JSONResponse):
                return picked
            if not uploads:
                return error_response(400, "no_files", "send one or more image files as multipart parts")
            payloads: list[bytes] = []
            for index, upload in enumerate(uploads):
                data = await upload.read(max_upload_bytes + 1)
                if len(data) > max_upload_bytes:
                    return error_response(
                        413,
                        "upload_too_large",
                        f"file {index} ({upload.filename}) is over {max_upload_bytes:,} bytes",
                    )
                payloads.append(data)
        finally:
            await form.close()
        assert picked.encoder is not None and picked.images is not None
        try:
            images = await asyncio.to_thread(
                _decode_all, payloads, uploads, max_pixels, picked.encoder.decode_size
            )
        except InvalidImageError as exc:
            status = 413 if exc.code in _TOO_LARGE_CODES else 422
            return error_response(status, exc.code, exc.message)
        return await _encode(picked, picked.images, images)

    @app.post("/embed/texts")
    async def embed_texts(request: Request) -> JSONResponse:
        model = request.query_params.get("model") or "clip"
        picked = pick(model)
        if isinstance(picked, JSONResponse):
            return picked
        assert picked.encoder is not None
        if not picked.encoder.supports_texts:
            return error_response(400, "texts_not_supported", f"{model} is an image-only model")
        try:
            body = await request.json()
        except ValueError:
            return error_response(400, "invalid_json", "body must be a JSON list of strings")
        texts = body.get("texts") if isinstance(body, dict) else body
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            return error_response(422, "invalid_request", "body must be a JSON list of strings")
        assert picked.texts is not None
        return await _encode(picked, picked.texts, texts)

    return app


async def _encode(slot: _ModelSlot, lane: _Lane, items: Sequence[Any]) -> JSONResponse:
    assert slot.encoder is not None
    if not items:
        rows = np.zeros((0, slot.encoder.dim), dtype=np.float32)
    else:
        try:
            rows = await lane.submit(items)
        except InvalidImageError as exc:
            return error_response(422, exc.code, exc.message)
        except EncoderUnavailableError as exc:
            return error_response(503, "model_unavailable", str(exc))
        except NotImplementedError as exc:
            return error_response(400, "texts_not_supported", str(exc))
    # float32 -> Python float is exact, and JSON round-trips doubles, so clients get the
    # very same float32 values back.
    return JSONResponse(
        {"model": slot.encoder.model_id, "dim": slot.encoder.dim, "embeddings": rows.tolist()}
    )


def _decode_all(
    payloads: list[bytes], uploads: list[UploadFile], max_pixels: int, decode_size: int | None
) -> list[Image.Image]:
    images: list[Image.Image] = []
    for index, (data, upload) in enumerate(zip(payloads, uploads, strict=True)):
        try:
            images.append(decode_image(data, max_pixels=max_pixels, target_size=decode_size))
        except InvalidImageError as exc:
            raise InvalidImageError(exc.code, f"file {index} ({upload.filename}): {exc.message}") from exc
    return images


def serve(
    host: str,
    port: int,
    clip: Encoder | None,
    mobilenet: Encoder | None,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    unavailable: dict[str, str] | None = None,
    log_level: str = "info",
) -> None:
    """Serve until interrupted (uvicorn, one process: the models are loaded once, here)."""
    import uvicorn

    app = create_app(clip, mobilenet, max_upload_bytes, max_pixels, unavailable=unavailable)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
