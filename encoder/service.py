"""The standalone encoder service: models behind HTTP, so several API processes share one GPU.

Run it with ``python -m encoder.service --port 8001`` (or ``lookalike encoder serve``) and
point ``LOOKALIKE_ENCODER_URL`` at it; :class:`encoder.client.RemoteEncoder` is its client.
Concurrent requests for the same model are coalesced into micro-batches.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.datastructures import UploadFile

from encoder.base import Encoder
from encoder.batcher import MicroBatcher
from encoder.errors import EncoderUnavailableError, InvalidImageError
from encoder.images import decode_image
from encoder.registry import DEFAULT_CLIP_MODEL

log = logging.getLogger("lookalike.encoder.service")

MODELS = ("clip", "mobilenet")
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FILES = 64
_TOO_LARGE_CODES = {"image_too_large", "upload_too_large"}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one error shape, shared with the API: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def supports_texts(encoder: Encoder) -> bool:
    return bool(getattr(encoder, "supports_texts", True))


class _ModelSlot:
    """A loaded encoder with its image and text batchers (or the reason it is missing)."""

    def __init__(self, encoder: Encoder | None, reason: str | None, max_wait_s: float) -> None:
        self.encoder = encoder
        self.reason = reason
        batch = int(getattr(encoder, "batch_size", 32))
        self.images: MicroBatcher[Image.Image] | None = None
        self.texts: MicroBatcher[str] | None = None
        if encoder is not None:
            self.images = MicroBatcher(encoder.encode_images, max_batch=batch, max_wait_s=max_wait_s)
            self.texts = MicroBatcher(encoder.encode_texts, max_batch=batch, max_wait_s=max_wait_s)

    def describe(self) -> dict[str, Any]:
        if self.encoder is None:
            return {"available": False, "reason": self.reason or "not loaded"}
        enc = self.encoder
        return {
            "available": True,
            "model_id": enc.model_id,
            "dim": enc.dim,
            "device": enc.device,
            "weights_source": getattr(enc, "weights_source", "unknown"),
            "supports_texts": supports_texts(enc),
            "batch_size": getattr(enc, "batch_size", None),
        }

    def stats(self) -> dict[str, Any]:
        return {
            kind: asdict(batcher.stats)
            for kind, batcher in (("images", self.images), ("texts", self.texts))
            if batcher is not None
        }


def create_app(
    clip: Encoder | None,
    mobilenet: Encoder | None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    max_files: int = DEFAULT_MAX_FILES,
    max_wait_s: float = 0.005,
    unavailable: dict[str, str] | None = None,
) -> FastAPI:
    """Build the app around already-loaded encoders (either may be None: reported by /health).

    ``unavailable`` carries the load-failure reason per model name so /health can say why.
    Batching counters live on ``app.state.slots[name].images.stats`` and in /health.
    """
    reasons = unavailable or {}
    slots = {
        "clip": _ModelSlot(clip, reasons.get("clip"), max_wait_s),
        "mobilenet": _ModelSlot(mobilenet, reasons.get("mobilenet"), max_wait_s),
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for slot in slots.values():
            for batcher in (slot.images, slot.texts):
                if batcher is not None:
                    await batcher.close()

    app = FastAPI(title="Lookalike encoder service", version="1", lifespan=lifespan)
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
        decode_size = getattr(picked.encoder, "decode_size", None)
        try:
            images = await asyncio.to_thread(_decode_all, payloads, uploads, max_pixels, decode_size)
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
        if not supports_texts(picked.encoder):
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


async def _encode(slot: _ModelSlot, batcher: MicroBatcher[Any], items: Sequence[Any]) -> JSONResponse:
    assert slot.encoder is not None
    if not items:
        rows = np.zeros((0, slot.encoder.dim), dtype=np.float32)
    else:
        try:
            rows = await batcher.submit(items)
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


def load_encoders(
    *,
    clip_model: str | None,
    clip_weights: Path | None,
    random_weights: bool,
    mobilenet: bool,
    device: str,
    batch_size: int,
    clip_runtime: str = "torch",
    onnx_cache_dir: Path | None = None,
) -> tuple[Encoder | None, Encoder | None, dict[str, str]]:
    """Load what was asked for; a model that cannot load is reported, not fatal."""
    from encoder.factory import build_clip_encoder, build_mobilenet_encoder

    reasons: dict[str, str] = {}
    clip: Encoder | None = None
    mobile: Encoder | None = None
    if clip_model is None:
        reasons["clip"] = "disabled"
    else:
        try:
            clip = build_clip_encoder(
                clip_model,
                weights_path=clip_weights,
                random_weights=random_weights,
                device=device,
                batch_size=batch_size,
                runtime=clip_runtime,
                onnx_cache_dir=onnx_cache_dir,
            )
        except EncoderUnavailableError as exc:
            reasons["clip"] = str(exc)
            log.error("CLIP unavailable: %s", exc)
    if not mobilenet:
        reasons["mobilenet"] = "disabled"
    else:
        try:
            mobile = build_mobilenet_encoder(device=device, batch_size=batch_size)
        except EncoderUnavailableError as exc:
            reasons["mobilenet"] = str(exc)
            log.error("MobileNet unavailable: %s", exc)
    return clip, mobile, reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoder.service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL)
    parser.add_argument("--clip-weights", type=Path, default=None, help="local open_clip checkpoint")
    parser.add_argument(
        "--random-weights", action="store_true", help="CLIP with seeded random weights (tests, benchmarks)"
    )
    parser.add_argument("--no-clip", action="store_true")
    parser.add_argument("--no-mobilenet", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--clip-runtime",
        default="torch",
        choices=["auto", "torch", "onnx", "onnx-int8"],
        help="CPU: run CLIP on ONNX Runtime (auto: the fastest path within cosine 0.999 of torch fp32)",
    )
    parser.add_argument(
        "--onnx-cache-dir", type=Path, default=None, help="exported ONNX models (default: user cache)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-upload-bytes", type=int, default=DEFAULT_MAX_UPLOAD_BYTES)
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    clip, mobile, reasons = load_encoders(
        clip_model=None if args.no_clip else args.clip_model,
        clip_weights=args.clip_weights,
        random_weights=args.random_weights,
        mobilenet=not args.no_mobilenet,
        device=args.device,
        batch_size=args.batch_size,
        clip_runtime=args.clip_runtime,
        onnx_cache_dir=args.onnx_cache_dir,
    )
    if clip is None and mobile is None:
        log.error("no model could be loaded: %s", reasons)
        return 1
    serve(
        args.host,
        args.port,
        clip,
        mobile,
        max_upload_bytes=args.max_upload_bytes,
        max_pixels=args.max_pixels,
        unavailable=reasons,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
