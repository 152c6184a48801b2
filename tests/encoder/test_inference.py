"""Concurrent callers share forward passes: same rows as alone, fewer passes, errors reach everyone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from encoder.clip import ClipEncoder
from encoder.images import decode_image
from encoder.inference import GPU_PASS_ROWS, pass_rows
from encoder.mobilenet import MobileNetEncoder

CALLERS = 8


def _together(fn: Callable[[Any], np.ndarray], inputs: list[Any]) -> list[np.ndarray]:
    """Every input from its own thread, released at once so the calls pile up behind one pass."""
    start = threading.Barrier(len(inputs))

    def call(item: Any) -> np.ndarray:
        start.wait()
        return fn(item)

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(call, inputs))


@pytest.fixture(scope="module")
def photos(sample_jpegs: list[Path]) -> list[Image.Image]:
    return [
        decode_image(p.read_bytes(), max_pixels=40_000_000, target_size=224) for p in sample_jpegs[:CALLERS]
    ]


def test_concurrent_images_share_passes_and_get_their_own_rows(
    clip_random: ClipEncoder, photos: list[Image.Image]
) -> None:
    alone = [clip_random.encode_images([p])[0] for p in photos]
    before = _snapshot(clip_random.image_queue.stats)
    together = _together(lambda p: clip_random.encode_images([p])[0], photos)
    passes = clip_random.image_queue.stats.passes - before["passes"]
    merged = clip_random.image_queue.stats.merged_calls - before["merged_calls"]
    assert passes < len(photos) and merged == len(photos) - passes
    for got, want in zip(together, alone, strict=True):
        assert np.abs(got - want).max() <= 1e-5  # each caller gets its own row, not a neighbour's


def test_concurrent_texts_get_their_own_rows(clip_random: ClipEncoder) -> None:
    texts = ["hat", "a red summer dress", "black leather ankle boots with a low heel", "", "shoes"] * 2
    alone = [clip_random.encode_texts([t])[0] for t in texts]
    together = _together(lambda t: clip_random.encode_texts([t])[0], texts)
    for got, want in zip(together, alone, strict=True):
        assert np.abs(got - want).max() <= 1e-5


def test_a_failed_pass_fails_every_merged_caller_and_the_next_pass_works(
    mobilenet: MobileNetEncoder, photos: list[Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = mobilenet.image_queue._forward
    entered, release = threading.Event(), threading.Event()

    def broken(pixels: torch.Tensor) -> torch.Tensor:
        entered.set()
        release.wait(10)  # hold the first pass so the other callers queue behind it
        raise RuntimeError("out of memory")

    monkeypatch.setattr(mobilenet.image_queue, "_forward", broken)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(mobilenet.encode_images, photos[:1])
        assert entered.wait(10)
        rest = [pool.submit(mobilenet.encode_images, [p]) for p in photos[1:4]]
        while len(mobilenet.image_queue._waiting) < 3:
            threading.Event().wait(0.01)
        release.set()
        for future in [first, *rest]:
            with pytest.raises(RuntimeError, match="out of memory"):
                future.result(10)
    monkeypatch.setattr(mobilenet.image_queue, "_forward", real)
    assert mobilenet.encode_images(photos[:2]).shape == (2, 1280)


def _snapshot(stats: Any) -> dict[str, int]:
    return dict(vars(stats))


def test_gpu_passes_may_merge_several_batches_cpu_passes_stay_at_one() -> None:
    assert pass_rows("cpu", 32) == 32
    assert pass_rows("cuda", 32) == pass_rows("cuda:1", 32) == GPU_PASS_ROWS
    assert pass_rows("cuda", 512) == 512
