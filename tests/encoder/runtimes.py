"""Building the random-weight CLIP on a runtime, as every runtime test does."""

from __future__ import annotations

from pathlib import Path

from encoder.clip import ClipEncoder
from encoder.clip_onnx import OnnxClipEncoder
from encoder.factory import build_clip_encoder
from encoder.registry import DEFAULT_CLIP_MODEL


def random_clip(runtime: str, cache_dir: Path) -> ClipEncoder | OnnxClipEncoder:
    """ViT-B-32 with seeded random weights on ``runtime``, its exports cached in ``cache_dir``."""
    return build_clip_encoder(
        DEFAULT_CLIP_MODEL, random_weights=True, device="cpu", batch_size=8,
        runtime=runtime, onnx_cache_dir=cache_dir,
    )  # fmt: skip
