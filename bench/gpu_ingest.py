"""GPU ingestion throughput: parallel CPU decoding feeding CLIP ViT-B-32 + MobileNetV2 in fp16.

    python bench/gpu_ingest.py --photos DIR [--passes 20] [--workers 14] [--batch 256]

A standalone model of the catalog-import path on a GPU machine, outside the product: a pool of
decoder processes (PIL draft mode, resize and centre-crop on the CPU, uint8 tensors only),
normalisation and both forward passes on the GPU in fp16, pipelined. Reports decode-only, GPU-only
and pipelined images/s; random weights: same compute as the real checkpoints. There is no database
write here: for the product's own path end to end (lanes, GPU mode, the write into PostgreSQL) run
``bench/ingest.py --device cuda`` (docs/benchmarks.md, "Ingest lanes and GPU mode").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def center_crop(image: Image.Image, resize_to: int, crop: int, resample: int) -> np.ndarray:
    width, height = image.size
    scale = resize_to / min(width, height)
    image = image.resize((max(crop, round(width * scale)), max(crop, round(height * scale))), resample)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    return np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


class Photos(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Each item: CLIP's 224 crop (bicubic) and MobileNet's 256→224 crop (bilinear), uint8 HWC."""

    def __init__(self, paths: list[Path], passes: int) -> None:
        self.paths = paths * passes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[index]) as image:
            image.draft("RGB", (256, 256))  # DCT-domain downscale: most of the decode cost disappears
            rgb = image.convert("RGB")
        clip = center_crop(rgb, 224, 224, Image.Resampling.BICUBIC)
        mobile = center_crop(rgb, 256, 224, Image.Resampling.BILINEAR)
        return torch.from_numpy(clip), torch.from_numpy(mobile)


class PhotoBytes(Dataset[torch.Tensor]):
    """Only the file bytes: with --gpu-decode the JPEGs are decoded by nvJPEG on the GPU."""

    def __init__(self, paths: list[Path], passes: int) -> None:
        self.paths = paths * passes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.frombuffer(bytearray(self.paths[index].read_bytes()), dtype=torch.uint8)


def gpu_crops(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize (antialiased) and centre-crop decoded CHW uint8 GPU images for both models, as NHWC.

    Photos of one size are resized together (one kernel per size, not per image): a shop's
    catalog, like this data set, comes in a handful of sizes.
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape), []).append(index)
    clips: list[torch.Tensor] = [torch.empty(0)] * len(images)
    mobiles: list[torch.Tensor] = [torch.empty(0)] * len(images)
    for (_, h, w), indices in by_shape.items():
        x = torch.stack([images[i] for i in indices]).float()
        for resize_to, out, mode in ((224, clips, "bicubic"), (256, mobiles, "bilinear")):
            scale = resize_to / min(h, w)
            y = torch.nn.functional.interpolate(
                x, size=(max(224, round(h * scale)), max(224, round(w * scale))), mode=mode, antialias=True
            )
            top, left = (y.shape[-2] - 224) // 2, (y.shape[-1] - 224) // 2
            crops = y[..., top : top + 224, left : left + 224].clamp_(0, 255)
            for position, index in enumerate(indices):
                out[index] = crops[position]
    return torch.stack(clips).permute(0, 2, 3, 1), torch.stack(mobiles).permute(0, 2, 3, 1)


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    batch = batch.cuda(non_blocking=True).permute(0, 3, 1, 2).half().div(255)
    m = torch.tensor(mean, device="cuda", dtype=torch.half).view(1, 3, 1, 1)
    s = torch.tensor(std, device="cuda", dtype=torch.half).view(1, 3, 1, 1)
    return ((batch - m) / s).contiguous(memory_format=torch.channels_last)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--gpu-decode", action="store_true", help="nvJPEG decode + resize on the GPU")
    args = parser.parse_args()
    import open_clip
    import torchvision

    paths = sorted(args.photos.glob("*.jpg"))
    print(
        f"{len(paths)} photos x {args.passes} passes, {args.workers} decoders, batch {args.batch}, "
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}",
        flush=True,
    )
    clip = open_clip.create_model("ViT-B-32", pretrained=None).cuda().half().eval()
    mobilenet = torchvision.models.mobilenet_v2().features.cuda().half().eval()
    mobilenet = mobilenet.to(memory_format=torch.channels_last)

    def loader() -> DataLoader[tuple[torch.Tensor, torch.Tensor]]:
        return DataLoader(
            Photos(paths, args.passes),
            batch_size=args.batch,
            num_workers=args.workers,
            pin_memory=True,
            prefetch_factor=4,
            persistent_workers=False,
        )

    def encode(clip_batch: torch.Tensor, mobile_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            a = torch.nn.functional.normalize(
                clip.encode_image(normalise(clip_batch, CLIP_MEAN, CLIP_STD)), dim=-1
            )
            f = mobilenet(normalise(mobile_batch, IMAGENET_MEAN, IMAGENET_STD)).mean((2, 3))
            b = torch.nn.functional.normalize(f, dim=-1)
        return a.float().cpu(), b.float().cpu()

    total = len(paths) * args.passes
    if args.gpu_decode:
        from torchvision.io import decode_jpeg

        files = DataLoader(
            PhotoBytes(paths, args.passes),
            batch_size=args.batch,
            num_workers=4,
            collate_fn=list,
            prefetch_factor=4,
        )
        for blobs in files:  # warm-up: nvJPEG handles, cuDNN autotune
            encode(*gpu_crops(decode_jpeg(blobs, device="cuda")))
            break
        torch.cuda.synchronize()
        started = time.perf_counter()
        for blobs in files:
            encode(*gpu_crops(decode_jpeg(blobs, device="cuda")))
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        print(
            f"pipelined read -> nvJPEG -> GPU resize -> both models -> host: {total / elapsed:8.0f} images/s"
        )
        return 0
    started = time.perf_counter()
    batches = list(loader())
    decode_s = time.perf_counter() - started
    print(f"decode only ({args.workers} processes): {total / decode_s:8.0f} images/s", flush=True)

    encode(*batches[0])  # warm-up (cuDNN autotune, allocator)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for clip_batch, mobile_batch in batches:
        encode(clip_batch, mobile_batch)
    torch.cuda.synchronize()
    gpu_s = time.perf_counter() - started
    print(f"GPU only (CLIP + MobileNetV2, fp16): {total / gpu_s:8.0f} images/s", flush=True)

    started = time.perf_counter()
    for clip_batch, mobile_batch in loader():
        encode(clip_batch, mobile_batch)
    torch.cuda.synchronize()
    both_s = time.perf_counter() - started
    print(f"pipelined decode -> both models -> host: {total / both_s:8.0f} images/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
