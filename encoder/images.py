"""Turn untrusted upload bytes into a plain RGB PIL image, or a typed refusal.

Every encoder (in-process or behind the encoder service) decodes through this one function,
so an odd image gives the same vector -- or the same error code -- wherever it is encoded.
The model-specific resize/crop/normalise happens later, in each model's own transforms.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from encoder.errors import InvalidImageError

# Formats a product photo plausibly arrives in. Anything else PIL can parse (EPS needs
# Ghostscript, PSD/ICNS/... are rarely well tested) is refused rather than trusted.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""Plugin names for Image.open; multi-picture JPEGs (MPO) come through the JPEG plugin."""

_WHITE = (255, 255, 255)


def decode_image(data: bytes, *, max_pixels: int, target_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an RGB image with EXIF orientation applied.

    ``max_pixels`` is checked against the header's declared size before any pixel is
    decoded, so a tiny file that claims 12000x12000 costs nothing. ``target_size`` is the
    shortest side the model will resize to; large JPEGs are then DCT-downscaled while
    decoding (PIL draft mode), never below that size, which makes 40 MP phone photos cheap.

    Raises :class:`InvalidImageError` with code ``empty_image``, ``not_an_image``,
    ``unsupported_format``, ``image_too_large`` or ``truncated_image``.
    """
    if not data:
        raise InvalidImageError("empty_image", "the upload is empty (0 bytes)")
    image = _open(data)
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError("not_an_image", f"image declares an invalid size {width}x{height}")
    if width * height > max_pixels:
        raise InvalidImageError(
            "image_too_large",
            f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}",
        )
    if target_size is not None and image.format in ("JPEG", "MPO"):
        # draft() picks the largest 1/2, 1/4, 1/8 scale that keeps both sides >= the request.
        image.draft(None, (target_size, target_size))
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise InvalidImageError("image_too_large", f"image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError("truncated_image", f"image data is truncated or corrupt: {exc}") from exc
    image = _apply_exif_orientation(image)
    return _to_rgb(image)


def _open(data: bytes) -> Image.Image:
    """Read only the header, distinguishing "not an image" from "an image we refuse"."""
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InvalidImageError("image_too_large", f"image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError:
        pass
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError("truncated_image", f"image header is truncated or corrupt: {exc}") from exc
    detected = _detect_any_format(data)
    if detected is not None:
        allowed = ", ".join(ALLOWED_FORMATS)
        raise InvalidImageError(
            "unsupported_format", f"{detected} images are not accepted; use one of {allowed}"
        )
    raise InvalidImageError("not_an_image", "the upload is not a recognisable image")


def _detect_any_format(data: bytes) -> str | None:
    """Name the format if PIL recognises it at all (header only; nothing is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.format or "unknown"
    except Exception:
        return None


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate phone photos upright; a broken EXIF block must not reject an otherwise fine image."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten every mode to 8-bit RGB; transparent pixels become white, like a product page."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_bit_depth_to_l(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and image.has_transparency_data
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit/32-bit/float grayscale to 8 bits (PIL's convert would clip, not scale)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = float(values.max()) if values.size else 0.0
        scaled = values * 255.0 if peak <= 1.0 else values
    elif image.mode == "I" and (values.max() if values.size else 0) <= 255:
        scaled = values
    else:
        scaled = values / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
