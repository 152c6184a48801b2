"""A query or product image sent in the request (base64 or an upload) becomes bounded bytes here,
refused before it is buffered or decoded whole when it is too large."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Protocol

from fastapi import UploadFile

from api.errors import BadImageInputError, CropOutsideImageError, FileTooLargeError
from encoder.images import decode_image


def decode_base64_image(value: str, max_bytes: int) -> bytes:
    """Accept raw base64 or a ``data:image/...;base64,`` URL; check the size before decoding."""
    payload = value.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            raise BadImageInputError(
                "data URLs must be base64-encoded (data:image/...;base64,...)", "invalid_base64"
            )
    payload = "".join(payload.split())
    if not payload:
        raise BadImageInputError("the image is empty", "empty_image")
    estimated = len(payload) * 3 // 4
    if estimated > max_bytes + 3:
        raise FileTooLargeError(estimated, max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImageInputError(f"the image is not valid base64: {exc}", "invalid_base64") from exc
    if not data:
        raise BadImageInputError("the image is empty", "empty_image")
    if len(data) > max_bytes:
        raise FileTooLargeError(len(data), max_bytes)
    return data


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read at most one byte past the limit, so a huge upload is refused without buffering it all."""
    data = await upload.read(max_bytes + 1)
    if not data:
        raise BadImageInputError("the uploaded file is empty", "empty_image")
    if len(data) > max_bytes:
        raise FileTooLargeError(upload.size or len(data), max_bytes)
    return data


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
    A box reaching outside the photo is refused rather than silently clamped: the caller's idea
    of the photo's size is wrong, and clamping would search on something they did not mean.
    """
    if crop is None:
        return data
    image = decode_image(data, max_pixels=max_pixels)
    width, height = image.size
    left, top = round(crop.x), round(crop.y)
    right, bottom = round(crop.x + crop.width), round(crop.y + crop.height)
    if right > width or bottom > height or right - left < 1 or bottom - top < 1:
        raise CropOutsideImageError(
            f"the crop box x={crop.x:g}, y={crop.y:g}, width={crop.width:g}, height={crop.height:g} "
            f"does not fit inside the {width}x{height} image"
        )
    if (left, top, right, bottom) == (0, 0, width, height):
        return data
    out = io.BytesIO()
    image.crop((left, top, right, bottom)).save(out, format="JPEG", quality=95)
    return out.getvalue()
