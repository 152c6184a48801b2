"""The batched forward-pass loop shared by every in-process encoder, and the queue that feeds it.

Forward passes run one at a time per model: two concurrent passes on the same few cores (or one
GPU) are slower together than one after the other, and peak memory doubles. Callers that queue
up behind a running pass are then merged into the next one (:class:`ForwardQueue`): a pass over
eight images costs far less than eight passes over one, so concurrent searches share passes
instead of waiting in line. A lone caller never waits for company: merging only takes what
queued up anyway, so batch-1 latency is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from encoder.base import EncoderDescription, QueueStats
from encoder.devices import is_cuda

T = TypeVar("T")

GPU_PASS_ROWS = 256
"""Rows a merged pass may reach on a GPU. There a pass over 32 images is mostly kernel launches
(held under the GIL, which the decoding lanes of an ingest also need), while 256 still fits any
GPU with room to spare; on a CPU a pass is compute-bound from a few rows on, so it stays at the
batch size and a query never waits behind a long pass."""


def pass_rows(device: str, batch_size: int) -> int:
    """The ``max_rows`` of an encoder's forward queues on ``device``."""
    return max(batch_size, GPU_PASS_ROWS) if is_cuda(device) else batch_size


@dataclass
class _Call:
    batch: torch.Tensor
    rows: np.ndarray | None = None
    error: BaseException | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.rows is not None or self.error is not None


class ForwardQueue:
    """``forward`` for one kind of input, one pass at a time, merging the calls waiting behind it.

    The caller whose call finds the queue idle runs the pass (for itself and for every call
    that queued meanwhile, up to ``max_rows`` rows); the others sleep until their rows are in.
    ``lock`` is shared by all queues of one model, so its image and text passes still never
    overlap. Inputs are merged by concatenation; 2-D token batches of different lengths are
    padded with zeros first, which changes nothing for causal text towers (what follows a
    text's end token is never attended to).
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        *,
        device: str,
        max_rows: int,
        lock: threading.Lock,
    ) -> None:
        self._forward = forward
        self._device = device
        self._max_rows = max(1, max_rows)
        self._lock = lock
        self._cond = threading.Condition()
        self._waiting: list[_Call] = []
        self._busy = False
        self.stats = QueueStats()

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """Unit-length float32 rows for ``batch``, possibly computed in a pass with other calls."""
        call = _Call(batch)
        with self._cond:
            self._waiting.append(call)
        while True:
            with self._cond:
                while self._busy and not call.done:
                    self._cond.wait()
                if call.done:
                    break
                self._busy = True
                calls = self._take()
            try:
                self._run(calls)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        assert call.rows is not None
        return call.rows

    def _take(self) -> list[_Call]:
        """Oldest first, whole calls, up to ``max_rows`` rows (always at least one call)."""
        taken = [self._waiting.pop(0)]
        rows = len(taken[0].batch)
        while self._waiting and rows + len(self._waiting[0].batch) <= self._max_rows:
            call = self._waiting.pop(0)
            rows += len(call.batch)
            taken.append(call)
        return taken

    def _run(self, calls: list[_Call]) -> None:
        try:
            merged = _merge([c.batch for c in calls])
            with self._lock, torch.inference_mode():
                features = self._forward(merged.to(self._device, non_blocking=True)).float()
                rows = torch.nn.functional.normalize(features, dim=-1).cpu().numpy()
        except BaseException as exc:
            for call in calls:
                call.error = exc
            return
        start = 0
        for call in calls:
            call.rows = np.ascontiguousarray(rows[start : start + len(call.batch)], dtype=np.float32)
            start += len(call.batch)
        self.stats.passes += 1
        self.stats.rows += len(merged)
        self.stats.merged_calls += len(calls) - 1
        self.stats.largest_pass = max(self.stats.largest_pass, len(merged))


def _merge(batches: list[torch.Tensor]) -> torch.Tensor:
    if len(batches) == 1:
        return batches[0]
    width = max(b.shape[-1] for b in batches)
    if any(b.shape[1:] != batches[0].shape[1:] for b in batches):
        if any(b.ndim != 2 for b in batches):
            raise ValueError("only token batches (n, length) can be merged at different shapes")
        batches = [torch.nn.functional.pad(b, (0, width - b.shape[-1])) for b in batches]
    return torch.cat(batches)


def encode_in_batches(
    items: Sequence[T],
    *,
    batch_size: int,
    dim: int,
    to_tensor: Callable[[Sequence[T]], torch.Tensor],
    run: ForwardQueue,
) -> np.ndarray:
    """Preprocess ``items`` in chunks (in the caller's thread, so callers do it in parallel) and
    send each chunk through ``run``; unit-length float32 rows in input order."""
    if not items:
        return np.zeros((0, dim), dtype=np.float32)
    chunks = [run(to_tensor(items[start : start + batch_size])) for start in range(0, len(items), batch_size)]
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


class InProcessEncoder:
    """What CLIP and MobileNetV2 share as :class:`encoder.base.Encoder`: images through the model's
    own preprocessing and forward queue, and a description of it all. Subclasses set the
    attributes below and ``preprocess_images``; an image-only model leaves ``text_queue`` None."""

    model_id: str
    dim: int
    device: str
    batch_size: int
    weights_source: str
    supports_texts: bool
    decode_size: int | None
    preprocess_on: str
    image_queue: ForwardQueue
    text_queue: ForwardQueue | None = None
    runtime: str | None = None
    """How the forward passes run, where there is a choice (CLIP's runtimes); None: torch only."""
    text_runtime: str | None = None

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return encode_in_batches(
            images,
            batch_size=self.batch_size,
            dim=self.dim,
            to_tensor=self.preprocess_images,
            run=self.image_queue,
        )

    def encode_uploads(self, blobs: Sequence[bytes], images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_images(list(images))

    def description(self) -> EncoderDescription:
        queues = {"image": self.image_queue, "text": self.text_queue}
        return EncoderDescription(
            model_id=self.model_id,
            dim=self.dim,
            device=self.device,
            weights_source=self.weights_source,
            supports_texts=self.supports_texts,
            batch_size=self.batch_size,
            runtime=self.runtime,
            text_runtime=self.text_runtime,
            preprocess_on=self.preprocess_on,
            forward_passes={kind: queue.stats for kind, queue in queues.items() if queue is not None},
        )
