"""CLIP: our decode + transforms + model give exactly open_clip's own pipeline's vectors."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from encoder.base import Encoder
from encoder.clip import ClipEncoder
from encoder.clip_model import RANDOM_WEIGHTS_SEED
from encoder.errors import EncoderUnavailableError
from encoder.factory import build_clip_encoder
from encoder.images import decode_image
from encoder.netcheck import hf_endpoint, host_reachable
from encoder.registry import DEFAULT_CLIP_MODEL, clip_spec

MAX_PIXELS = 40_000_000
TEXTS = ["a red summer dress", "black leather shoes", "a wool hat", ""]


@pytest.fixture(scope="module")
def reference() -> tuple[torch.nn.Module, object]:
    """open_clip's own model + preprocess, built independently with the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model, _, preprocess = open_clip.create_model_and_transforms(clip_spec(DEFAULT_CLIP_MODEL).arch)
    return model.eval(), preprocess


def _png(path: Path) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def test_random_weight_encoder_reports_itself(clip_random: ClipEncoder) -> None:
    assert isinstance(clip_random, Encoder)
    assert clip_random.model_id == DEFAULT_CLIP_MODEL
    assert clip_random.dim == 512
    assert clip_random.weights_source == "random"
    assert clip_random.device == "cpu"
    assert clip_random.encode_images([]).shape == (0, 512)
    assert clip_random.encode_texts([]).shape == (0, 512)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_image_parity_with_open_clip(
    clip_random: ClipEncoder, reference: tuple[torch.nn.Module, object], sample_jpegs: list[Path], fmt: str
) -> None:
    model, preprocess = reference
    payloads = [p.read_bytes() if fmt == "JPEG" else _png(p) for p in sample_jpegs]
    ours = clip_random.encode_images(
        [decode_image(data, max_pixels=MAX_PIXELS, target_size=clip_random.decode_size) for data in payloads]
    )
    with torch.inference_mode():
        batch = torch.stack([preprocess(Image.open(io.BytesIO(data)).convert("RGB")) for data in payloads])
        expected = torch.nn.functional.normalize(model.encode_image(batch), dim=-1).numpy()
    assert ours.dtype == np.float32 and ours.shape == (len(payloads), 512)
    assert np.abs(ours - expected).max() <= 1e-5
    # Random weights still separate different photos (the check is not vacuous).
    assert np.abs(ours[0] - ours[1]).max() > 1e-3


def test_text_parity_with_open_clip(
    clip_random: ClipEncoder, reference: tuple[torch.nn.Module, object]
) -> None:
    model, _ = reference
    ours = clip_random.encode_texts(TEXTS)
    with torch.inference_mode():
        tokens = open_clip.get_tokenizer(clip_spec(DEFAULT_CLIP_MODEL).arch)(TEXTS)
        expected = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    assert ours.shape == (len(TEXTS), 512)
    assert np.abs(ours - expected).max() <= 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batches_match_single_images(clip_random: ClipEncoder, sample_jpegs: list[Path]) -> None:
    images = [decode_image(p.read_bytes(), max_pixels=MAX_PIXELS) for p in sample_jpegs]
    together = clip_random.encode_images(images * 3)  # 12 images over batches of 8
    one_by_one = np.concatenate([clip_random.encode_images([image]) for image in images])
    assert np.abs(together[:4] - one_by_one).max() <= 1e-5
    assert np.abs(together[8:12] - one_by_one).max() <= 1e-5


def test_local_weights_file_is_loaded(
    clip_random: ClipEncoder, tmp_path: Path, sample_jpegs: list[Path]
) -> None:
    checkpoint = tmp_path / "vit-b-32.pt"
    torch.save(clip_random._model.state_dict(), checkpoint)
    from_file = build_clip_encoder(DEFAULT_CLIP_MODEL, weights_path=checkpoint, device="cpu")
    assert from_file.weights_source == f"file:{checkpoint}"
    image = [decode_image(sample_jpegs[0].read_bytes(), max_pixels=MAX_PIXELS)]
    assert np.abs(from_file.encode_images(image) - clip_random.encode_images(image)).max() <= 1e-6


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(EncoderUnavailableError, match=r"nope\.pt"):
        build_clip_encoder(DEFAULT_CLIP_MODEL, weights_path=missing, device="cpu")


def test_corrupt_weights_file_is_unavailable_not_random(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderUnavailableError, match="weights unavailable"):
        build_clip_encoder(DEFAULT_CLIP_MODEL, weights_path=bad, device="cpu")


def test_offline_download_fails_fast_with_the_fix() -> None:
    if host_reachable(hf_endpoint()):
        pytest.skip("the Hugging Face Hub is reachable: this would download ~600 MB")
    start = time.perf_counter()
    with pytest.raises(EncoderUnavailableError) as caught:
        build_clip_encoder(DEFAULT_CLIP_MODEL, device="cpu")
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "weights unavailable" in message
    assert "laion2b_s34b_b79k" in message and "ViT-B-32" in message
    assert "LOOKALIKE_CLIP_WEIGHTS_PATH" in message


def test_unknown_model_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="known models"):
        build_clip_encoder("ViT-Q-99__nothing", random_weights=True)
