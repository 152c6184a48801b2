"""The batched forward-pass loop shared by every in-process torch encoder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


def encode_in_batches(
    items: Sequence[T],
    *,
    batch_size: int,
    dim: int,
    device: str,
    to_tensor: Callable[[Sequence[T]], torch.Tensor],
    forward: Callable[[torch.Tensor], torch.Tensor],
    lock: threading.Lock,
) -> np.ndarray:
    """Run ``forward`` over ``items`` in chunks and return unit-length float32 rows.

    The lock serialises forward passes: two concurrent passes on the same few cores (or one
    GPU) are slower together than one after the other, and peak memory doubles.
    """
    if not items:
        return np.zeros((0, dim), dtype=np.float32)
    chunks: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        batch = to_tensor(items[start : start + batch_size])
        with lock, torch.inference_mode():
            features = forward(batch.to(device, non_blocking=True)).float()
            features = torch.nn.functional.normalize(features, dim=-1)
            chunks.append(features.cpu().numpy())
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
