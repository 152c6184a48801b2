"""Query and product images arrive as base64, a URL or an upload; all become bounded bytes here."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import tempfile
import threading
from typing import Protocol
from urllib.parse import urlsplit

from fastapi import UploadFile

from api.errors import RequestError
from api.middleware.admission import Gate
from api.services.fetch import FetchPolicy, fetch_image
from api.settings import Settings
from encoder.images import decode_image


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        max_bytes=settings.max_upload_bytes,
        allow_private=settings.allow_private_urls,
        image_root=settings.media_dir,
        connect_timeout_s=min(3.0, settings.fetch_timeout_s / 3),
        read_timeout_s=settings.fetch_timeout_s,
        retries=settings.fetch_retries,
        deadline_s=settings.fetch_deadline_s,
        base_url=settings.image_base_url,
        # The operator named this media server, so it may sit on the shop's private network.
        trusted_hosts=frozenset({_host_port(settings.image_base_url)}) if settings.image_base_url else frozenset(),
    )


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def too_large(size: int, limit: int) -> RequestError:
    return RequestError(413, "file_too_large", f"the image is {size:,} bytes; the limit is {limit:,} bytes")


def decode_base64_image(value: str, max_bytes: int) -> bytes:
    """Accept raw base64 or a ``data:image/...;base64,`` URL; check the size before decoding."""
    payload = value.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            raise RequestError(
                400, "invalid_base64", "data URLs must be base64-encoded (data:image/...;base64,...)"
            )
    payload = "".join(payload.split())
    if not payload:
        raise RequestError(400, "empty_image", "the image is empty")
    estimated = len(payload) * 3 // 4
    if estimated > max_bytes + 3:
        raise too_large(estimated, max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, "invalid_base64", f"the image is not valid base64: {exc}") from exc
    if not data:
        raise RequestError(400, "empty_image", "the image is empty")
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    return data


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read at most one byte past the limit, so a huge upload is refused without buffering it all."""
    data = await upload.read(max_bytes + 1)
    if not data:
        raise RequestError(400, "empty_image", "the uploaded file is empty")
    if len(data) > max_bytes:
        raise too_large(upload.size or len(data), max_bytes)
    return data


_download_gates: dict[int, Gate] = {}
_download_gates_lock = threading.Lock()


def download_gate(settings: Settings) -> Gate:
    """The process's bound on API image downloads (one gate per configured size).

    Routes run downloads on the server's worker threads; 48 slow image servers used to take all
    of them, so health and text searches waited too. At most ``fetch_concurrency`` downloads run
    at once (each ends by ``fetch_deadline_s``); more are refused at once with 503 ``overloaded``.
    """
    with _download_gates_lock:
        gate = _download_gates.get(settings.fetch_concurrency)
        if gate is None:
            gate = _download_gates[settings.fetch_concurrency] = Gate(
                "image downloads", settings.fetch_concurrency
            )
        return gate


def image_from_url(url: str, settings: Settings) -> bytes:
    """Download a query or product image, within the download bound and the total deadline."""
    policy = fetch_policy(settings)
    if not url.lower().startswith(("http://", "https://")):
        return fetch_image(url, policy)  # a local file under the image root: nothing to wait for
    with download_gate(settings).admit():
        return fetch_image(url, policy)


UPLOAD_DIR = "uploads"
EXTENSIONS = {b"\xff\xd8\xff": "jpg", b"\x89PNG": "png", b"GIF8": "gif", b"RIFF": "webp", b"BM": "bmp"}


def save_image(data: bytes, settings: Settings) -> str:
    """Store uploaded image bytes under the media dir by content hash; return the relative path.

    Content addressing makes retries idempotent and lets identical photos share one file.
    """
    extension = next((ext for magic, ext in EXTENSIONS.items() if data.startswith(magic)), "img")
    relative = f"{UPLOAD_DIR}/{hashlib.sha256(data).hexdigest()}.{extension}"
    path = settings.media_dir / relative
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temp name of this writer's own: two writers of the same photo (parallel ingests,
        # concurrent uploads) once shared `<sha>.partial` and replaced each other's half-written file.
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(partial, 0o644)
            os.replace(partial, path)  # atomic: a crash never leaves a half-written image behind
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    return relative


class CropLike(Protocol):
    x: float
    y: float
    width: float
    height: float


def crop_image(data: bytes, crop: CropLike | None, max_pixels: int) -> bytes:
    """Cut the shopper's box out of the query photo and return it as a JPEG.

    The box is in pixels of the photo as it is displayed (EXIF orientation applied), which is
    what a browser shows and what a person measures. The search then hashes, caches and encodes
    the crop exactly like an uploaded photo, so a crop needs no special case anywhere else.
    A box reaching outside the photo is a 422 rather than silently clamped: the caller's idea of
    the photo's size is wrong, and clamping would search on something they did not mean.
    """
    if crop is None:
        return data
    image = decode_image(data, max_pixels=max_pixels)
    width, height = image.size
    left, top = round(crop.x), round(crop.y)
    right, bottom = round(crop.x + crop.width), round(crop.y + crop.height)
    if right > width or bottom > height or right - left < 1 or bottom - top < 1:
        raise RequestError(
            422,
            "crop_outside_image",
            f"the crop box x={crop.x:g}, y={crop.y:g}, width={crop.width:g}, height={crop.height:g} "
            f"does not fit inside the {width}x{height} image",
        )
    if (left, top, right, bottom) == (0, 0, width, height):
        return data
    out = io.BytesIO()
    image.crop((left, top, right, bottom)).save(out, format="JPEG", quality=95)
    return out.getvalue()
