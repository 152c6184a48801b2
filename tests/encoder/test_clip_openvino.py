"""The OpenVINO CLIP runtimes: same vectors as torch fp32 (cosine >= 0.999), same gate and fallbacks."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from encoder.clip import ClipEncoder
from encoder.clip_onnx import PARITY_MIN_COSINE, OnnxClipEncoder
from encoder.images import decode_image
from tests.encoder.runtimes import random_clip

pytestmark = pytest.mark.slow  # builds OpenVINO models: not in `make test-fast`

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")

MAX_PIXELS = 40_000_000
TEXTS = [
    "",
    "hat",
    "a red summer dress",
    "black leather ankle boots with a low block heel, side zip and a rounded toe, for women",
    "striped cotton t-shirt " * 12,  # longer than 77 tokens: truncated exactly as torch does
]
RUNTIMES = ["openvino", "openvino-bf16", "openvino-int8"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def encoders(cache_dir: Path) -> dict[str, ClipEncoder | OnnxClipEncoder]:
    """Every OpenVINO runtime from one cache: the graphs are exported once and shared."""
    return {runtime: random_clip(runtime, cache_dir) for runtime in RUNTIMES}


@pytest.fixture(scope="module")
def photos(dataset_dir: Path) -> list:
    classes = sorted(p for p in (dataset_dir / "test").iterdir() if p.is_dir())[:4]
    paths = [path for c in classes for path in sorted(c.glob("*.jpg"))[:3]]
    return [decode_image(p.read_bytes(), max_pixels=MAX_PIXELS, target_size=224) for p in paths]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_serves_both_towers(runtime: str, encoders: dict) -> None:
    encoder = encoders[runtime]
    assert isinstance(encoder, OnnxClipEncoder), f"{runtime} fell back to torch on this CPU"
    assert encoder.runtime == runtime
    assert encoder.text_runtime == runtime  # int8 text passes parity on random weights
    assert encoder.encode_images([]).shape == (0, 512)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_parity_on_real_photos(
    runtime: str, encoders: dict, clip_random: ClipEncoder, photos: list
) -> None:
    encoder = encoders[runtime]
    want = clip_random.encode_images(photos)
    got = encoder.encode_images(photos)  # 12 images: batches of 8 and 4 (dynamic batch)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert _cosines(got, want).min() >= PARITY_MIN_COSINE
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([encoder.encode_images([image]) for image in photos[:3]])
    assert _cosines(single, want[:3]).min() >= PARITY_MIN_COSINE


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_text_parity_for_every_length(runtime: str, encoders: dict, clip_random: ClipEncoder) -> None:
    encoder = encoders[runtime]
    want = clip_random.encode_texts(TEXTS)
    together = encoder.encode_texts(TEXTS)
    alone = np.concatenate([encoder.encode_texts([text]) for text in TEXTS])
    for got in (together, alone):
        assert _cosines(got, want).min() >= PARITY_MIN_COSINE


def test_int8_image_tower_has_its_own_graph(encoders: dict) -> None:
    """OpenVINO runs MatMulNBits as compressed weights; ONNX Runtime's int8 file stays its own."""
    encoder = encoders["openvino-int8"]
    assert (encoder.artifacts / "visual-int8-blockwise.onnx").is_file()
    assert (encoder.artifacts / "openvino-blobs").is_dir()  # compiled blobs: warm starts skip compiling


def test_a_rejection_for_openvino_does_not_reject_the_file_for_onnx_runtime(
    encoders: dict, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifacts = encoders["openvino-bf16"].artifacts
    note = artifacts / "visual-fp32.openvino-bf16.rejected"
    note.write_text("parity miss: min cosine 0.99800 < 0.999\n")
    try:
        with caplog.at_level(logging.WARNING, logger="encoder.clip_onnx"):
            bf16 = random_clip("openvino-bf16", cache_dir)
        assert type(bf16) is ClipEncoder and "rejected earlier" in caplog.text
        onnx = random_clip("onnx", cache_dir)
        assert isinstance(onnx, OnnxClipEncoder) and onnx.runtime == "onnx"
    finally:
        note.unlink()


def test_without_openvino_installed_it_falls_back_to_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with caplog.at_level(logging.WARNING, logger="encoder.clip_onnx"):
        encoder = random_clip("openvino-int8", tmp_path)
    assert type(encoder) is ClipEncoder
    assert "openvino" in caplog.text
