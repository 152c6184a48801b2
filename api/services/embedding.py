"""Image bytes → both embeddings. Shared by product writes and bulk ingestion."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from api.db.products import Embeddings
from api.services.encoders import EncoderHub, stored_model_id
from encoder.errors import EncoderUnavailableError, InvalidImageError
from encoder.images import decode_image


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def embed_images(
    hub: EncoderHub, blobs: Sequence[bytes], max_pixels: int
) -> list[Embeddings | InvalidImageError]:
    """Decode and encode a batch; a bad image yields its error in place, the rest still embed.

    Each model that is up contributes its vector; a model that is down leaves its vector empty
    (the background worker fills it later). Raises EncoderUnavailableError only when no model is up.
    """
    decoded: list[Image.Image | InvalidImageError] = []
    for blob in blobs:
        try:
            decoded.append(decode_image(blob, max_pixels=max_pixels, target_size=hub.decode_size))
        except InvalidImageError as exc:
            decoded.append(exc)
    good = [i for i, item in enumerate(decoded) if isinstance(item, Image.Image)]
    images = [decoded[i] for i in good]
    raw = [blobs[i] for i in good]
    clip_vectors, clip_model = _encode_or_none(hub, "clip", images, raw)
    fallback_vectors, fallback_model = _encode_or_none(hub, "mobilenet", images, raw)
    if good and clip_vectors is None and fallback_vectors is None:
        raise EncoderUnavailableError("neither CLIP nor the MobileNetV2 fallback can encode images right now")

    results: list[Embeddings | InvalidImageError] = []
    row = {index: position for position, index in enumerate(good)}
    for i, item in enumerate(decoded):
        if isinstance(item, InvalidImageError):
            results.append(item)
            continue
        r = row[i]
        results.append(
            Embeddings(
                image_sha256=sha256_hex(blobs[i]),
                clip=None if clip_vectors is None else clip_vectors[r],
                clip_model=None if clip_vectors is None else clip_model,
                fallback=None if fallback_vectors is None else fallback_vectors[r],
                fallback_model=None if fallback_vectors is None else fallback_model,
            )
        )
    return results


def _encode_or_none(
    hub: EncoderHub, which: str, images: list[Image.Image], raw: list[bytes]
) -> tuple[np.ndarray | None, str | None]:
    if not images:
        return None, None
    try:
        encoder = hub.clip() if which == "clip" else hub.mobilenet()
        return encoder.encode_uploads(raw, images), stored_model_id(encoder)
    except EncoderUnavailableError:
        return None, None
