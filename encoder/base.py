"""The one encoder interface. CLIP, MobileNetV2 and the remote-service client all implement it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@runtime_checkable
class Encoder(Protocol):
    """Turns images (and, for CLIP, texts) into L2-normalised float32 rows."""

    model_id: str
    dim: int
    device: str

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit-length rows, in input order."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Return an (n, dim) float32 array; image-only encoders raise NotImplementedError."""
        ...
