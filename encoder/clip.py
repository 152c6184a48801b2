"""CLIP (open_clip) as an :class:`encoder.base.Encoder`: images and texts in one space."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from encoder.clip_model import ClipModel, load_clip_model
from encoder.inference import ForwardQueue, InProcessEncoder, encode_in_batches, pass_rows
from encoder.tensor_transforms import ImageBatches


class ClipEncoder(InProcessEncoder):
    """One open_clip model plus exactly the preprocessing open_clip pairs with its weights.

    Runs the forward passes in torch; :class:`encoder.clip_onnx.OnnxClipEncoder` replaces them.
    """

    def __init__(self, loaded: ClipModel, *, batch_size: int) -> None:
        self.loaded = loaded
        """The model this encoder runs; the ONNX/OpenVINO runtimes export and check against it."""
        self.spec = loaded.spec
        self.model_id = loaded.spec.name
        self.dim = loaded.spec.dim
        self.device = loaded.device
        self.batch_size = batch_size
        self.weights_source = loaded.weights_source
        self.supports_texts = True
        self.decode_size = _shortest_side(loaded.preprocess)
        """Shortest side the transforms resize to; decode_image may draft JPEGs down to it."""
        self._model = loaded.model
        self._dtype = next(loaded.model.parameters()).dtype
        self.runtime: str | None = "torch-fp16" if self._dtype == torch.float16 else "torch"
        """How the image tower runs (ONNX runtimes name themselves); the text tower: ``text_runtime``."""
        self.text_runtime: str | None = self.runtime
        self._preprocess = loaded.preprocess
        self._image_batches = ImageBatches(loaded.preprocess, self.device, on_device=loaded.gpu_mode)
        self.preprocess_on = self._image_batches.where
        """Where images are resized and cropped: Pillow on the CPU, or tensor ops on the device."""
        self._tokenizer = loaded.tokenizer
        lock = threading.Lock()  # image and text passes never overlap either
        # Lambdas, not bound methods: a runtime subclass's forward passes are the ones queued.
        self.image_queue = ForwardQueue(
            lambda pixels: self._image_forward(pixels),
            device=self.device,
            max_rows=pass_rows(self.device, batch_size),
            lock=lock,
        )
        self.text_queue = ForwardQueue(
            lambda tokens: self._text_forward(tokens),
            device=self.device,
            max_rows=pass_rows(self.device, batch_size),
            lock=lock,
        )

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return encode_in_batches(
            texts, batch_size=self.batch_size, dim=self.dim, to_tensor=self._text_batch, run=self.text_queue
        )

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The model's own transforms: one normalised batch, on the device in GPU mode."""
        return self._image_batches(images)

    # The two forward passes and the tokenizing a runtime may replace (encoder.clip_onnx);
    # image preprocessing stays shared.
    def _image_forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model.encode_image(pixels.to(self._dtype))

    def _text_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._model.encode_text(tokens)

    def _text_batch(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts))


def load_clip_encoder(
    model_name: str,
    *,
    weights_path: Path | None = None,
    random_weights: bool = False,
    device: str = "auto",
    batch_size: int = 32,
    cache_dir: str | None = None,
    gpu_mode: bool | None = None,
) -> ClipEncoder:
    """The torch encoder of :func:`encoder.clip_model.load_clip_model` (see there for the arguments).

    This is the reference; :func:`encoder.factory.build_clip_encoder` is what services call,
    and may move the forward passes to another runtime.
    """
    loaded = load_clip_model(
        model_name,
        weights_path=weights_path,
        random_weights=random_weights,
        device=device,
        cache_dir=cache_dir,
        gpu_mode=gpu_mode,
    )
    return ClipEncoder(loaded, batch_size=batch_size)


def _shortest_side(preprocess: Callable[..., Any]) -> int:
    """Read the resize target out of open_clip's Compose (falls back to 224, CLIP's usual)."""
    for step in getattr(preprocess, "transforms", []):
        size = getattr(step, "size", None) or getattr(step, "max_size", None)
        if isinstance(size, int):
            return size
        if isinstance(size, (tuple, list)) and size:
            return int(min(size))
    return 224
