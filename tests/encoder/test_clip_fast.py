"""The ONNX Runtime CLIP path: same vectors as torch fp32 (cosine >= 0.999), cached, self-healing."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from encoder import clip_onnx, onnx_export
from encoder.base import Encoder
from encoder.clip import ClipEncoder
from encoder.clip_onnx import PARITY_MIN_COSINE, OnnxClipEncoder, trim_tokens
from encoder.factory import build_clip_encoder
from encoder.images import decode_image
from encoder.registry import DEFAULT_CLIP_MODEL, clip_spec
from tests.encoder.runtimes import random_clip

pytestmark = pytest.mark.slow  # exports and checks ONNX models: not in `make test-fast`

pytest.importorskip("onnxruntime")

MAX_PIXELS = 40_000_000
TEXTS = [
    "",
    "hat",
    "a red summer dress",
    "black leather ankle boots with a low block heel, side zip and a rounded toe, for women",
    "striped cotton t-shirt " * 12,  # longer than 77 tokens: truncated exactly as torch does
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def fast(cache_dir: Path) -> OnnxClipEncoder:
    """Cold start: exports both towers and their int8 copies into an empty cache."""
    encoder = random_clip("auto", cache_dir)
    assert isinstance(encoder, OnnxClipEncoder), "auto fell back to torch on this CPU"
    return encoder


@pytest.fixture(scope="module")
def photos(dataset_dir: Path) -> list:
    """A dozen real photos, three from each of the first four classes."""
    classes = sorted(p for p in (dataset_dir / "test").iterdir() if p.is_dir())[:4]
    paths = [path for c in classes for path in sorted(c.glob("*.jpg"))[:3]]
    return [decode_image(p.read_bytes(), max_pixels=MAX_PIXELS, target_size=224) for p in paths]


def test_fast_encoder_is_a_drop_in(fast: OnnxClipEncoder, clip_random: ClipEncoder) -> None:
    assert isinstance(fast, Encoder)
    for attribute in ("model_id", "dim", "device", "weights_source", "decode_size", "supports_texts"):
        assert getattr(fast, attribute) == getattr(clip_random, attribute)
    assert fast.runtime in ("onnx-int8", "onnx", "openvino-bf16")
    assert fast.text_runtime in ("onnx-int8", "openvino-int8"), "int8 text missed parity on random weights"
    assert fast.encode_images([]).shape == (0, 512)
    assert fast.encode_texts([]).shape == (0, 512)


@pytest.mark.parametrize("runtime", ["auto", "onnx"])
def test_image_parity_on_real_photos(
    runtime: str, fast: OnnxClipEncoder, cache_dir: Path, clip_random: ClipEncoder, photos: list
) -> None:
    encoder = fast if runtime == "auto" else random_clip(runtime, cache_dir)
    want = clip_random.encode_images(photos)
    got = encoder.encode_images(photos)  # 12 images: batches of 8 and 4
    assert got.dtype == np.float32 and got.shape == want.shape
    cosines = _cosines(got, want)
    assert cosines.min() >= PARITY_MIN_COSINE, cosines
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # One at a time gives the same rows as in a batch (int8 scales are per batch: close, not equal).
    single = np.concatenate([encoder.encode_images([image]) for image in photos[:3]])
    assert _cosines(single, want[:3]).min() >= PARITY_MIN_COSINE


@pytest.mark.parametrize("runtime", ["auto", "onnx"])
def test_text_parity_for_every_length(
    runtime: str, fast: OnnxClipEncoder, cache_dir: Path, clip_random: ClipEncoder
) -> None:
    encoder = fast if runtime == "auto" else random_clip(runtime, cache_dir)
    want = clip_random.encode_texts(TEXTS)
    together = encoder.encode_texts(TEXTS)
    alone = np.concatenate([encoder.encode_texts([text]) for text in TEXTS])
    for got in (together, alone):
        cosines = _cosines(got, want)
        assert cosines.min() >= PARITY_MIN_COSINE, cosines
    # int8 scales are per block of one row, so a text's vector does not depend on its batch.
    assert np.abs(alone - together).max() <= 1e-5
    if runtime == "onnx":
        assert encoder.text_runtime == "onnx"
        # fp32 all the way: trimming is exact up to float rounding.
        assert np.abs(alone - want).max() <= 1e-4


def test_concurrent_texts_of_different_lengths_share_passes_exactly(fast: OnnxClipEncoder) -> None:
    """Trimmed token batches of different widths are padded to merge; each text keeps its row."""
    texts = TEXTS * 2
    alone = [fast.encode_texts([t])[0] for t in texts]
    passes = fast.text_queue.stats.passes
    start = threading.Barrier(len(texts))

    def call(text: str) -> np.ndarray:
        start.wait()
        return fast.encode_texts([text])[0]

    with ThreadPoolExecutor(len(texts)) as pool:
        together = list(pool.map(call, texts))
    assert fast.text_queue.stats.passes - passes < len(texts)
    for got, want in zip(together, alone, strict=True):
        assert np.abs(got - want).max() <= 1e-4  # int8 scales are per block of one row


def test_trimming_padding_does_not_change_the_eot_embedding(clip_random: ClipEncoder) -> None:
    """The premise of trimming, checked on torch itself: causal attention ignores what follows EOT."""
    model = clip_random._model
    tokens = open_clip.get_tokenizer(clip_spec(DEFAULT_CLIP_MODEL).arch)(TEXTS[:4])
    trimmed = trim_tokens(tokens)
    assert trimmed.shape[1] < tokens.shape[1]
    with torch.inference_mode():
        full = model.encode_text(tokens)
        short = onnx_export.TextTower(model)(trimmed)
    assert torch.allclose(full, short, atol=1e-4)


def test_second_load_reuses_the_cache(
    fast: OnnxClipEncoder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_export(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("re-exported although the cache was warm")

    for name in ("export_visual", "export_text", "quantize_visual_int8", "quantize_text_int8"):
        monkeypatch.setattr(clip_onnx, name, no_export)
    again = random_clip("auto", cache_dir)
    assert again.runtime == fast.runtime and again.artifacts == fast.artifacts
    assert again.text_runtime == fast.text_runtime


def test_corrupt_cache_file_is_rebuilt(
    fast: OnnxClipEncoder, cache_dir: Path, clip_random: ClipEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    text_file = fast.artifacts / (
        "text-int8.onnx" if fast.text_runtime.endswith("int8") else "text-fp32.onnx"
    )
    text_file.write_bytes(b"\x00 truncated by a full disk")
    with caplog.at_level(logging.WARNING, logger="encoder.clip_onnx"):
        rebuilt = random_clip("auto", cache_dir)
    assert "rebuilding" in caplog.text
    assert text_file.stat().st_size > 1_000_000
    got = rebuilt.encode_texts(TEXTS[:3])
    assert _cosines(got, clip_random.encode_texts(TEXTS[:3])).min() >= PARITY_MIN_COSINE


def test_failed_export_falls_back_to_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(clip_onnx, "export_text", broken)
    with caplog.at_level(logging.WARNING, logger="encoder.clip_onnx"):
        encoder = random_clip("auto", tmp_path)
    assert isinstance(encoder, ClipEncoder)
    assert "exporter exploded" in caplog.text


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="runtime"):
        build_clip_encoder(DEFAULT_CLIP_MODEL, random_weights=True, device="cpu", runtime="tensorrt")
