"""The two constructors the API (and the encoder service) call; parameters mirror api.settings.

Kept separate from the model modules so callers import one stable place, and so the
encoder package never imports the API's settings (it must stay usable on its own).
"""

from __future__ import annotations

from pathlib import Path

from encoder.clip import ClipEncoder, load_clip_encoder
from encoder.clip_onnx import OnnxClipEncoder
from encoder.mobilenet import MobileNetEncoder, load_mobilenet_encoder


def build_clip_encoder(
    model_name: str,
    *,
    weights_path: Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    runtime: str = "torch",
    onnx_cache_dir: Path | None = None,
) -> ClipEncoder | OnnxClipEncoder:
    """CLIP from ``encoder.registry``; raises EncoderUnavailableError (with the reason) on missing weights.

    ``runtime`` is one of ``encoder.clip_onnx.RUNTIMES``; anything but ``torch`` exports to
    ``onnx_cache_dir`` on first use and silently (logged) falls back to torch if it cannot.
    """
    return load_clip_encoder(
        model_name,
        weights_path=weights_path,
        random_weights=random_weights,
        device=device,
        batch_size=batch_size,
        runtime=runtime,
        onnx_cache_dir=onnx_cache_dir,
    )


def build_mobilenet_encoder(device: str = "auto", batch_size: int = 32) -> MobileNetEncoder:
    """The ImageNet MobileNetV2 fallback; raises EncoderUnavailableError if its weights are nowhere."""
    return load_mobilenet_encoder(device=device, batch_size=batch_size)
