"""decode_image on the inputs real shops upload: odd modes, rotated phone photos, hostile files."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from encoder.errors import InvalidImageError
from encoder.images import decode_image
from encoder.mobilenet import MobileNetEncoder

MAX_PIXELS = 40_000_000


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _decode(data: bytes, target_size: int | None = None) -> Image.Image:
    return decode_image(data, max_pixels=MAX_PIXELS, target_size=target_size)


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR claims another size (CRC fixed), i.e. a decompression bomb."""
    data = bytearray(_save(Image.new("L", (8, 8)), "PNG"))
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def _jpeg_with_declared_size(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("RGB", (16, 16), "red"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_exif_rotated_photo_is_turned_upright() -> None:
    # Left half red, right half blue, stored sideways with "rotate 90 CW to display" (6).
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = _decode(_save(Image.fromarray(pixels), "JPEG", exif=exif, quality=95))
    assert decoded.size == (20, 40)
    top, bottom = np.asarray(decoded)[5, 10], np.asarray(decoded)[35, 10]
    assert top[0] > 200 and top[2] < 60  # red now on top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_cutout_is_composited_on_white(mode: str) -> None:
    cutout = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    cutout.paste((200, 30, 30, 255), (8, 8, 24, 24))
    if mode == "LA":
        cutout = cutout.convert("LA")
    elif mode == "P":
        cutout = cutout.convert("P")
        cutout.info["transparency"] = cutout.getpixel((0, 0))
    fmt = "GIF" if mode == "P" else "PNG"
    decoded = np.asarray(
        _decode(
            _save(cutout, fmt, transparency=cutout.info.get("transparency"))
            if mode == "P"
            else _save(cutout, fmt)
        )
    )
    assert decoded.shape == (32, 32, 3)
    assert tuple(decoded[0, 0]) == (255, 255, 255)
    assert decoded[16, 16].max() < 255  # the product itself is not washed out


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (24, 24), (0, 255, 255, 0))  # pure red in CMYK
    decoded = _decode(_save(cmyk, "JPEG", quality=95))
    assert decoded.mode == "RGB"
    red = np.asarray(decoded)[12, 12]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_grayscale_jpeg_becomes_three_equal_channels() -> None:
    gray = Image.linear_gradient("L").resize((64, 64))
    decoded = np.asarray(_decode(_save(gray, "JPEG", quality=95)))
    assert decoded.shape == (64, 64, 3)
    assert np.array_equal(decoded[..., 0], decoded[..., 1])
    assert np.array_equal(decoded[..., 1], decoded[..., 2])


def test_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    source = Image.fromarray(ramp)
    assert source.mode.startswith("I;16")
    decoded = np.asarray(_decode(_save(source, "PNG")))
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.abs(decoded[..., 0].astype(int) - expected).max() <= 1
    assert decoded[0, 0, 0] == 0 and decoded[0, -1, 0] == 255


def test_one_pixel_image_encodes(mobilenet: MobileNetEncoder) -> None:
    decoded = _decode(_save(Image.new("RGB", (1, 1), (10, 120, 200)), "PNG"))
    assert decoded.size == (1, 1)
    vectors = mobilenet.encode_images([decoded])
    assert vectors.shape == (1, mobilenet.dim)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-5)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_12000x12000_bomb_is_refused_before_decoding(fmt: str) -> None:
    bomb = _png_with_declared_size(12000, 12000) if fmt == "PNG" else _jpeg_with_declared_size(12000, 12000)
    assert len(bomb) < 2000
    start = time.perf_counter()
    with pytest.raises(InvalidImageError) as caught:
        _decode(bomb)
    assert caught.value.code == "image_too_large"
    assert "12000x12000" in caught.value.message
    assert time.perf_counter() - start < 0.5


def test_pil_own_bomb_guard_is_mapped_too() -> None:
    # Our limit set absurdly high: PIL's DecompressionBombError must still become a 4xx code.
    with pytest.raises(InvalidImageError) as caught:
        decode_image(_png_with_declared_size(20000, 20000), max_pixels=10**12)
    assert caught.value.code == "image_too_large"


