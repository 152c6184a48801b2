"""Encoder latency and throughput: ``.venv/bin/python bench/encode.py [--device cpu|cuda|all]``.

Measures what a search request pays (batch 1, per image) and what a catalog import gets
(batch 32, images/s) for CLIP ViT-B-32 (random weights: same compute as the real ones)
image + text, and MobileNetV2 images. Timings include each model's transforms but not JPEG
decoding, which is reported on its own line.

On CPU, CLIP is measured on each runtime in ``--clip-runtimes`` (torch fp32 eager, ONNX
Runtime fp32, ONNX Runtime with int8 towers, OpenVINO fp32 / bf16 / int8 weights; text rows
name the text tower that served), beside ``eager``: a plain open_clip call,
``model.encode_image(preprocess(img)[None])`` under ``torch.inference_mode``, the baseline issue
20 compared our torch path with (same seeded weights, same process, same thread settings).
The ONNX files are exported into the user cache on the first run and reused afterwards (the
load line says how long that took).
Other processes sharing the cores skew timings: repeat, and keep the quietest run.
"""

from __future__ import annotations

# First, before torch loads: the package sets the OpenMP spin policy libgomp reads at load.
import encoder  # noqa: F401

# isort: split
import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import open_clip
import torch
from PIL import Image

from encoder.factory import build_clip_encoder, build_mobilenet_encoder
from encoder.images import decode_image
from encoder.install_weights import install_mobilenet_weights
from encoder.registry import DEFAULT_CLIP_MODEL, clip_spec

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


def _time(fn: Callable[[], object], repeats: int, device: str, warm_up: bool = True) -> list[float]:
    if warm_up:
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
    best = min(single) * 1000
    print(
        f"{name:<34} batch 1: p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  min {best:7.1f} ms"
        f" | batch {batch_size}: {throughput:7.1f} /s"
    )


def bench_device(
    device: str, repeats: int, batch_size: int, runtimes: list[str], mobilenet: bool = True
) -> None:
    blobs = _dataset_images(batch_size)
    print(f"\n== device: {device} (torch threads: {torch.get_num_threads()}) ==")
    start = time.perf_counter()
    images = [decode_image(b, max_pixels=MAX_PIXELS, target_size=224) for b in blobs]
    print(
        f"{'JPEG decode (400x534 avg)':<28} {(time.perf_counter() - start) / len(blobs) * 1000:7.1f} ms/image"
    )
    _bench_clip(images, device, repeats, batch_size, runtimes if device == "cpu" else ["torch"])
    if mobilenet:
        _bench_mobilenet(images, device, repeats, batch_size)


def _bench_clip(
    images: list[Image.Image], device: str, repeats: int, batch_size: int, runtimes: list[str]
) -> None:
    """All runtimes loaded first, then timed round-robin: a burst of load from another
    process on the shared cores then hits every runtime alike instead of just one."""
    encoders: dict[str, Any] = {}
    for runtime in runtimes:
        start = time.perf_counter()
        if runtime == "eager":
            encoders["eager"] = PlainOpenClip(device)
            continue
        clip = build_clip_encoder(
            DEFAULT_CLIP_MODEL, random_weights=True, device=device, batch_size=batch_size, runtime=runtime
        )
        served = clip.runtime
        print(f"CLIP on {served} (asked {runtime}): loaded in {time.perf_counter() - start:.1f} s")
        if served in encoders:
            print(f"  ({runtime} fell back to {served}, already measured: skipped)")
            continue
        encoders[served] = clip
    texts = (TEXTS * (batch_size // len(TEXTS) + 1))[:batch_size]
    cases: list[tuple[str, Callable[[Any], object], Callable[[Any], object]]] = [
        ("image", lambda e: e.encode_images(images[:1]), lambda e: e.encode_images(images)),
        ("text", lambda e: e.encode_texts(texts[:1]), lambda e: e.encode_texts(texts)),
    ]
    for kind, one, many in cases:
        singles = _round_robin(encoders, one, repeats, device)
        batches = _round_robin(encoders, many, max(2, repeats // 5), device)
        for served, clip in encoders.items():
            tower = clip.text_runtime if kind == "text" else served
            _report(f"CLIP ViT-B-32 {kind} {tower}", singles[served], batches[served], batch_size)


class PlainOpenClip:
    """What a blog-post stack runs: open_clip's own model, transforms and tokenizer, one call each.

    Built with the same seed as ``random_weights=True``, so it is the same network as ours;
    the vectors are normalised like ours so both do the same work.
    """

    runtime = text_runtime = "eager"

    def __init__(self, device: str) -> None:
        from encoder.clip_model import RANDOM_WEIGHTS_SEED

        arch = clip_spec(DEFAULT_CLIP_MODEL).arch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
        self.model = model.to(device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.device = device

    def encode_images(self, images: list[Image.Image]) -> Any:
        with torch.inference_mode():
            pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_image(pixels), dim=-1).cpu().numpy()

    def encode_texts(self, texts: list[str]) -> Any:
        with torch.inference_mode():
            tokens = self.tokenizer(texts).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_text(tokens), dim=-1).cpu().numpy()


def _round_robin(
    encoders: dict[str, Any], fn: Callable[[Any], object], repeats: int, device: str
) -> dict[str, list[float]]:
    for model in encoders.values():
        fn(model)  # warm-up: allocator, oneDNN/cuDNN kernel selection, ORT arenas
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(repeats):
        for name, model in encoders.items():
            times[name] += _time(lambda e=model: fn(e), 1, device, warm_up=False)
    return times


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
    parser.add_argument(
        "--clip-runtimes",
        default="eager,torch,onnx,onnx-int8,openvino,openvino-bf16,openvino-int8",
        help="comma-separated CLIP runtimes to compare on CPU (eager: plain open_clip; torch, onnx,"
        " onnx-int8, openvino, openvino-bf16, openvino-int8, auto)",
    )
    parser.add_argument("--no-mobilenet", action="store_true", help="skip MobileNetV2")
    args = parser.parse_args(argv)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs,"
        f" GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}"
    )
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    for device in devices:
        bench_device(
            device, args.repeats, args.batch_size, args.clip_runtimes.split(","), not args.no_mobilenet
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
