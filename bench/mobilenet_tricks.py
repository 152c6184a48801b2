"""Can cheap feature tricks make the MobileNetV2 fallback rank better? (issue 16, item 6)

``.venv/bin/python bench/mobilenet_tricks.py [--latency-images 60]``

The fallback's vectors are MobileNetV2's 1280-d ``features`` map, average-pooled. Two tricks
from the instance-retrieval literature cost no training:

- **GeM pooling** (generalized mean, Radenovic et al. 2018): ``(mean x^p)^(1/p)`` over the 7x7
  map instead of the plain mean; ``p > 1`` leans towards the strongest activations (the object
  rather than the background). ``p = 1`` is average pooling, ``p -> inf`` max pooling.
- **Flip averaging**: the vector of the photo and of its mirror image, each unit length,
  summed (at index and query time alike); costs a second image in the same forward pass.

Protocol (the one behind the 76.9% in docs/benchmarks.md): every clothing-small test photo is a
query against all train photos; **top-1** = the nearest train photo has the query's class,
**P@10** = share of the 10 nearest with the query's class. Images are decoded the way the
product decodes them (``decode_image`` with the model's draft size) and transformed with
``MobileNet_V2_Weights.IMAGENET1K_V1.transforms()``; one forward pass per batch serves all the
poolings. Latency: batch-1 forward (transforms included, decoding excluded) for the plain
pass and for the photo + its mirror in one pass, alternated, p50 over ``--latency-images``.
"""

from __future__ import annotations

# First, before torch loads: the package sets the OpenMP spin policy libgomp reads at load.
import encoder  # noqa: F401

# isort: split
import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from encoder.images import decode_image
from encoder.mobilenet import WEIGHTS, load_mobilenet_encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 40_000_000
GEM_POWERS = (2.0, 3.0, 4.0)


def dataset_root() -> Path:
    override = os.environ.get("LOOKALIKE_DATASET_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "datasets" / "clothing-small"


def split(root: Path, name: str) -> tuple[list[Path], np.ndarray]:
    paths = sorted((root / name).glob("*/*.jpg"))
    return paths, np.array([p.parent.name for p in paths])


def gem(features: torch.Tensor, p: float) -> torch.Tensor:
    """Generalized-mean pooling over the spatial map; MobileNetV2's features are ReLU6 outputs (>= 0)."""
    return features.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def encode(model: torch.nn.Module, paths: list[Path], decode_size: int) -> dict[str, np.ndarray]:
    """Every pooling variant, for the photos and for their mirror images, from one pass per batch."""
    transform = WEIGHTS.transforms()
    out: dict[str, list[np.ndarray]] = {}
    batch = 32
    for start in range(0, len(paths), batch):
        images = [
            decode_image(p.read_bytes(), max_pixels=MAX_PIXELS, target_size=decode_size)
            for p in paths[start : start + batch]
        ]
        pixels = torch.stack([transform(im) for im in images])
        pixels = torch.cat([pixels, torch.flip(pixels, dims=[3])])  # mirror = flip the width axis
        with torch.inference_mode():
            maps = model.features(pixels.contiguous(memory_format=torch.channels_last))
        pooled = {"avg": maps.mean(dim=(2, 3))}
        for p in GEM_POWERS:
            pooled[f"gem{p:g}"] = gem(maps, p)
        n = len(images)
        for name, vectors in pooled.items():
            plain = unit(vectors[:n].numpy())
            mirrored = unit(vectors[n:].numpy())
            out.setdefault(name, []).append(plain)
            out.setdefault(f"{name}+flip", []).append(unit(plain + mirrored))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def quality(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
) -> tuple[float, float]:
    scores = test @ train.T
    top10 = np.argsort(-scores, axis=1)[:, :10]
    right = train_labels[top10] == test_labels[:, None]
    return float(right[:, 0].mean()), float(right.mean())


def latency(model: torch.nn.Module, paths: list[Path], decode_size: int) -> dict[str, float]:
    """Batch-1 forward p50 (ms), transforms included: one photo vs the photo and its mirror."""
    transform = WEIGHTS.transforms()
    images = [decode_image(p.read_bytes(), max_pixels=MAX_PIXELS, target_size=decode_size) for p in paths]
    times: dict[str, list[float]] = {"plain": [], "flip": []}

    def run(image: Image.Image, flip: bool) -> None:
        if flip:
            pixels = torch.stack([transform(image), transform(ImageOps.mirror(image))])
        else:
            pixels = transform(image).unsqueeze(0)
        with torch.inference_mode():
            model.features(pixels.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))

    for image in images[:5]:
        run(image, False)
        run(image, True)
    for i, image in enumerate(images):
        order = (False, True) if i % 2 == 0 else (True, False)  # alternate A/B against drift
        for flip in order:
            start = time.perf_counter()
            run(image, flip)
            times["flip" if flip else "plain"].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-images", type=int, default=60)
    parser.add_argument("--latency-only", action="store_true", help="skip the retrieval quality part")
    args = parser.parse_args()
    root = dataset_root()
    encoder_ = load_mobilenet_encoder(device="cpu")
    model = encoder_._model  # the product's model object: same weights, same channels_last layout
    train_paths, train_labels = split(root, "train")
    test_paths, test_labels = split(root, "test")
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    if args.latency_only:
        lat = latency(model, test_paths[: args.latency_images], encoder_.decode_size)
        print(f"batch-1 forward p50: plain {lat['plain']:.1f} ms, photo+mirror {lat['flip']:.1f} ms")
        return
    start = time.perf_counter()
    train = encode(model, train_paths, encoder_.decode_size)
    test = encode(model, test_paths, encoder_.decode_size)
    print(
        f"encoded {len(train_paths)} train + {len(test_paths)} test photos (and mirrors) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    print("| variant | top-1 | P@10 |")
    print("|---|---|---|")
    for name in train:
        top1, p10 = quality(train[name], train_labels, test[name], test_labels)
        print(f"| {name} | {top1 * 100:.1f}% | {p10 * 100:.1f}% |")
    lat = latency(model, test_paths[: args.latency_images], encoder_.decode_size)
    print(f"batch-1 forward p50: plain {lat['plain']:.1f} ms, photo+mirror {lat['flip']:.1f} ms")


if __name__ == "__main__":
    main()
