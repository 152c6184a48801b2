"""Shared fixtures for the encoder tests: the real dataset, real models, seeded random CLIP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from encoder.clip import ClipEncoder
from encoder.errors import EncoderUnavailableError
from encoder.factory import build_clip_encoder, build_mobilenet_encoder
from encoder.install_weights import install_mobilenet_weights
from encoder.mobilenet import MobileNetEncoder
from encoder.registry import DEFAULT_CLIP_MODEL

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_PIXELS = 40_000_000


def dataset_root() -> Path:
    override = os.environ.get("LOOKALIKE_DATASET_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared/datasets/clothing-small"


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    root = dataset_root()
    if not (root / "test").is_dir() or not (root / "train").is_dir():
        pytest.skip(f"clothing-small dataset not found at {root} (set LOOKALIKE_DATASET_DIR)")
    return root


@pytest.fixture(scope="session")
def sample_jpegs(dataset_dir: Path) -> list[Path]:
    """One test image from each of the first four classes: varied content, small and fast."""
    classes = sorted(p for p in (dataset_dir / "test").iterdir() if p.is_dir())[:4]
    return [sorted(c.glob("*.jpg"))[0] for c in classes]


@pytest.fixture(scope="session")
def clip_random() -> ClipEncoder:
    """ViT-B-32 with seeded random weights: real compute, reproducible across processes."""
    return build_clip_encoder(DEFAULT_CLIP_MODEL, random_weights=True, device="cpu", batch_size=8)


@pytest.fixture(scope="session")
def mobilenet() -> MobileNetEncoder:
    install_mobilenet_weights()
    try:
        return build_mobilenet_encoder(device="cpu", batch_size=32)
    except EncoderUnavailableError as exc:
        pytest.skip(f"MobileNetV2 weights unavailable: {exc}")
