"""Host-side cost of getting photos ready for both encoders: what bounds ingestion on a GPU.

    .venv/bin/python bench/preprocess.py [--images 400] [--threads 1 2 ...]

On a GPU the forward passes of CLIP ViT-B-32 (fp16) and MobileNetV2 take well under a
millisecond per image, so ingest speed is set by how fast the CPU cores decode and prepare
photos. Measured per mode, on 1..N threads (the lanes of ``lookalike ingest`` are threads:
Pillow's decoder and resampler release the GIL, so the scaling shows how much of the work does):

- ``pillow``: decode + each model's own Pillow transforms (CPU mode, and the reference);
- ``device``: decode + the uint8 pixels that GPU mode hands to the device, where
  :mod:`encoder.tensor_transforms` resizes and crops (that part is not measured here).

Real photos from the clothing data set (train split); CLIP's transforms come from open_clip
(no weights are needed for them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from encoder.images import decode_image  # noqa: E402
from encoder.tensor_transforms import stack_pixels  # noqa: E402

DATASET = Path(os.environ.get("LOOKALIKE_DATASET_DIR", REPO_ROOT.parent / "shared/datasets/clothing-small"))
MAX_PIXELS = 40_000_000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, len(os.sched_getaffinity(0))])
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the fastest is kept")
    args = parser.parse_args()
    import open_clip
    from torchvision.models import MobileNet_V2_Weights

    torch.set_num_threads(1)  # the lanes are the parallelism here, as during an ingest's decoding
    _, _, clip_transforms = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    mobile_transforms = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    blobs = [p.read_bytes() for p in sorted((DATASET / "train").glob("*/*.jpg"))[: args.images]]

    def pillow(blob: bytes) -> None:
        image = decode_image(blob, max_pixels=MAX_PIXELS, target_size=256)
        clip_transforms(image)
        mobile_transforms(image)

    def device(blob: bytes) -> None:
        image = decode_image(blob, max_pixels=MAX_PIXELS, target_size=256)
        stack_pixels([image])

    modes: dict[str, Callable[[bytes], None]] = {"pillow": pillow, "device": device}
    print(f"{len(blobs)} photos, {os.cpu_count()} CPUs, torch {torch.__version__}")
    for name, work in modes.items():
        for threads in args.threads:
            best = min(_run(work, blobs, threads) for _ in range(args.repeats))
            rate = len(blobs) / best
            print(
                f"{name:7s} {threads:3d} threads: {rate:8.0f} images/s "
                f"({best / len(blobs) * threads * 1000:5.2f} ms per image per thread)"
            )
    return 0


def _run(work: Callable[[bytes], None], blobs: list[bytes], threads: int) -> float:
    chunks = [blobs[k::threads] for k in range(threads)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda chunk: [work(blob) for blob in chunk], chunks))
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
