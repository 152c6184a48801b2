"""Turn untrusted upload bytes into a plain RGB PIL image, or a typed refusal.

Every encoder (in-process or behind the encoder service) decodes through this one function,
so an odd image gives the same vector -- or the same error code -- wherever it is encoded.
The model-specific resize/crop/normalise happens later, in each model's own transforms.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from encoder.errors import InvalidImageError

# Formats a product photo plausibly arrives in. Anything else PIL can parse (EPS needs
# Ghostscript, PSD/ICNS/... are rarely well tested) is refused rather than trusted.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""Plugin names for Image.open; multi-picture JPEGs (MPO) come through the JPEG plugin."""

_WHITE = (255, 255, 255)

BUDGET_BYTES_PER_PIXEL = 4
"""Decoding may use ``max_pixels`` x this many bytes: what an RGB image at the pixel limit takes
in PIL (RGBX). The pixel limit alone let a small 16-bit PNG of many megapixels cost gigabytes,
because its conversion ran on float64 copies; the budget counts bytes per pixel instead
(docs/benchmarks.md, "Decoding memory")."""

HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
"""Modes scaled to 8 bits by :func:`_high_bit_depth_to_l` (PIL's convert would clip, not scale)."""

REDUCED_BEFORE_CONVERSION = ("RGBA", "LA", "La", "RGBa")
"""Modes whose conversion to RGB makes full-size copies (compositing on white): a large one is
first box-reduced towards the model's input size. Plain RGB is never touched, so ordinary
photos decode exactly as PIL decodes them."""


def _working_bytes_per_pixel(mode: str) -> int:
    """Peak bytes per pixel while decoding and converting an image of ``mode``.

    PIL keeps 1 byte for 1/L/P, 2 for I;16 and 4 for everything else; high-bit-depth modes
    also hold their 8-bit result while the decoded pixels are still alive.
    """
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return stored + 1 if mode in HIGH_BIT_DEPTH else stored


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
    working_set = width * height * _working_bytes_per_pixel(image.mode)
    if working_set > max_pixels * BUDGET_BYTES_PER_PIXEL:
        raise InvalidImageError(
            "image_too_large",
            f"a {width}x{height} {image.mode} image needs {working_set / 2**20:,.0f} MiB to decode; "
            f"the budget is {max_pixels * BUDGET_BYTES_PER_PIXEL / 2**20:,.0f} MiB",
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
    orientation = _exif_transposition(image)
    factor = _reduce_factor(image, target_size)
    if image.mode in HIGH_BIT_DEPTH:
        image = _high_bit_depth_to_l(image, factor)
    elif factor > 1 and image.mode in REDUCED_BEFORE_CONVERSION:
        image = image.reduce(factor)
    if orientation is not None:
        image = image.transpose(orientation)
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


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten every mode to 8-bit RGB; transparent pixels become white, like a product page."""
    if image.mode in HIGH_BIT_DEPTH:
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


def _reduce_factor(image: Image.Image, target_size: int | None) -> int:
    """The integer box-reduction that keeps the shortest side >= the model's input size."""
    if target_size is None or target_size < 1:
        return 1
    return max(1, min(image.size) // target_size)


_EXIF_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _exif_transposition(image: Image.Image) -> Image.Transpose | None:
    """The turn that puts a phone photo upright (read before any reduction, which drops EXIF);
    a broken EXIF block must not reject an otherwise fine image."""
    try:
        return _EXIF_TRANSPOSITIONS.get(int(image.getexif().get(0x0112, 1)))
    except Exception:
        return None


STRIP_BYTES = 8 * 1024 * 1024
"""float64 working memory per strip while scaling high-bit-depth pixels."""


def _high_bit_depth_to_l(image: Image.Image, factor: int = 1) -> Image.Image:
    """Scale 16-bit/32-bit/float grayscale to 8 bits (PIL's convert would clip, not scale),
    box-reducing by ``factor`` on the way.

    Done in strips of rows cropped from the decoded image, so the working memory is a few MiB
    whatever the size, where the whole-image float64 copies this replaced grew with the image
    (docs/benchmarks.md, "Decoding memory").
    """
    width, height = image.size
    out_w, out_h = max(1, width // factor), max(1, height // factor)
    if width == 0 or height == 0:
        return Image.new("L", (width, height))
    scale = _high_bit_depth_scale(image)
    rows = max(1, STRIP_BYTES // (8 * width * factor))  # output rows per strip
    out = np.empty((out_h, out_w), dtype=np.uint8)
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        box = (0, top * factor, out_w * factor, min(height, bottom * factor))
        strip = np.asarray(image.crop(box)).astype(np.float64)
        if factor > 1:
            strip = strip.reshape(bottom - top, factor, out_w, factor).mean(axis=(1, 3))
        out[top:bottom] = np.clip(np.rint(np.nan_to_num(strip * scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _high_bit_depth_scale(image: Image.Image) -> float:
    """The factor to 8 bits: floats in 0..1 are fractions; mode I holding 8-bit values stays."""
    _, high = image.getextrema()  # type: ignore[misc]
    if image.mode == "F":
        return 255.0 if high <= 1.0 else 1.0
    if image.mode == "I" and high <= 255:
        return 1.0
    return 1 / 257.0
