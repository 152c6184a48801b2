"""Encoder latency and throughput: ``.venv/bin/python bench/encode.py [--device cpu|cuda|all]``.

Measures what a search request pays (batch 1, per image) and what a catalog import gets
(batch 32, images/s) for CLIP ViT-B-32 (random weights: same compute as the real ones)
image + text, and MobileNetV2 images. Timings include each model's transforms but not JPEG
decoding, which is reported on its own line.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from encoder.factory import build_clip_encoder, build_mobilenet_encoder
from encoder.images import decode_image
from encoder.install_weights import install_mobilenet_weights
from encoder.registry import DEFAULT_CLIP_MODEL

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 40_000_000
TEXTS = [
    f"a {c} {k}" for c in ("red", "black", "striped", "denim") for k in ("dress", "shirt", "shoes", "hat")
]


def _dataset_images(count: int) -> list[bytes]:
    root = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))
    paths = sorted((root / "test").glob("*/*.jpg"))[:count]
    if paths:
        return [p.read_bytes() for p in paths]
    print(f"(dataset not found at {root}; using synthetic 400x534 JPEGs)", file=sys.stderr)
    import io

    blobs = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.effect_noise((400, 534), 40 + i).convert("RGB").save(buffer, format="JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


def _time(fn: Callable[[], object], repeats: int, device: str) -> list[float]:
    fn()  # warm-up: allocator, oneDNN/cuDNN kernel selection
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _report(name: str, single: list[float], batch: list[float], batch_size: int) -> None:
    p50 = statistics.median(single) * 1000
    p90 = sorted(single)[int(0.9 * (len(single) - 1))] * 1000
    throughput = batch_size / statistics.median(batch)
    print(
        f"{name:<28} batch 1: p50 {p50:7.1f} ms  p90 {p90:7.1f} ms | batch {batch_size}: {throughput:7.1f} /s"
    )


def bench_device(device: str, repeats: int, batch_size: int) -> None:
    blobs = _dataset_images(batch_size)
    print(f"\n== device: {device} (torch threads: {torch.get_num_threads()}) ==")
    start = time.perf_counter()
    images = [decode_image(b, max_pixels=MAX_PIXELS, target_size=224) for b in blobs]
    print(
        f"{'JPEG decode (400x534 avg)':<28} {(time.perf_counter() - start) / len(blobs) * 1000:7.1f} ms/image"
    )
    _bench_clip(images, device, repeats, batch_size)
    _bench_mobilenet(images, device, repeats, batch_size)


def _bench_clip(images: list[Image.Image], device: str, repeats: int, batch_size: int) -> None:
    clip = build_clip_encoder(DEFAULT_CLIP_MODEL, random_weights=True, device=device, batch_size=batch_size)
    _report(
        "CLIP ViT-B-32 image",
        _time(lambda: clip.encode_images(images[:1]), repeats, device),
        _time(lambda: clip.encode_images(images), max(2, repeats // 5), device),
        batch_size,
    )
    texts = (TEXTS * (batch_size // len(TEXTS) + 1))[:batch_size]
    _report(
        "CLIP ViT-B-32 text",
        _time(lambda: clip.encode_texts(texts[:1]), repeats, device),
        _time(lambda: clip.encode_texts(texts), max(2, repeats // 5), device),
        batch_size,
    )


def _bench_mobilenet(images: list[Image.Image], device: str, repeats: int, batch_size: int) -> None:
    install_mobilenet_weights()
    mobile = build_mobilenet_encoder(device=device, batch_size=batch_size)
    _report(
        "MobileNetV2 image",
        _time(lambda: mobile.encode_images(images[:1]), repeats, device),
        _time(lambda: mobile.encode_images(images), max(2, repeats // 5), device),
        batch_size,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="all", help="cpu, cuda, or all (cpu plus cuda when present)")
    parser.add_argument("--repeats", type=int, default=20, help="batch-1 timing repeats")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    for device in devices:
        bench_device(device, args.repeats, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
