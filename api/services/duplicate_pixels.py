"""Pixel check for the duplicate finder: is this pair the same photo, or two photos of one thing?

The stored vectors find candidates, but they cannot settle it. MobileNetV2 features describe
what is in the picture: on the clothing photos a half-size copy of a photo lies up to 0.085
(cosine distance) from its original, while two different shots of the same hat on the same red
cloth lie 0.058 apart, and two different grey t-shirts 0.049. No threshold on the vectors
separates those (measured: tests/api/services/test_duplicates.py, docs/benchmarks.md).

Pixels do. Each candidate photo becomes a small blurred colour thumbnail (48x48, blur radius 1,
mean-centred per channel, unit length) of the whole frame and of two slightly cropped frames
(1.25% and 2.5% off each side); a pair's similarity is the best correlation between one
photo's whole frame and any frame of the other, so a copy cropped by up to 5% still lines up.
Recompressed, resized and lightly cropped copies correlate >= 0.999 with their original;
different photos of the same object at most 0.986 on that set (the t-shirts: same background,
same colour, different print). The blur and the size absorb resampling and JPEG noise; the
crops absorb the framing; a reshoot moves the object, which no crop undoes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from api.services.fetch import FetchError, FetchPolicy, fetch_client, fetch_image
from encoder.errors import InvalidImageError
from encoder.images import decode_image

SIZE = 48
CROPS = (0.0, 0.0125, 0.025)
"""Fraction cut off each side for the frames compared (0: the whole photo)."""
MIN_SIMILARITY = 0.995
"""Correlation at or above which two photos count as one (copies >= 0.999, reshoots <= 0.986)."""

Signature = np.ndarray
"""(len(CROPS), SIZE * SIZE * 3) float32: one unit vector per frame."""


def signature(data: bytes, *, max_pixels: int) -> Signature:
    """The thumbnails of one photo (decoded safely: size checks, EXIF orientation, RGB)."""
    # Decoded at >= 4x the thumbnail: JPEG's 1/4-scale draft at 2x already cost a cropped copy
    # 0.006 of correlation (0.9935 instead of >= 0.999), too close to the cut.
    image = decode_image(data, max_pixels=max_pixels, target_size=4 * SIZE)
    frames = []
    for cut in CROPS:
        w, h = image.size
        frame = image.crop((w * cut, h * cut, w * (1 - cut), h * (1 - cut)))
        frame = frame.resize((SIZE, SIZE), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(1))
        pixels = np.asarray(frame, dtype=np.float32).reshape(-1, 3)
        centred = (pixels - pixels.mean(axis=0)).ravel()
        frames.append(centred / (np.linalg.norm(centred) + 1e-6))
    return np.stack(frames)


def similarity(a: Signature, b: Signature) -> float:
    """Best alignment of either photo's whole frame against the other's frames (1.0: identical)."""
    return float(max((b @ a[0]).max(), (a @ b[0]).max()))


class PixelCheck:
    """Loads each photo once (several at a time: most of the time is I/O and decoding)."""

    def __init__(self, policy: FetchPolicy, *, max_pixels: int, workers: int = 4) -> None:
        self.policy = policy
        self.max_pixels = max_pixels
        self.workers = workers
        self.signatures: dict[Any, Signature] = {}
        self.failures: dict[Any, str] = {}

    def load(self, sources: dict[Any, str | None], progress: Callable[[int], None] | None = None) -> None:
        """Signatures for every key -> image source; what cannot be read lands in ``failures``."""
        todo = [(k, s) for k, s in sources.items() if k not in self.signatures and k not in self.failures]
        client = fetch_client(self.policy)
        try:

            def one(item: tuple[Any, str | None]) -> tuple[Any, Signature | str]:
                key, source = item
                if not source:
                    return key, "no image"
                try:
                    return key, signature(
                        fetch_image(source, self.policy, client), max_pixels=self.max_pixels
                    )
                except (FetchError, InvalidImageError, OSError) as exc:
                    return key, f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"

            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                for key, result in pool.map(one, todo):
                    if isinstance(result, str):
                        self.failures[key] = result
                    else:
                        self.signatures[key] = result
                    if progress is not None:
                        progress(1)
        finally:
            client.close()

    def similarities(self, pairs: Iterable[tuple[Any, Any]]) -> dict[tuple[Any, Any], float | None]:
        """Pixel similarity per pair; None when either photo could not be read."""
        out: dict[tuple[Any, Any], float | None] = {}
        for a, b in pairs:
            sa, sb = self.signatures.get(a), self.signatures.get(b)
            out[(a, b)] = None if sa is None or sb is None else similarity(sa, sb)
        return out
