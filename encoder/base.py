"""The one encoder interface. CLIP (every runtime), MobileNetV2 and the remote-service client implement it.

Callers outside this package use only what is declared here, never ``isinstance`` on a concrete
class or ``getattr`` with a default: what differs between encoders (the remote one wants the
original upload bytes, a local one the decoded pixels; which runtime serves) is asked through
:meth:`Encoder.encode_uploads` and :meth:`Encoder.description`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass
class QueueStats:
    """Forward passes of one input kind of an in-process encoder (see :mod:`encoder.inference`)."""

    passes: int = 0
    rows: int = 0
    merged_calls: int = 0
    """Calls that rode along in a pass another call started."""
    largest_pass: int = 0


@dataclass(frozen=True)
class EncoderDescription:
    """What health reports and operators need to know about an encoder, typed, in one place."""

    model_id: str
    dim: int
    device: str
    weights_source: str
    """``random`` for seeded test weights: health must never pass those off as a real model."""
    supports_texts: bool
    batch_size: int | None = None
    runtime: str | None = None
    """How the image tower runs (``torch``, ``onnx-int8``, ...); None where only one way exists."""
    text_runtime: str | None = None
    preprocess_on: str | None = None
    """``pillow`` (CPU) or ``device``; None for the remote client, whose service decides."""
    forward_passes: dict[str, QueueStats] = field(default_factory=dict)
    """Per input kind (``image``, ``text``) of an in-process encoder; empty for the remote one."""

    def forward_pass_stats(self) -> dict[str, dict[str, Any]]:
        return {kind: asdict(stats) for kind, stats in self.forward_passes.items()}


@runtime_checkable
class Encoder(Protocol):
    """Turns images (and, for CLIP, texts) into L2-normalised float32 rows."""

    model_id: str
    dim: int
    device: str
    weights_source: str
    supports_texts: bool
    decode_size: int | None
    """Shortest side the model resizes to (JPEG decoding may draft down to it); None: no need."""

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit-length rows, in input order."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Return an (n, dim) float32 array; image-only encoders raise NotImplementedError."""
        ...

    def encode_uploads(self, blobs: Sequence[bytes], images: Sequence[Image.Image]) -> np.ndarray:
        """Rows for uploads the caller has already decoded (and so validated): ``images[i]`` is
        ``blobs[i]`` decoded. In-process encoders use the pixels; the remote one sends the
        original bytes, so nothing is re-encoded on the way."""
        ...

    def description(self) -> EncoderDescription: ...