def test_truncated_jpeg(sample_jpegs: list[Path]) -> None:
    data = sample_jpegs[0].read_bytes()
    with pytest.raises(InvalidImageError) as caught:
        _decode(data[: len(data) // 2])
    assert caught.value.code == "truncated_image"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_image"),
        (b"definitely not an image, just some text\n" * 10, "not_an_image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "not_an_image"),
    ],
)
def test_non_images_are_refused(data: bytes, code: str) -> None:
    with pytest.raises(InvalidImageError) as caught:
        _decode(data)
    assert caught.value.code == code


def test_format_pil_knows_but_we_do_not_accept() -> None:
    with pytest.raises(InvalidImageError) as caught:
        _decode(_save(Image.new("RGB", (8, 8)), "PPM"))
    assert caught.value.code == "unsupported_format"


def test_large_jpeg_is_drafted_but_never_below_target() -> None:
    big = Image.linear_gradient("L").resize((2400, 1800)).convert("RGB")
    data = _save(big, "JPEG", quality=85)
    start = time.perf_counter()
    drafted = _decode(data, target_size=224)
    drafted_s = time.perf_counter() - start
    assert min(drafted.size) >= 224
    assert drafted.size[0] < 2400  # DCT-scaled while decoding
    assert drafted.size[0] * 1800 == drafted.size[1] * 2400  # aspect ratio kept
    assert _decode(data).size == (2400, 1800)  # no target: full decode
    assert drafted_s < 0.5


def test_dataset_jpeg_decodes_exactly_like_pil(sample_jpegs: list[Path]) -> None:
    # The parity tests rely on this: for ordinary RGB JPEGs we add nothing and lose nothing.
    for path in sample_jpegs:
        ours = np.asarray(_decode(path.read_bytes(), target_size=224))
        with Image.open(path) as reference:
            assert np.array_equal(ours, np.asarray(reference.convert("RGB")))


RSS_PROBE = """
import resource, sys
from encoder.images import decode_image
data = open(sys.argv[1], "rb").read()
target = int(sys.argv[2]) or None
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = decode_image(data, max_pixels=40_000_000, target_size=target)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(image.size[0], image.size[1], (after - before) // 1024)
"""


@pytest.mark.parametrize("target_size", [224, 0])
def test_a_16_bit_40_mpx_png_costs_under_300_mib(tmp_path: Path, target_size: int) -> None:
    # The hostile file of issue 14: a tiny 16-bit PNG of ~40 Mpx once cost +1.2 GiB to decode.
    import subprocess
    import sys

    width, height = 7290, 5450
    ramp = np.broadcast_to((np.arange(width, dtype=np.uint32) * 9 % 65536).astype(np.uint16), (height, width))
    path = tmp_path / "deep.png"
    Image.fromarray(np.ascontiguousarray(ramp)).save(path, compress_level=1)
    assert path.stat().st_size < 1_000_000
    probe = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(path), str(target_size)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    out_w, out_h, grown_mib = map(int, probe.stdout.split())
    assert grown_mib < 300, grown_mib
    if target_size:
        assert min(out_w, out_h) >= target_size and out_w < width  # reduced, never below the target
        assert out_w * height == pytest.approx(out_h * width, rel=0.01)
    else:
        assert (out_w, out_h) == (width, height)


def test_reduced_high_bit_depth_matches_scaling_then_resizing() -> None:
    # Box-reducing before scaling to 8 bits gives what scaling and then box-reducing would.
    ramp = np.tile(np.linspace(0, 65535, 1024).astype(np.uint16), (512, 1))
    data = _save(Image.fromarray(ramp), "PNG")
    reduced = np.asarray(_decode(data, target_size=128))[..., 0].astype(int)
    full = np.asarray(_decode(data).convert("L").reduce(4)).astype(int)
    assert reduced.shape == (128, 256)
    assert np.abs(reduced - full).max() <= 1


def test_exif_orientation_survives_the_reduction() -> None:
    # A large transparent PNG is reduced before compositing; its EXIF turn must still apply.
    image = Image.new("RGBA", (1200, 600), (255, 0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = _decode(_save(image, "PNG", exif=exif), target_size=224)
    assert decoded.size[0] < decoded.size[1]  # upright: portrait
    assert min(decoded.size) >= 224


def test_the_pixel_budget_counts_bytes_per_pixel() -> None:
    # 32-bit float pixels cost 4 bytes each (+1 for the 8-bit result): 40 Mpx is over budget,
    # while 8-bit grayscale at the same size is not refused by the budget.
    header = _png_with_declared_size(7000, 5700)
    with pytest.raises(InvalidImageError) as caught:
        decode_image(_save(Image.new("F", (4000, 4000)), "TIFF"), max_pixels=16_000_000)
    assert caught.value.code == "image_too_large" and "MiB" in caught.value.message
    with pytest.raises(InvalidImageError) as bomb:
        _decode(header)  # declared 39.9 Mpx of L: passes the budget, then fails as truncated
    assert bomb.value.code == "truncated_image"
